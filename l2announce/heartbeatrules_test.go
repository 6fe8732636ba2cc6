package l2announce

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"
)

var hbSecret = []byte("the cluster's shared heartbeat secret")

// handKey is NodeKey written out from its definition, for the tests.
func handKey(node string) []byte {
	mac := hmac.New(sha256.New, hbSecret)
	mac.Write([]byte("berth-l2-heartbeat/v2/" + node))
	return mac.Sum(nil)
}

// handHeartbeat lays out a heartbeat by hand (not with encodeHeartbeat):
// what an attacker holding key, or an agent of the given version, sends.
func handHeartbeat(version byte, key []byte, leaving bool, t int64, name string, groups ...uint64) []byte {
	b := []byte{version, 0}
	if leaving {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint64(b, uint64(t))
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(groups)))
	for _, g := range groups {
		b = binary.BigEndian.AppendUint64(b, g)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(b)
	return mac.Sum(b)
}

// The wire format, byte by byte: version 2, the leaving flag, the time in
// Unix nanoseconds, the name, the groups, and the HMAC under the node's own
// key (HMAC-SHA256(secret, "berth-l2-heartbeat/v2/" + name)).
func TestHeartbeatWire(t *testing.T) {
	at := time.Unix(0, 0x0102030405060708)
	m := &Members{Self: "n1", Key: hbSecret, Now: func() time.Time { return at }}
	got := m.Heartbeat(true, []uint64{7})
	body := []byte{
		2, 1, // version 2, leaving
		1, 2, 3, 4, 5, 6, 7, 8, // time
		2, 'n', '1', // name
		0, 1, // one group
		0, 0, 0, 0, 0, 0, 0, 7,
	}
	mac := hmac.New(sha256.New, handKey("n1"))
	mac.Write(body)
	want := mac.Sum(body)
	if !bytes.Equal(got, want) {
		t.Errorf("heartbeat\n%x\nwant\n%x", got, want)
	}
	if !bytes.Equal(NodeKey(hbSecret, "n1"), handKey("n1")) {
		t.Error("NodeKey is not HMAC-SHA256(secret, \"berth-l2-heartbeat/v2/\" + node)")
	}
}

// hbRig is a receiver, node1, on a clock the test moves.
type hbRig struct {
	t   *testing.T
	now time.Time
	m   *Members
}

func newHBRig(t *testing.T) *hbRig {
	r := &hbRig{t: t, now: time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)}
	r.m = r.receiver()
	return r
}

// receiver is a fresh node1 (as after a restart) on the rig's clock.
func (r *hbRig) receiver() *Members {
	return &Members{Self: "node1", Key: hbSecret, DeadAfter: 400 * time.Millisecond, Window: 5 * time.Second,
		Now: func() time.Time { return r.now }}
}

// take delivers b as coming from node from's address and wants it taken.
func (r *hbRig) take(what, from string, b []byte) {
	r.t.Helper()
	if err := r.m.Receive(from, b); err != nil {
		r.t.Errorf("%s: refused (%v); want taken", what, err)
	}
}

// refused delivers b and wants it refused for reason.
func (r *hbRig) refused(what, reason, from string, b []byte) {
	r.t.Helper()
	err := r.m.Receive(from, b)
	var hr *HeartbeatRefusal
	if !errors.Is(err, ErrBadHeartbeat) || !errors.As(err, &hr) || hr.Reason != reason {
		r.t.Errorf("%s: %v; want refused as %s", what, err, reason)
	}
}

func (r *hbRig) alive(what, want string) {
	r.t.Helper()
	if got := fmt.Sprint(r.m.Alive()); got != want {
		r.t.Errorf("%s: alive %s; want %s", what, got, want)
	}
}

// Who may speak for a node: only a heartbeat named for the node whose
// address sent it, signed with that node's own key. node3 holds the shared
// secret (every agent does), yet what it signs with its own key does not
// pass for node2's, nor does a message signed with the secret itself.
func TestHeartbeatIdentity(t *testing.T) {
	r := newHBRig(t)
	at := r.now.UnixNano()
	r.refused("node2's name, signed with node3's key, from node2's address", RefusedSignature, "node2",
		handHeartbeat(2, handKey("node3"), false, at, "node2"))
	r.refused("node2's name, signed with the shared secret as version 2", RefusedSignature, "node2",
		handHeartbeat(2, hbSecret, false, at, "node2"))
	r.refused("node2's genuine heartbeat from node3's address", RefusedSignature, "node3",
		handHeartbeat(2, handKey("node2"), false, at, "node2"))
	r.refused("from an address that is no peer's", RefusedNotPeer, "",
		handHeartbeat(2, handKey("node2"), false, at, "node2"))
	r.refused("version 1 while it is turned off", RefusedMalformed, "node2",
		handHeartbeat(1, hbSecret, false, at, "node2"))
	r.refused("version 3", RefusedMalformed, "node2",
		handHeartbeat(3, handKey("node2"), false, at, "node2"))
	r.alive("after the forgeries", "[node1]")
	r.take("node2's own", "node2", handHeartbeat(2, handKey("node2"), false, at, "node2"))
	r.alive("after node2's own", "[node1 node2]")
}

// The clock bounds the time (the sequence number): the time of
// 2^64-1 (and the largest positive one) is refused, so it cannot lock
// node2 out; a time just inside the window, which only a holder of the
// secret sending from node2's address could forge, holds node2's genuine
// heartbeats off for that long at most.
func TestHeartbeatMaxSequence(t *testing.T) {
	r := newHBRig(t)
	k2 := handKey("node2")
	r.take("node2", "node2", handHeartbeat(2, k2, false, r.now.UnixNano(), "node2"))
	r.refused("time 2^64-1", RefusedStale, "node2", handHeartbeat(2, k2, false, -1, "node2"))
	r.refused("time 2^63-1", RefusedStale, "node2", handHeartbeat(2, k2, false, math.MaxInt64, "node2"))
	r.refused("time 5.001 s ahead", RefusedStale, "node2", handHeartbeat(2, k2, false, r.now.Add(5001*time.Millisecond).UnixNano(), "node2"))
	r.now = r.now.Add(100 * time.Millisecond)
	r.take("node2 after the forgeries", "node2", handHeartbeat(2, k2, false, r.now.UnixNano(), "node2"))

	// The worst a holder of the secret can do from node2's address.
	ahead := r.now.Add(4900 * time.Millisecond)
	r.take("dated 4.9 s ahead", "node2", handHeartbeat(2, k2, true, ahead.UnixNano(), "node2"))
	r.alive("after the forged leaving heartbeat", "[node1]")
	base := r.now
	for _, d := range []time.Duration{time.Second, 4800 * time.Millisecond} {
		r.now = base.Add(d)
		r.refused(fmt.Sprintf("node2 %s later", d), RefusedReplay, "node2", handHeartbeat(2, k2, false, r.now.UnixNano(), "node2"))
	}
	r.now = ahead.Add(time.Millisecond)
	r.take("node2 once its clock passed the forged time", "node2", handHeartbeat(2, k2, false, r.now.UnixNano(), "node2"))
	r.alive("node2 back", "[node1 node2]")
}

// A heartbeat outside the window, either way, is refused: a capture
// replayed later, a sender whose clock is far off.
func TestHeartbeatStale(t *testing.T) {
	r := newHBRig(t)
	k2 := handKey("node2")
	r.refused("5.001 s old", RefusedStale, "node2", handHeartbeat(2, k2, false, r.now.Add(-5001*time.Millisecond).UnixNano(), "node2"))
	r.refused("5.001 s ahead", RefusedStale, "node2", handHeartbeat(2, k2, false, r.now.Add(5001*time.Millisecond).UnixNano(), "node2"))
	r.alive("after stale ones", "[node1]")
	r.take("4.999 s old", "node2", handHeartbeat(2, k2, false, r.now.Add(-4999*time.Millisecond).UnixNano(), "node2"))
	r.take("4.999 s ahead", "node2", handHeartbeat(2, k2, false, r.now.Add(4999*time.Millisecond).UnixNano(), "node2"))
}

// node2 sends a heartbeat every 100 ms for 10 s, which an attacker on the
// LAN captures, then dies. node1 restarts at once, and the attacker
// replays, every 100 ms, the oldest captured message node1 still takes
// (from node2's address: the worst case). Each message counts once at
// most, and none older than the window: node2 is dead to node1 from 5.4 s
// (window + DeadAfter) after its last heartbeat on. (Before the window it
// stayed alive as long as the capture lasted, and longer.)
func TestHeartbeatReplayAfterRestart(t *testing.T) {
	r := newHBRig(t)
	sender := &Members{Self: "node2", Key: hbSecret, Now: func() time.Time { return r.now }}
	var capture [][]byte
	for range 100 {
		r.now = r.now.Add(100 * time.Millisecond)
		b := sender.Heartbeat(false, nil)
		capture = append(capture, b)
		r.take("node2 while it lives", "node2", b)
	}
	last := r.now
	r.m = r.receiver()
	r.refused("the capture's first message after the restart", RefusedStale, "node2", capture[0])
	var taken int
	var aliveAt []time.Duration
	for r.now.Before(last.Add(20 * time.Second)) {
		for _, b := range capture {
			if r.m.Receive("node2", b) == nil {
				taken++
				break
			}
		}
		if len(r.m.Alive()) > 1 {
			aliveAt = append(aliveAt, r.now.Sub(last))
		}
		r.now = r.now.Add(100 * time.Millisecond)
	}
	if len(aliveAt) == 0 || aliveAt[len(aliveAt)-1] > 5400*time.Millisecond {
		t.Errorf("node2 seen alive %v after its death; want 5.4 s at most", aliveAt)
	}
	if taken > 51 {
		t.Errorf("%d replayed messages taken; want each of the last 5 s (51) once at most", taken)
	}
	r.refused("the capture's last message again", RefusedStale, "node2", capture[len(capture)-1])
}

// node2's clock runs 3 s ahead, then steps back (an NTP correction): its
// agent keeps its times growing, so node1 hears it throughout. Its agent
// restarting just after the step sends times node1 took already, refused
// until the clock passes them (under 3 s); a clock 10 s off is refused
// as stale, and heard again as soon as it is corrected.
func TestHeartbeatClockStepBack(t *testing.T) {
	r := newHBRig(t)
	skew := 3 * time.Second
	sender := &Members{Self: "node2", Key: hbSecret, Window: 5 * time.Second, Now: func() time.Time { return r.now.Add(skew) }}
	for range 5 {
		r.now = r.now.Add(100 * time.Millisecond)
		r.take("3 s ahead", "node2", sender.Heartbeat(false, nil))
	}
	skew = 0
	for range 40 {
		r.now = r.now.Add(100 * time.Millisecond)
		r.take("after the step back", "node2", sender.Heartbeat(false, nil))
		r.alive("after the step back", "[node1 node2]")
	}
	// The agent restarts: it has no memory of its last time.
	skew = time.Second
	r.take("1 s ahead", "node2", sender.Heartbeat(false, nil))
	skew = 0
	sender = &Members{Self: "node2", Key: hbSecret, Now: func() time.Time { return r.now.Add(skew) }}
	var refusedFor time.Duration
	for r.m.Receive("node2", sender.Heartbeat(false, nil)) != nil {
		r.now = r.now.Add(100 * time.Millisecond)
		refusedFor += 100 * time.Millisecond
		if refusedFor > 5*time.Second {
			t.Fatal("a restarted node2 whose clock stepped back 1 s is still refused after 5 s")
		}
	}
	if refusedFor > 1100*time.Millisecond {
		t.Errorf("a restarted node2 whose clock stepped back 1 s was refused for %s; want 1.1 s at most (the step and one interval)", refusedFor)
	}

	skew = -10 * time.Second
	r.now = r.now.Add(100 * time.Millisecond)
	r.refused("10 s behind", RefusedStale, "node2", sender.Heartbeat(false, nil))
	skew = 0
	r.now = r.now.Add(100 * time.Millisecond)
	r.take("corrected", "node2", sender.Heartbeat(false, nil))
}

// A rolling upgrade: node2 still runs the release before (version 1,
// signed with the secret); node1 hears it while AcceptV1, under the same
// source, freshness and order rules. Once node2 speaks version 2, the
// version-1 copies it also sends are dropped without effect.
func TestHeartbeatVersion1(t *testing.T) {
	r := newHBRig(t)
	r.m.AcceptV1 = true
	r.take("version 1", "node2", handHeartbeat(1, hbSecret, false, r.now.UnixNano(), "node2", 7))
	r.refused("version 1 again", RefusedReplay, "node2", handHeartbeat(1, hbSecret, false, r.now.UnixNano(), "node2", 7))
	r.refused("version 1 from node3's address", RefusedSignature, "node3", handHeartbeat(1, hbSecret, false, r.now.UnixNano(), "node2"))
	r.refused("version 1, stale", RefusedStale, "node2", handHeartbeat(1, hbSecret, false, r.now.Add(-6*time.Second).UnixNano(), "node2"))
	if r.m.SpeaksV2("node2") {
		t.Error("node2 speaks version 2 before it sent any")
	}
	// node2 is upgraded: both copies, the same time.
	r.now = r.now.Add(100 * time.Millisecond)
	sender := &Members{Self: "node2", Key: hbSecret, AcceptV1: true, Now: func() time.Time { return r.now }}
	v2, v1 := sender.Heartbeats(false, []uint64{8})
	if v1 == nil || v1[0] != 1 || v2[0] != 2 {
		t.Fatalf("copies: version %v and %v", v2[:1], v1)
	}
	r.take("version 2", "node2", v2)
	r.take("its version-1 copy (dropped)", "node2", handHeartbeat(1, hbSecret, true, r.now.UnixNano()+1, "node2"))
	r.alive("after a version-1 leaving copy", "[node1 node2]")
	if got := fmt.Sprint(r.m.ReadyPeers()); got != "map[node2:map[8:true]]" {
		t.Errorf("ready peers %s; want node2 ready for group 8 (its version-2 heartbeat)", got)
	}
	if !r.m.SpeaksV2("node2") {
		t.Error("node2 does not speak version 2 after sending it")
	}
	// Rolled back: version 1 only, heard again once the window passed.
	r.now = r.now.Add(5100 * time.Millisecond)
	r.take("version 1 after a rollback", "node2", handHeartbeat(1, hbSecret, false, r.now.UnixNano(), "node2"))
	r.alive("after a rollback", "[node1 node2]")
}

// The peers as the Nodes list them: every InternalIP names its node (a
// mapped IPv4 address too); an address two Nodes list names neither.
func TestPeerSet(t *testing.T) {
	s := NewPeerSet([]Peer{
		{Name: "node2", Addrs: []netip.Addr{netip.MustParseAddr("fd00::2"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.9")}},
		{Name: "node3", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.0.9")}},
	})
	for addr, want := range map[string]string{
		"fd00::2": "node2", "198.18.0.2": "node2", "::ffff:198.18.0.2": "node2",
		"198.18.0.3": "node3", "198.18.0.9": "", "198.18.0.4": "",
	} {
		if got := s.Name(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %q; want %q", addr, got, want)
		}
	}
	if got := fmt.Sprint(HeartbeatAddrs(s.Peers()[0].Addrs)); got != "[fd00::2 198.18.0.2]" {
		t.Errorf("node2 listens on %s; want [fd00::2 198.18.0.2]", got)
	}
}

// FuzzHeartbeatDecode: the decoder never panics on any input; what it
// takes lays out again to the same bytes.
func FuzzHeartbeatDecode(f *testing.F) {
	at := time.Unix(1_800_000_000, 0)
	m := &Members{Self: "node2", Key: hbSecret, AcceptV1: true, Now: func() time.Time { return at }}
	v2, v1 := m.Heartbeats(true, []uint64{1, 2})
	f.Add(v2)
	f.Add(v1)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeartbeat(b)
		if err != nil {
			if !errors.Is(err, ErrBadHeartbeat) {
				t.Fatalf("error %v does not wrap ErrBadHeartbeat", err)
			}
			return
		}
		again := encodeHeartbeat(h.version, hbSecret, h.leaving, h.time, h.name, h.groups)
		want := bytes.Clone(h.signed)
		want[1] &= flagLeaving // other flag bits are not kept
		if !bytes.Equal(again[:len(again)-macLen], want) || len(again) != len(b) {
			t.Fatalf("decoded %+v from %x; it lays out as %x", h, b, again)
		}
	})
}
