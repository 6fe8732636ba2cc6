package l2announce

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
)

// In the kernel: node1 and node2 exchange heartbeats over a bridge, each
// on its InternalIP. A host on the same LAN, holding the shared secret and
// a heartbeat of node2's it captured, sends node1 the capture, a forged
// "node2 is leaving" and a node2 heartbeat dated 2^64-1, from its own
// address: node1 drops each as not from a peer, and node2 stays alive to
// node1 throughout. node1 listens on its InternalIP only: the same
// datagram to its other address finds no socket (port unreachable).
func TestHeartbeatsForgedFromAnotherHost(t *testing.T) {
	spaces := bridgedHosts(t, "198.18.19.1/24", "198.18.19.2/24", "198.18.19.3/24")
	n1, n2, host := spaces[0], spaces[1], spaces[2]
	if err := n1.AddAddress("eth0", "198.18.19.11/24"); err != nil {
		t.Fatal(err)
	}
	const port = 7947
	ip1, ip2, ip3 := netip.MustParseAddr("198.18.19.1"), netip.MustParseAddr("198.18.19.2"), netip.MustParseAddr("198.18.19.3")
	listen := func(ns *netns.Namespace, ip netip.Addr) (c *net.UDPConn) {
		t.Helper()
		if err := ns.Do(func() (err error) {
			c, err = ListenHeartbeats(netip.AddrPortFrom(ip, port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1, c2 := listen(n1, ip1), listen(n2, ip2)
	// The host listens where node2 believes a third node is, and so
	// captures node2's genuine heartbeats.
	capture := listen(host, ip3)
	defer capture.Close()

	m1 := &Members{Self: "node1", Key: hbSecret, DeadAfter: 400 * time.Millisecond}
	m2 := &Members{Self: "node2", Key: hbSecret, DeadAfter: 400 * time.Millisecond}
	var mu sync.Mutex
	var reasons []string
	h1 := &Heartbeats{Members: m1, Interval: 50 * time.Millisecond, Peers: func() *PeerSet {
		return NewPeerSet([]Peer{{Name: "node2", Addrs: []netip.Addr{ip2}, Port: port}})
	}}
	h2 := &Heartbeats{Members: m2, Interval: 50 * time.Millisecond, Peers: func() *PeerSet {
		return NewPeerSet([]Peer{{Name: "node1", Addrs: []netip.Addr{ip1}, Port: port}, {Name: "node3", Addrs: []netip.Addr{ip3}, Port: port}})
	}}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() {
		done <- h1.Run(ctx, []*net.UDPConn{c1}, func(err error) {
			var r *HeartbeatRefusal
			if errors.As(err, &r) {
				mu.Lock()
				reasons = append(reasons, r.Reason)
				mu.Unlock()
			}
		})
	}()
	go func() { done <- h2.Run(ctx, []*net.UDPConn{c2}, nil) }()
	defer func() {
		stop()
		<-done
		<-done
	}()

	deadline := time.Now().Add(10 * time.Second)
	for len(m1.Alive()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("node1 never heard node2: alive %v", m1.Alive())
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = capture.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, MaxHeartbeatSize)
	n, _, err := capture.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("capture node2's heartbeat: %v", err)
	}
	captured := append([]byte(nil), buf[:n]...)

	forged := [][]byte{
		captured,
		handHeartbeat(2, handKey("node2"), true, time.Now().UnixNano(), "node2"),
		handHeartbeat(2, handKey("node2"), false, -1, "node2"),
	}
	refusals := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), reasons...)
	}
	// Twenty rounds, each sent once the last one's refusals are in, so the
	// forgeries and node2's genuine heartbeats interleave.
	const rounds = 20
	for i := 0; i < rounds; i++ {
		for _, b := range forged {
			if _, err := capture.WriteToUDPAddrPort(b, netip.AddrPortFrom(ip1, port)); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(refusals()) < (i+1)*len(forged) {
			if len(m1.Alive()) != 2 {
				t.Fatalf("round %d: node1 sees %v; node2 must stay alive", i, m1.Alive())
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d of %d forgeries refused", i, len(refusals()), (i+1)*len(forged))
			}
			time.Sleep(time.Millisecond)
		}
		if len(m1.Alive()) != 2 {
			t.Fatalf("round %d: node1 sees %v; node2 must stay alive", i, m1.Alive())
		}
	}
	got := refusals()
	for _, r := range got {
		if r != RefusedNotPeer {
			t.Errorf("refused as %s; want every forgery refused as %s", r, RefusedNotPeer)
		}
	}
	if len(got) != rounds*len(forged) {
		t.Errorf("%d refusals for %d forgeries (node2's genuine heartbeats were refused too?)", len(got), rounds*len(forged))
	}
	if got := len(m1.Alive()); got != 2 {
		t.Errorf("after the forgeries node1 sees %v", m1.Alive())
	}

	// node1's other address has no heartbeat socket.
	var sendErr error
	if err := host.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.19.11:7947")))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(captured); err != nil {
			return err
		}
		_, sendErr = c.Read(buf)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(sendErr, syscall.ECONNREFUSED) {
		t.Errorf("a heartbeat to node1's other address: %v; want connection refused (nothing listens there)", sendErr)
	}
}
