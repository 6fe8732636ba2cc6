package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
)

// StatusWriter writes this node's entry in each BGPPeer's status.nodes
// with server-side apply under a field manager of its own, so the nodes
// never overwrite each other: the session's actual state, why it last
// went down, and the prefixes advertised and accepted.
type StatusWriter struct {
	Node   string
	Client client.Client
	Log    logr.Logger

	written map[string]entry // by peer
}

type entry struct {
	// uid is the BGPPeer object's the entry was written to.
	uid                           string
	state, lastError              string
	advertised, accepted, refused int
	conds                         []cond
	transition                    time.Time
}

// cond is one condition of an entry; its transition time is kept while
// its status stays.
type cond struct {
	typ, status, reason, message string
	since                        time.Time
}

func (e entry) same(o entry) bool {
	if e.uid != o.uid || e.state != o.state || e.lastError != o.lastError || e.advertised != o.advertised || e.accepted != o.accepted ||
		e.refused != o.refused || len(e.conds) != len(o.conds) {
		return false
	}
	for i := range e.conds {
		a, b := e.conds[i], o.conds[i]
		if a.typ != b.typ || a.status != b.status || a.reason != b.reason || a.message != b.message {
			return false
		}
	}
	return true
}

// maxListed is how many refused routes a RoutesRefused message names.
const maxListed = 5

// sessionConds are the conditions of a session the node runs.
func sessionConds(st bgp.PeerState) []cond {
	out := []cond{{typ: v1alpha1.BGPConditionConfigured, status: "True", reason: v1alpha1.ReasonPeerConfigured,
		message: "the node runs a session with the peer"}}
	refused := cond{typ: v1alpha1.BGPConditionRoutesRefused, status: "False", reason: v1alpha1.ReasonNoneRefused,
		message: "no route the peer sends is refused"}
	if n := len(st.Refused); n > 0 {
		refused.status, refused.reason = "True", st.Refused[0].Reason
		for _, r := range st.Refused {
			if r.Reason == bgp.RefusedNextHopNotOwner {
				refused.reason = r.Reason // the hijack says more than the rest
				break
			}
		}
		var parts []string
		for i, r := range st.Refused {
			if i == maxListed {
				parts = append(parts, fmt.Sprintf("and %d more", n-maxListed))
				break
			}
			parts = append(parts, r.String())
		}
		refused.message = fmt.Sprintf("%d prefixes refused: %s", n, strings.Join(parts, "; "))
	}
	limit := cond{typ: v1alpha1.BGPConditionMaxPrefixesReached, status: "False", reason: v1alpha1.ReasonWithinLimit,
		message: fmt.Sprintf("the peer sent no more than maxPrefixes (%d)", st.MaxPrefixes)}
	if st.MaxPrefixes == 0 {
		limit.message = "no limit (maxPrefixes 0)"
	}
	if st.MaxPrefixesReached {
		limit.status, limit.reason = "True", v1alpha1.ReasonMaxPrefixesReached
		limit.message = fmt.Sprintf("the peer sent more than %d prefixes (maxPrefixes): the session was closed with a Cease and stays down until maxPrefixes changes", st.MaxPrefixes)
	}
	return append(out, refused, limit, ackCond(st))
}

// ackCond is the RoutesAcknowledged condition (see bgp.PeerState).
func ackCond(st bgp.PeerState) cond {
	c := cond{typ: v1alpha1.BGPConditionRoutesAcknowledged, status: "Unknown", reason: v1alpha1.ReasonNotEstablished,
		message: "the session is not Established"}
	switch st.RoutesAcknowledged {
	case bgp.AckTrue:
		c.status, c.reason = "True", v1alpha1.ReasonAcknowledged
		c.message = fmt.Sprintf("the router's TCP acknowledged every UPDATE sent (%d prefixes advertised)", st.Advertised)
	case bgp.AckFalse:
		c.status, c.reason = "False", v1alpha1.ReasonUnacknowledged
		c.message = fmt.Sprintf("%d bytes of UPDATEs sent are not acknowledged by the router's TCP after 2 s: the router drops this node's segments (a firewall, TTL security one hop too strict), so the routes advertised have not arrived though the session shows Established", st.Unacknowledged)
	case bgp.AckPending:
		c.reason, c.message = v1alpha1.ReasonAckPending, fmt.Sprintf("%d bytes sent are waiting for the router's acknowledgement", st.Unacknowledged)
	default:
		if st.State == string(v1alpha1.BGPSessionEstablished) {
			c.reason, c.message = v1alpha1.ReasonAckUnobserved, "the session's socket could not be read"
		}
	}
	return c
}

// Write applies what changed since the last write. problems holds the
// peers left out, by name, whose entry says why.
func (w *StatusWriter) Write(ctx context.Context, states []bgp.PeerState, problems map[string]Problem) {
	if w.written == nil {
		w.written = map[string]entry{}
	}
	now := time.Now()
	seen := map[string]bool{}
	put := func(peer string, e entry) {
		seen[peer] = true
		old, ok := w.written[peer]
		if ok && old.same(e) {
			return
		}
		if ok && old.uid != e.uid {
			// Another object of the name: nothing of the old carries over.
			ok, old = false, entry{}
		}
		e.transition = now
		if ok && old.state == e.state {
			e.transition = old.transition
		}
		for i := range e.conds {
			e.conds[i].since = now
			for _, o := range old.conds {
				if o.typ == e.conds[i].typ && o.status == e.conds[i].status {
					e.conds[i].since = o.since
				}
			}
		}
		if err := w.apply(ctx, peer, e.uid, &e, now); err != nil {
			if !errors.Is(err, errOtherObject) { // the next sync has the new one
				w.Log.Error(err, "write BGPPeer status", "peer", peer)
			}
			return
		}
		w.written[peer] = e
	}
	for _, st := range states {
		put(st.Name, entry{uid: st.UID, state: st.State, lastError: st.LastError, advertised: st.Advertised, accepted: st.Accepted,
			refused: len(st.Refused), conds: sessionConds(st)})
	}
	for name, p := range problems {
		put(name, entry{uid: p.UID, state: string(v1alpha1.BGPSessionIdle), lastError: p.Message,
			conds: []cond{{typ: v1alpha1.BGPConditionConfigured, status: "False", reason: p.Reason, message: p.Message}}})
	}
	// Peers this node no longer runs: its entry goes.
	for peer := range w.written {
		if seen[peer] {
			continue
		}
		if err := w.apply(ctx, peer, w.written[peer].uid, nil, now); err != nil && !errors.Is(err, errOtherObject) {
			// errOtherObject: the object written to is gone, another has
			// its name; nothing of this node's is on it.
			w.Log.Error(err, "remove BGPPeer status entry", "peer", peer)
			continue
		}
		delete(w.written, peer)
	}
}

// errOtherObject: the BGPPeer of the name is not the one the entry is of.
var errOtherObject = errors.New("the BGPPeer was deleted and another made with its name")

// apply writes the node's entry (nil: removes it) to the BGPPeer of that
// name when it is the object of that uid (any, when uid is empty): a
// deleted peer's session is not written onto its successor.
func (w *StatusWriter) apply(ctx context.Context, peer, uid string, e *entry, now time.Time) error {
	nodes := []any{}
	if e != nil {
		n := map[string]any{
			"node":               w.Node,
			"state":              e.state,
			"prefixesAdvertised": int64(e.advertised),
			"prefixesAccepted":   int64(e.accepted),
			"lastTransition":     e.transition.UTC().Format(time.RFC3339),
			"updated":            now.UTC().Format(time.RFC3339),
		}
		if e.lastError != "" {
			n["lastError"] = bounded(e.lastError, 1000)
		}
		if e.refused > 0 {
			n["prefixesRefused"] = int64(e.refused)
		}
		var conds []any
		for _, c := range e.conds {
			conds = append(conds, map[string]any{"type": c.typ, "status": c.status, "reason": c.reason,
				"message": bounded(c.message, 1000), "lastTransitionTime": c.since.UTC().Format(time.RFC3339)})
		}
		if len(conds) > 0 {
			n["conditions"] = conds
		}
		nodes = append(nodes, n)
	}
	if uid != "" {
		// Server-side apply takes no UID precondition on status: the
		// object is read (from the agent's cache) and left alone when it
		// is another one of the name.
		var cur v1alpha1.BGPPeer
		if err := w.Client.Get(ctx, client.ObjectKey{Name: peer}, &cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		if string(cur.UID) != uid {
			return errOtherObject
		}
	}
	meta := map[string]any{"name": peer}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "BGPPeer",
		"metadata":   meta,
		"status":     map[string]any{"nodes": nodes},
	}}
	err := w.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("berth-agent-"+w.Node), client.ForceOwnership)
	if client.IgnoreNotFound(err) == nil {
		return nil
	}
	return err
}

// bounded cuts a message for status to at most n bytes, on a rune.
func bounded(msg string, n int) string {
	if len(msg) <= n {
		return msg
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}
