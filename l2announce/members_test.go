package l2announce

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

func TestMembers(t *testing.T) {
	c := &testClock{t: time.Unix(1000, 0)}
	key := []byte("shared secret from the Secret")
	self := &Members{Self: "node1", Key: key, DeadAfter: 400 * time.Millisecond, Now: c.now}
	peer := &Members{Self: "node2", Key: key, DeadAfter: 400 * time.Millisecond, Now: c.now}
	if got := fmt.Sprint(self.Alive()); got != "[node1]" {
		t.Fatalf("alone: %s", got)
	}
	hb := peer.Heartbeat(false, nil)
	if err := self.Receive("node2", hb); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(self.Alive()); got != "[node1 node2]" {
		t.Fatalf("after a heartbeat: %s", got)
	}
	if got := fmt.Sprint(self.ReadyPeers()); got != "map[node2:map[]]" {
		t.Fatalf("ready for no group: %s", got)
	}
	c.t = c.t.Add(time.Millisecond)
	if err := self.Receive("node2", peer.Heartbeat(false, []uint64{7, 1 << 63})); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(self.ReadyPeers()); got != "map[node2:map[7:true 9223372036854775808:true]]" {
		t.Fatalf("ready for two groups: %s", got)
	}
	// The same message again is a replay.
	if err := self.Receive("node2", hb); !errors.Is(err, ErrBadHeartbeat) {
		t.Errorf("replay: %v", err)
	}
	// Silent for longer than DeadAfter: dead.
	c.t = c.t.Add(401 * time.Millisecond)
	if got := fmt.Sprint(self.Alive()); got != "[node1]" {
		t.Errorf("after 401 ms of silence: %s", got)
	}
	c.t = c.t.Add(time.Millisecond)
	if err := self.Receive("node2", peer.Heartbeat(false, nil)); err != nil {
		t.Fatal(err)
	}
	// Leaving: out at once.
	c.t = c.t.Add(time.Millisecond)
	if err := self.Receive("node2", peer.Heartbeat(true, nil)); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(self.Alive()); got != "[node1]" {
		t.Errorf("after a leaving heartbeat: %s", got)
	}
	// Wrong key, tampered name, garbage: refused.
	c.t = c.t.Add(time.Millisecond)
	other := &Members{Self: "node2", Key: []byte("another key"), Now: c.now}
	tampered := peer.Heartbeat(false, nil)
	tampered[len(tampered)-40] ^= 1
	for name, b := range map[string][]byte{"wrong key": other.Heartbeat(false, nil), "tampered": tampered, "short": {1, 2, 3}} {
		if err := self.Receive("node2", b); !errors.Is(err, ErrBadHeartbeat) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := fmt.Sprint(self.Alive()); got != "[node1]" {
		t.Errorf("refused heartbeats changed the members: %s", got)
	}
}

// FuzzMembersReceive: nothing a peer or an attacker sends makes Receive
// panic, and without the key nothing joins.
func FuzzMembersReceive(f *testing.F) {
	m := &Members{Self: "node2", Key: []byte("k"), DeadAfter: time.Second}
	f.Add(m.Heartbeat(false, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &Members{Self: "node1", Key: []byte("another key"), DeadAfter: time.Hour, AcceptV1: true}
		if err := r.Receive("node2", b); err == nil && len(r.Alive()) > 1 {
			t.Fatalf("a heartbeat without the key joined: %v", r.Alive())
		}
	})
}
