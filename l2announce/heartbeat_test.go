package l2announce

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// Two agents on loopback see each other, and one sees the other go when it
// shuts down. (That a leaving heartbeat takes a node out at once, and
// silence only after DeadAfter, is TestMembers' part, on a fake clock.)
func TestHeartbeats(t *testing.T) {
	key := []byte("k")
	mk := func(name string) (*Members, *Heartbeats, netip.AddrPort) {
		m := &Members{Self: name, Key: key, DeadAfter: 400 * time.Millisecond}
		c, err := ListenHeartbeats(netip.MustParseAddrPort("127.0.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		h := &Heartbeats{Members: m, Interval: 100 * time.Millisecond}
		h.conn = c
		return m, h, c.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort()
	}
	ma, ha, aAddr := mk("node1")
	mb, hb, bAddr := mk("node2")
	ha.Peers = func() []netip.AddrPort { return []netip.AddrPort{bAddr} }
	hb.Peers = func() []netip.AddrPort { return []netip.AddrPort{aAddr} }
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- ha.Run(ctxA, ha.conn, nil) }()
	go func() { doneB <- hb.Run(ctxB, hb.conn, nil) }()
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
