package l2announce

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// loopbackConn listens on addr (a loopback address), port chosen by the
// kernel.
func loopbackConn(t *testing.T, addr string) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := ListenHeartbeats(netip.AddrPortFrom(netip.MustParseAddr(addr), 0))
	if err != nil {
		t.Fatal(err)
	}
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func peerAt(name string, at netip.AddrPort) *PeerSet {
	return NewPeerSet([]Peer{{Name: name, Addrs: []netip.Addr{at.Addr()}, Port: at.Port()}})
}

// Two agents on loopback see each other, and one sees the other go when it
// shuts down. (That a leaving heartbeat takes a node out at once, and
// silence only after DeadAfter, is TestMembers' part, on a fake clock.)
func TestHeartbeats(t *testing.T) {
	key := []byte("k")
	mk := func(name, addr string) (*Members, *Heartbeats, *net.UDPConn, netip.AddrPort) {
		m := &Members{Self: name, Key: key, DeadAfter: 400 * time.Millisecond}
		c, at := loopbackConn(t, addr)
		return m, &Heartbeats{Members: m, Interval: 100 * time.Millisecond}, c, at
	}
	ma, ha, ca, aAddr := mk("node1", "127.0.0.1")
	mb, hb, cb, bAddr := mk("node2", "127.0.0.2")
	ha.Peers = func() *PeerSet { return peerAt("node2", bAddr) }
	hb.Peers = func() *PeerSet { return peerAt("node1", aAddr) }
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- ha.Run(ctxA, []*net.UDPConn{ca}, nil) }()
	go func() { doneB <- hb.Run(ctxB, []*net.UDPConn{cb}, nil) }()
	defer stopB()
	defer stopA()
	waitAlive := func(m *Members, want string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for fmt.Sprint(m.Alive()) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %v, want %s after %s", m.Self, m.Alive(), want, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitAlive(ma, "[node1 node2]", 5*time.Second)
	waitAlive(mb, "[node1 node2]", 5*time.Second)
	// node2 shuts down.
	stopB()
	if err := <-doneB; err != nil {
		t.Fatal(err)
	}
	waitAlive(ma, "[node1]", 5*time.Second)
	stopA()
	<-doneA
}

// A heartbeat of many groups (here the most one carries, with the longest
// name) arrives whole over a real socket: with a 512-byte buffer it was
// cut and refused, so a node ready for about 56 groups was dead to its
// peers. A datagram larger than any heartbeat is refused as too large.
func TestHeartbeatsLarge(t *testing.T) {
	key := []byte("k")
	recv := &Members{Self: "r", Key: key, DeadAfter: time.Minute}
	conn, to := loopbackConn(t, "127.0.0.1")
	out, from := loopbackConn(t, "127.0.0.3")
	defer out.Close()
	name := strings.Repeat("n", 255)
	refusals := make(chan error, 4)
	h := &Heartbeats{Members: recv, Interval: time.Hour, Peers: func() *PeerSet { return peerAt(name, from) }}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, []*net.UDPConn{conn}, func(err error) { refusals <- err }) }()
	defer func() { stop(); <-done }()

	sender := &Members{Self: name, Key: key}
	groups := make([]uint64, MaxGroups)
	for i := range groups {
		groups[i] = uint64(i) + 1
	}
	msg := sender.Heartbeat(false, groups)
	if len(msg) != MaxHeartbeatSize {
		t.Fatalf("the largest heartbeat is %d bytes, MaxHeartbeatSize says %d", len(msg), MaxHeartbeatSize)
	}
	if _, err := out.WriteToUDPAddrPort(msg, to); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(recv.ReadyPeers()[name]) != MaxGroups {
		select {
		case err := <-refusals:
			t.Fatalf("refused: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %d-byte heartbeat did not arrive whole: peers %d", len(msg), len(recv.ReadyPeers()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := out.WriteToUDPAddrPort(make([]byte, MaxHeartbeatSize+100), to); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-refusals:
		if !errors.Is(err, ErrBadHeartbeat) || !strings.Contains(err.Error(), "the largest a heartbeat can be") {
			t.Errorf("refusal %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an oversized datagram was not refused")
	}
}

// A rolling upgrade over real sockets: a new agent (AcceptV1) and a peer
// still on the release before, which speaks version 1 only and checks it
// as that release did (the HMAC under the shared secret itself). The new
// agent sends it a version-1 copy it would take and hears its version-1
// heartbeats; once the peer speaks version 2, the copies stop.
func TestHeartbeatsMixedVersions(t *testing.T) {
	key := hbSecret
	m := &Members{Self: "new", Key: key, DeadAfter: time.Second, AcceptV1: true}
	conn, newAt := loopbackConn(t, "127.0.0.1")
	old, oldAt := loopbackConn(t, "127.0.0.4")
	defer old.Close()
	h := &Heartbeats{Members: m, Interval: 20 * time.Millisecond, Peers: func() *PeerSet { return peerAt("old", oldAt) }}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, []*net.UDPConn{conn}, nil) }()
	defer func() { stop(); <-done }()

	_ = old.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, MaxHeartbeatSize)
	next := func() []byte {
		t.Helper()
		n, _, err := old.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("the old agent got nothing: %v", err)
		}
		return append([]byte(nil), buf[:n]...)
	}
	// The release before's check: version 1, HMAC-SHA256 under the secret.
	oldTakes := func(b []byte) bool {
		mac := hmac.New(sha256.New, key)
		mac.Write(b[:len(b)-sha256.Size])
		return b[0] == 1 && hmac.Equal(mac.Sum(nil), b[len(b)-sha256.Size:])
	}
	var sawV1, sawV2 bool
	for !sawV1 || !sawV2 {
		b := next()
		switch {
		case oldTakes(b):
			sawV1 = true
		case b[0] == 2:
			sawV2 = true
		default:
			t.Fatalf("a datagram the old agent cannot take and that is no version 2: %x", b)
		}
	}
	send := func(b []byte) {
		t.Helper()
		if _, err := old.WriteToUDPAddrPort(b, newAt); err != nil {
			t.Fatal(err)
		}
	}
	send(handHeartbeat(1, key, false, time.Now().UnixNano(), "old"))
	waitFor(t, "the new agent to hear the old one", func() bool { return len(m.Alive()) == 2 })

	// The old agent is upgraded.
	send(handHeartbeat(2, handKey("old"), false, time.Now().UnixNano(), "old"))
	waitFor(t, "the new agent to hear version 2", func() bool { return m.SpeaksV2("old") })
	// A round under way may still carry a copy; none after it.
	var versions []byte
	for range 10 {
		versions = append(versions, next()[0])
	}
	for i, v := range versions[2:] {
		if v != 2 {
			t.Fatalf("datagram %d after the peer spoke version 2 is version %d (all: %v)", i+2, v, versions)
		}
	}
}
