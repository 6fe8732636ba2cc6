package server

import (
	"maps"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// GroupStatus is what the server knows of one node group: what it serves and what its
// connected Envoys have accepted or rejected.
type GroupStatus struct {
	Group string
	// Version is the version of the last successful Set or SetTypes ("" before the first).
	Version string
	// Served is the version each resource type is served at. A type keeps its version
	// across Sets that do not change it, so it may be older than Version.
	Served map[resource.Type]string
	// Nodes are the connected Envoys of the group, sorted by node id.
	Nodes []NodeStatus
	// Observers are the connected streams of tools that only read the
	// configuration (berthctl); they never count towards InSync.
	Observers int
	// LastNACK is the latest configuration an Envoy of the group rejected, nil if none has
	// been since the server started. It stays after a later version is accepted; see
	// CurrentNACK for the one that concerns what is served now.
	LastNACK *NACK
}

// NodeStatus is one connected Envoy (all its streams).
type NodeStatus struct {
	// ID is the Envoy's node id (its pod name in a Berth deployment).
	ID string
	// Streams is the number of open xDS streams of this node.
	Streams int
	// Acked is, per resource type the node has asked for, the last version it accepted
	// ("" when it has accepted none yet).
	Acked map[resource.Type]string
}

// NACK is a configuration an Envoy rejected.
type NACK struct {
	Node    string
	TypeURL resource.Type
	// Version is the version the Envoy rejected; it keeps running the one before.
	Version string
	// Message is Envoy's error_detail message: why it rejected the configuration.
	Message string
	At      time.Time
}

// InSync reports whether at least one Envoy is connected and every connected Envoy has
// accepted the served version of every type it asked for: the group's Gateway is
// Programmed.
func (g GroupStatus) InSync() bool {
	if len(g.Nodes) == 0 || g.Served == nil {
		return false
	}
	for _, n := range g.Nodes {
		for typeURL, acked := range n.Acked {
			if want, ok := g.Served[typeURL]; ok && acked != want {
				return false
			}
		}
	}
	return true
}

// CurrentNACK returns LastNACK if it rejected the version of its type that is served now,
// and nil once a newer version has replaced it.
func (g GroupStatus) CurrentNACK() *NACK {
	if g.LastNACK == nil || g.Served[g.LastNACK.TypeURL] != g.LastNACK.Version {
		return nil
	}
	return g.LastNACK
}

// Status returns what the server knows of group. It is a copy: safe to keep and change.
func (s *Server) Status(group string) GroupStatus {
	st := GroupStatus{Group: group}
	st.Version, st.Served = s.served(group)
	st.Nodes, st.Observers, st.LastNACK = s.tracker.group(group)
	return st
}

// Changed is signalled (coalesced: one pending signal at most) when the status of some
// group changes: an Envoy connects or disconnects, ACKs or NACKs, or a Set publishes. Read
// the groups with TakeChanged.
func (s *Server) Changed() <-chan struct{} { return s.tracker.changed }

// TakeChanged returns the groups whose status changed since the last call, sorted, and
// forgets them.
func (s *Server) TakeChanged() []string { return s.tracker.takeChanged() }

// maxNonces bounds the responses remembered per stream and type to match ACKs against;
// an Envoy answers the latest, so a few are plenty.
const maxNonces = 8

// maxNACKMessage bounds the error detail kept of a NACK (as Envoy Gateway bounds status
// messages); Envoy's own messages are far shorter.
const maxNACKMessage = 32768

// stream is the server's view of one xDS stream.
type stream struct {
	certGroup string // from the client certificate
	nodeID    string // from the first request
	cluster   string
	counted   bool // an accepted node: part of its group's status
	observer  bool // a tool reading the configuration (ObserverMetadata), not an Envoy
	// sent is, per type URL, the version of each response still awaiting an answer, by nonce.
	sent  map[string]map[string]string
	acked map[string]string
	// kept is, per type subscribed to, the encoded size of the request kept for it.
	kept map[string]int
}

// tracker follows the streams and turns their requests into ACKs and NACKs.
type tracker struct {
	mu      sync.Mutex
	streams map[streamKey]*stream
	nacks   map[string]*NACK
	dirty   map[string]struct{}
	changed chan struct{}
}

// streamKey names a stream: the Serve call and the state-of-the-world and delta servers
// each number their streams independently.
type streamKey struct {
	serve uint32
	delta bool
	id    int64
}

func newTracker() *tracker {
	return &tracker{
		streams: map[streamKey]*stream{},
		nacks:   map[string]*NACK{},
		dirty:   map[string]struct{}{},
		changed: make(chan struct{}, 1),
	}
}

// markChanged must not be called with t.mu held.
func (t *tracker) markChanged(group string) {
	t.mu.Lock()
	t.markChangedLocked(group)
	t.mu.Unlock()
}

func (t *tracker) markChangedLocked(group string) {
	t.dirty[group] = struct{}{}
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *tracker) takeChanged() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Sorted(maps.Keys(t.dirty))
	clear(t.dirty)
	return out
}

func (t *tracker) group(group string) ([]NodeStatus, int, *NACK) {
	t.mu.Lock()
	defer t.mu.Unlock()
	byID := map[string]*NodeStatus{}
	observers := 0
	for _, st := range t.streams {
		if !st.counted || st.cluster != group {
			continue
		}
		if st.observer {
			observers++
			continue
		}
		n := byID[st.nodeID]
		if n == nil {
			n = &NodeStatus{ID: st.nodeID, Acked: map[resource.Type]string{}}
			byID[st.nodeID] = n
		}
		n.Streams++
		maps.Copy(n.Acked, st.acked)
	}
	nodes := make([]NodeStatus, 0, len(byID))
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		nodes = append(nodes, *byID[id])
	}
	var nack *NACK
	if n := t.nacks[group]; n != nil {
		c := *n
		nack = &c
	}
	return nodes, observers, nack
}

// sentResponse records a response sent on a stream, to recognise its ACK or NACK.
func (t *tracker) sentResponse(key streamKey, typeURL, nonce, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[key]
	if st == nil {
		return
	}
	sent := st.sent[typeURL]
	if sent == nil {
		sent = map[string]string{}
		st.sent[typeURL] = sent
	}
	if len(sent) >= maxNonces {
		clear(sent) // the client skipped many responses; only the newest can still be ACKed
	}
	sent[nonce] = version
}

// answer is what a request says about an earlier response.
type answer int

const (
	noAnswer answer = iota // a first request, or one for a response we do not know
	ack
	nack
)

// request records a request's ACK or NACK. It returns what the request was and, for a
// NACK, the version that was rejected.
func (t *tracker) request(key streamKey, typeURL, nonce string, version *string, errorMessage *string, now time.Time) (answer, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[key]
	if st == nil {
		return noAnswer, ""
	}
	if _, ok := st.acked[typeURL]; !ok {
		st.acked[typeURL] = ""
		t.markChangedLocked(st.cluster)
	}
	sentVersion, known := st.sent[typeURL][nonce]
	if nonce == "" || !known {
		return noAnswer, ""
	}
	if errorMessage != nil {
		delete(st.sent[typeURL], nonce)
		msg := *errorMessage
		msg = cutUTF8(msg, maxNACKMessage) // kept per group until the next NACK: bounded as status messages are
		t.nacks[st.cluster] = &NACK{Node: st.nodeID, TypeURL: typeURL, Version: sentVersion, Message: msg, At: now}
		t.markChangedLocked(st.cluster)
		return nack, sentVersion
	}
	// State of the world: an ACK repeats the response's version. Delta requests carry no
	// version (version is nil): the nonce alone names the response.
	if version != nil && *version != sentVersion {
		return noAnswer, ""
	}
	delete(st.sent[typeURL], nonce)
	if st.acked[typeURL] != sentVersion {
		st.acked[typeURL] = sentVersion
		t.markChangedLocked(st.cluster)
	}
	return ack, sentVersion
}

// cutUTF8 returns s cut to at most n bytes, never inside a UTF-8 sequence:
// Envoy's words may be in any script, and half a character is not text.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
