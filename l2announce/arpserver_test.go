package l2announce

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// In the kernel: a client on a veth resolves an announced address with its
// own ARP to the node's MAC, and an address the node does not announce
// stays unresolved.
func TestARPServerAnswersTheKernel(t *testing.T) {
	node, client := netnstest.New(t), netnstest.New(t)
	if err := netns.Veth(node, "eth0", client, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := node.AddAddress("eth0", "198.18.9.2/24"); err != nil {
		t.Fatal(err)
	}
	if err := client.AddAddress("eth0", "198.18.9.1/24"); err != nil {
		t.Fatal(err)
	}
	var srv *ARPServer
	var ifi *net.Interface
	if err := node.Do(func() (err error) {
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		srv, err = ListenARP(ifi)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	announced := netip.MustParseAddr("198.18.9.50")
	var mu sync.Mutex
	var reasons []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, func(a netip.Addr) bool { return a == announced }, func(r string) {
			mu.Lock()
			reasons = append(reasons, r)
			mu.Unlock()
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	neigh := func(addr string) string {
		t.Helper()
		// A datagram makes the client's kernel resolve the address; where
		// it goes after does not matter (nothing on the node has it).
		if err := client.Do(func() error {
			c, err := net.Dial("udp", net.JoinHostPort(addr, "9"))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("who has"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		out, err := client.Command(context.Background(), "ip", "neigh", "show", addr, "dev", "eth0").CombinedOutput()
		if err != nil {
			t.Fatalf("ip neigh: %v: %s", err, out)
		}
		return string(out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := neigh(announced.String())
		if strings.Contains(got, "lladdr "+ifi.HardwareAddr.String()) {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("client's neighbour entry for %s: %q; want the node's MAC %s (server saw: %v)", announced, got, ifi.HardwareAddr, reasons)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// An address nobody announces: once the server has seen the request
	// and said why it stays silent, the client still has no answer.
	saw := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(strings.Join(reasons, "\n"), "198.18.9.51 is not announced")
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		got := neigh("198.18.9.51")
		if strings.Contains(got, "lladdr") {
			t.Fatalf("an address nobody announces resolved: %q", got)
		}
		if saw() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never said why it stayed silent for 198.18.9.51")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
