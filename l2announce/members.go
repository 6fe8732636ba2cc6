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

// Members tracks which agents are alive, from heartbeats they send each
// other every Interval over UDP (the agent's transport). The candidates
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
	heard map[string]time.Time
	seq   map[string]uint64
	left  map[string]bool
}

const (
	heartbeatVersion = 1
	flagLeaving      = 1
	macLen           = sha256.Size
)

func (m *Members) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Heartbeat is this agent's next heartbeat message.
func (m *Members) Heartbeat(leaving bool) []byte {
	b := []byte{heartbeatVersion, 0}
	if leaving {
		b[1] = flagLeaving
	}
	b = binary.BigEndian.AppendUint64(b, uint64(m.now().UnixNano()))
	b = append(b, byte(len(m.Self)))
	b = append(b, m.Self...)
	mac := hmac.New(sha256.New, m.Key)
	mac.Write(b)
	return mac.Sum(b)
}

// ErrBadHeartbeat is wrapped by every refusal of Receive.
var ErrBadHeartbeat = errors.New("heartbeat refused")

// Receive takes a heartbeat from the network.
func (m *Members) Receive(b []byte) error {
	if len(b) < 11+macLen {
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
	if len(body) != 11+n || n == 0 {
		return fmt.Errorf("%w: name length %d in %d bytes", ErrBadHeartbeat, n, len(body))
	}
	name := string(body[11:])
	if name == m.Self {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.heard == nil {
		m.heard, m.seq, m.left = map[string]time.Time{}, map[string]uint64{}, map[string]bool{}
	}
	if seq <= m.seq[name] {
		return fmt.Errorf("%w: replayed or reordered heartbeat from %s", ErrBadHeartbeat, name)
	}
	m.seq[name] = seq
	m.heard[name] = m.now()
	m.left[name] = body[1]&flagLeaving != 0
	return nil
}

// Alive lists the agents heard within DeadAfter and not leaving, this one
// included, sorted.
func (m *Members) Alive() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := []string{m.Self}
	for n, t := range m.heard {
		if !m.left[n] && now.Sub(t) <= m.DeadAfter {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
