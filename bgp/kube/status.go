package kube

import (
	"context"
	"strings"
	"time"

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
	state, lastError     string
	advertised, accepted int
	transition           time.Time
}

// Write applies what changed since the last write. problems holds peers
// left out (by "BGPPeer <name>"), whose entry says why.
func (w *StatusWriter) Write(ctx context.Context, states []bgp.PeerState, problems map[string]string) {
	if w.written == nil {
		w.written = map[string]entry{}
	}
	now := time.Now()
	seen := map[string]bool{}
	put := func(peer string, e entry) {
		seen[peer] = true
		old, ok := w.written[peer]
		if ok && old.state == e.state && old.lastError == e.lastError && old.advertised == e.advertised && old.accepted == e.accepted {
			return
		}
		e.transition = now
		if ok && old.state == e.state {
			e.transition = old.transition
		}
		if err := w.apply(ctx, peer, &e, now); err != nil {
			w.Log.Error(err, "write BGPPeer status", "peer", peer)
			return
		}
		w.written[peer] = e
	}
	for _, st := range states {
		put(st.Name, entry{state: st.State, lastError: st.LastError, advertised: st.Advertised, accepted: st.Accepted})
	}
	for what, why := range problems {
		if name, ok := strings.CutPrefix(what, "BGPPeer "); ok {
			put(name, entry{state: string(v1alpha1.BGPSessionIdle), lastError: why})
		}
	}
	// Peers this node no longer runs: its entry goes.
	for peer := range w.written {
		if seen[peer] {
			continue
		}
		if err := w.apply(ctx, peer, nil, now); err != nil {
			w.Log.Error(err, "remove BGPPeer status entry", "peer", peer)
			continue
		}
		delete(w.written, peer)
	}
}

func (w *StatusWriter) apply(ctx context.Context, peer string, e *entry, now time.Time) error {
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
			msg := e.lastError
			if len(msg) > 1000 {
				msg = msg[:1000]
			}
			n["lastError"] = msg
		}
		nodes = append(nodes, n)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "BGPPeer",
		"metadata":   map[string]any{"name": peer},
		"status":     map[string]any{"nodes": nodes},
	}}
	err := w.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("berth-agent-"+w.Node), client.ForceOwnership)
	if client.IgnoreNotFound(err) == nil {
		return nil
	}
	return err
}
