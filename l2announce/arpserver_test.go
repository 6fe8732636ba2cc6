package l2announce

import (
	"bytes"
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

// arpPair is a node (198.18.9.2) and a client (198.18.9.1) namespace
// joined by a veth, eth0 on both, with an ARP server on the node's end.
func arpPair(t *testing.T) (client *netns.Namespace, ifi *net.Interface, srv *ARPServer) {
	t.Helper()
	node := netnstest.New(t)
	client = netnstest.New(t)
	if err := netns.Veth(node, "eth0", client, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := node.AddAddress("eth0", "198.18.9.2/24"); err != nil {
		t.Fatal(err)
	}
	if err := client.AddAddress("eth0", "198.18.9.1/24"); err != nil {
		t.Fatal(err)
	}
	if err := node.Do(func() (err error) {
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		srv, err = ListenARP(ifi)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return client, ifi, srv
}

// In the kernel: a client on a veth resolves an announced address with its
// own ARP to the node's MAC, and an address the node does not announce
// stays unresolved.
func TestARPServerAnswersTheKernel(t *testing.T) {
	client, ifi, srv := arpPair(t)
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

// A conflict probe in the kernel: clear while nobody holds the address;
// once the client has it on its interface, its kernel answers the probe
// and the probe names the client's MAC.
func TestARPProbe(t *testing.T) {
	client, _, srv := arpPair(t)
	clientMAC := linkMAC(t, client, "eth0")
	// The node announces the address the client takes (as in a split
	// brain), so that Serve has a claim to log when the client answers.
	taken := netip.MustParseAddr("198.18.9.61")
	r := serve(t, srv.Serve, func(a netip.Addr) bool { return a == taken })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if c, err := srv.Probe(ctx, netip.MustParseAddr("198.18.9.60"), ProbeCount, ProbeInterval); c != nil || err != nil {
		t.Fatalf("probe for an address nobody holds: conflict %+v, %v", c, err)
	}
	if err := client.AddAddress("eth0", taken.String()+"/32"); err != nil {
		t.Fatal(err)
	}
	c, err := srv.Probe(ctx, taken, ProbeCount, ProbeInterval)
	if err != nil || c == nil || !bytes.Equal(c.MAC, clientMAC) || c.ProbeOnly {
		t.Fatalf("probe for the client's address: conflict %+v, %v; want a claim by the client's MAC %s (server saw: %s)", c, err, clientMAC, r)
	}
	want := ConflictReason + clientMAC.String() + " claims " + taken.String()
	waitFor(t, "Serve to log "+want, func() bool { return r.has(want) })
}

// reasons collects what a server logs.
type reasons struct {
	mu   sync.Mutex
	seen []string
}

func (r *reasons) log(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, reason)
}

func (r *reasons) has(part string) bool {
	return strings.Contains(r.String(), part)
}

// count is how many reasons start with prefix.
func (r *reasons) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.seen {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func (r *reasons) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.seen, "\n")
}

// serve runs a server's Serve until the test ends, and returns what it
// logs.
func serve(t *testing.T, run func(context.Context, Owned, func(string)) error, owned Owned) *reasons {
	t.Helper()
	r := &reasons{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, owned, r.log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r
}

// waitFor polls cond until it holds, for up to ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func linkMAC(t *testing.T, ns *netns.Namespace, name string) net.HardwareAddr {
	t.Helper()
	l, err := ns.Link(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}
