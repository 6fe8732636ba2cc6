package l2announce

import (
	"sort"
	"sync"
	"time"
)

// Members tracks which agents are alive, and for which announcement groups
// each is ready, from heartbeats they send each other every Interval over
// UDP (the agent's transport). The candidates
// come from the Node objects, so no gossip is needed to find peers; what a
// heartbeat adds is speed: a peer not heard for DeadAfter is dead, which
// with Interval 100 ms and DeadAfter 400 ms is well under a second (the
// API server's Node leases take 40 s). A leaving heartbeat, sent first by
// an agent that shuts down, takes it out at once, so a rolling update
// moves its addresses without waiting.
//
// What a heartbeat must pass, in order (Receive; the transport has already
// dropped datagrams from addresses that are no peer's InternalIP):
//   - its name is that of the node whose address sent it;
//   - its HMAC verifies under that node's key, NodeKey(Key, name);
//   - its time is within Window of this node's clock, so a message
//     captured earlier, or one dated far ahead, is refused;
//   - its time is after that of the last heartbeat taken from the node,
//     so a message is taken at most once.
//
// Per peer it keeps only the last time taken, when that was, and what the
// heartbeat said. A restarted receiver has none of it: it takes any fresh
// heartbeat, so a replay can still count within Window of its capture,
// once. A forged time ahead of the clock holds the genuine heartbeats off
// for Window at most; a peer whose clock stepped back is heard again at
// once when it stepped less than Window (its agent keeps its times
// growing), else as soon as its clock agrees with this one's again.
type Members struct {
	Self string
	// Key is the secret all agents share (from a Secret); each signs with
	// NodeKey(Key, its name).
	Key       []byte
	DeadAfter time.Duration
	// Window is how far a heartbeat's time may be from this node's clock
	// (DefaultWindow when 0); the nodes' clocks must agree closer than it.
	Window time.Duration
	// AcceptV1 takes heartbeats of the release before (version 1, signed
	// with Key itself) under the same rules, and has Heartbeats send them
	// to peers not heard in version 2, so a rolling upgrade keeps every
	// agent hearing every other.
	AcceptV1 bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu    sync.Mutex
	peers map[string]*peer
	// sent is the time of the last heartbeat made.
	sent int64
}

type peer struct {
	heard  time.Time
	last   int64
	left   bool
	groups map[uint64]bool
	// v2 is when it last sent a version-2 heartbeat.
	v2 time.Time
}

// DefaultWindow is Members.Window when unset.
const DefaultWindow = 5 * time.Second

func (m *Members) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Members) window() time.Duration {
	if m.Window > 0 {
		return m.Window
	}
	return DefaultWindow
}

// Heartbeat is this agent's next heartbeat message, saying for which
// groups (GroupKey) it is ready to announce; at most MaxGroups are sent.
func (m *Members) Heartbeat(leaving bool, groups []uint64) []byte {
	v2, _ := m.Heartbeats(leaving, groups)
	return v2
}

// Heartbeats is this agent's next heartbeat in version 2, and in version 1
// (nil unless AcceptV1) for the peers that speak only that, with the same
// time.
func (m *Members) Heartbeats(leaving bool, groups []uint64) (v2, v1 []byte) {
	if len(groups) > MaxGroups {
		groups = groups[:MaxGroups]
	}
	t := m.nextTime()
	v2 = encodeHeartbeat(heartbeatV2, NodeKey(m.Key, m.Self), leaving, t, m.Self, groups)
	if m.AcceptV1 {
		v1 = encodeHeartbeat(heartbeatV1, m.Key, leaving, t, m.Self, groups)
	}
	return v2, v1
}

// nextTime dates a heartbeat: the clock in nanoseconds, or one more than
// the last time when the clock stepped back (an NTP correction) by less
// than Window, so the peers, which refuse a time not after the last they
// took, keep hearing this agent. A step of more than Window is taken as
// is: times that far ahead would be refused by peers whose clocks agree.
func (m *Members) nextTime() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.now().UnixNano()
	if t <= m.sent && m.sent-t < int64(m.window()) {
		t = m.sent + 1
	}
	m.sent = t
	return t
}

// SpeaksV2 reports whether node sent a version-2 heartbeat within Window:
// it needs no version-1 copy.
func (m *Members) SpeaksV2(node string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[node]
	return p != nil && !p.v2.IsZero() && m.now().Sub(p.v2) <= m.window()
}

// Receive takes a heartbeat that came from an address of node from (the
// transport looks the source address up among the Nodes' InternalIPs;
// "" when it is none of them). A version-1 heartbeat from a peer that
// sent version 2 within Window is the copy sent for older agents: it is
// dropped without error.
func (m *Members) Receive(from string, b []byte) error {
	if from == "" {
		return refuse(RefusedNotPeer, "not from a peer's InternalIP")
	}
	h, err := decodeHeartbeat(b)
	if err != nil {
		return err
	}
	if h.name != from {
		return refuse(RefusedSignature, "%s's address sent a heartbeat named %q", from, h.name)
	}
	var key []byte
	switch {
	case h.version == heartbeatV2:
		key = NodeKey(m.Key, from)
	case m.AcceptV1:
		key = m.Key
	default:
		return refuse(RefusedMalformed, "version 1 from %s (turned off)", from)
	}
	if !h.signedBy(key) {
		return refuse(RefusedSignature, "bad signature from %s (version %d)", from, h.version)
	}
	now := m.now()
	age := now.Sub(time.Unix(0, h.time))
	if w := m.window(); age > w || age < -w {
		return refuse(RefusedStale, "heartbeat of %s dated %s, %s from this node's clock (more than %s)",
			from, time.Unix(0, h.time).UTC().Format(time.RFC3339Nano), age.Round(time.Millisecond), w)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.peers == nil {
		m.peers = map[string]*peer{}
	}
	p := m.peers[from]
	if p == nil {
		p = &peer{}
		m.peers[from] = p
	}
	if h.version == heartbeatV1 && !p.v2.IsZero() && now.Sub(p.v2) <= m.window() {
		return nil
	}
	if h.time <= p.last {
		return refuse(RefusedReplay, "replayed or reordered heartbeat from %s", from)
	}
	groups := make(map[uint64]bool, len(h.groups))
	for _, g := range h.groups {
		groups[g] = true
	}
	p.last, p.heard, p.left, p.groups = h.time, now, h.leaving, groups
	if h.version == heartbeatV2 {
		p.v2 = now
	}
	return nil
}

// Alive lists the agents heard within DeadAfter and not leaving, this one
// included, sorted.
func (m *Members) Alive() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := []string{m.Self}
	for n, p := range m.peers {
		if m.alive(p, now) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (m *Members) alive(p *peer, now time.Time) bool {
	return !p.left && now.Sub(p.heard) <= m.DeadAfter
}

// ReadyPeers maps every live peer (this agent not included) to the groups
// its last heartbeat said it is ready for. The maps are shared: do not
// change them.
func (m *Members) ReadyPeers() map[string]map[uint64]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make(map[string]map[uint64]bool, len(m.peers))
	for n, p := range m.peers {
		if m.alive(p, now) {
			out[n] = p.groups
		}
	}
	return out
}
