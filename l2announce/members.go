package l2announce

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
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
// Heartbeats carry an HMAC-SHA256 under a key all agents share (from a
// Secret), so nothing on the LAN can keep a dead node alive or push a live
// one out, and a sequence number (the sender's clock in nanoseconds, which
// only grows across restarts) so an old message cannot be replayed.
type Members struct {
	Self      string
	Key       []byte
	DeadAfter time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu    sync.Mutex
	peers map[string]*peer
	// sent is the sequence number of the last heartbeat made.
	sent uint64
}

type peer struct {
	heard  time.Time
	seq    uint64
	left   bool
	groups map[uint64]bool
}

const (
	heartbeatVersion = 1
	flagLeaving      = 1
	macLen           = sha256.Size
	// MaxGroups bounds the groups one heartbeat carries (8 bytes each).
	MaxGroups = 1024
	// MaxHeartbeatSize is the largest heartbeat: a name of 255 bytes and
	// MaxGroups groups (8.5 KiB; the kernel fragments it on the LAN).
	MaxHeartbeatSize = 2 + 8 + 1 + 255 + 2 + 8*MaxGroups + macLen
)

func (m *Members) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Heartbeat is this agent's next heartbeat message, saying for which
// groups (GroupKey) it is ready to announce; at most MaxGroups are sent.
//
// Layout: version, flags, sequence (8 bytes), name length, name, group
// count (2 bytes), groups (8 bytes each), HMAC-SHA256 of all before it.
func (m *Members) Heartbeat(leaving bool, groups []uint64) []byte {
	if len(groups) > MaxGroups {
		groups = groups[:MaxGroups]
	}
	b := make([]byte, 2, 13+len(m.Self)+8*len(groups)+macLen)
	b[0] = heartbeatVersion
	if leaving {
		b[1] = flagLeaving
	}
	b = binary.BigEndian.AppendUint64(b, m.nextSeq())
	b = append(b, byte(len(m.Self)))
	b = append(b, m.Self...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(groups)))
	for _, g := range groups {
		b = binary.BigEndian.AppendUint64(b, g)
	}
	mac := hmac.New(sha256.New, m.Key)
	mac.Write(b)
	return mac.Sum(b)
}

// nextSeq numbers a heartbeat: the clock in nanoseconds, or one more than
// the last number when the clock stepped back (an NTP correction), so the
// peers, which refuse a number not above the last they saw, keep hearing
// this agent.
func (m *Members) nextSeq() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	seq := uint64(m.now().UnixNano())
	if seq <= m.sent {
		seq = m.sent + 1
	}
	m.sent = seq
	return seq
}

// ErrBadHeartbeat is wrapped by every refusal of Receive.
var ErrBadHeartbeat = errors.New("heartbeat refused")

// Receive takes a heartbeat from the network.
func (m *Members) Receive(b []byte) error {
	if len(b) < 13+macLen {
		return fmt.Errorf("%w: %d bytes is too short", ErrBadHeartbeat, len(b))
	}
	body, sum := b[:len(b)-macLen], b[len(b)-macLen:]
	mac := hmac.New(sha256.New, m.Key)
	mac.Write(body)
	if !hmac.Equal(sum, mac.Sum(nil)) {
		return fmt.Errorf("%w: bad signature", ErrBadHeartbeat)
	}
	if body[0] != heartbeatVersion {
		return fmt.Errorf("%w: version %d", ErrBadHeartbeat, body[0])
	}
	seq := binary.BigEndian.Uint64(body[2:10])
	n := int(body[10])
	if n == 0 || len(body) < 13+n {
		return fmt.Errorf("%w: name length %d in %d bytes", ErrBadHeartbeat, n, len(body))
	}
	name := string(body[11 : 11+n])
	rest := body[11+n:]
	count := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+8*count || count > MaxGroups {
		return fmt.Errorf("%w: %d groups in %d bytes", ErrBadHeartbeat, count, len(rest)-2)
	}
	if name == m.Self {
		return nil
	}
	groups := make(map[uint64]bool, count)
	for i := 0; i < count; i++ {
		groups[binary.BigEndian.Uint64(rest[2+8*i:])] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.peers == nil {
		m.peers = map[string]*peer{}
	}
	p := m.peers[name]
	if p == nil {
		p = &peer{}
		m.peers[name] = p
	}
	if seq <= p.seq {
		return fmt.Errorf("%w: replayed or reordered heartbeat from %s", ErrBadHeartbeat, name)
	}
	p.seq, p.heard, p.left, p.groups = seq, m.now(), body[1]&flagLeaving != 0, groups
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
