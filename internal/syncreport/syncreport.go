// Package syncreport is how every node component of berth-agent (pod
// network, service proxy, NetworkPolicy, layer-2 and BGP announcement)
// tells an operator how its syncs go, the same way for all: a readiness
// check, a log line and an Event on the Node when syncs start failing or
// fail differently (<Component>Failed, Warning, with the error), and when
// they succeed again (<Component>Ready, Normal). A first success at start
// is logged only, so restarting agents do not flood the Node's events.
package syncreport

import (
	"context"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Reporter follows one component's sync outcomes on one node. Its zero
// value is not usable: build it with New.
type Reporter struct {
	component string
	node      string
	reader    client.Reader
	recorder  events.EventRecorder
	log       logr.Logger
	// readyNote is the event message on recovery, like "pod network in place".
	readyNote string

	mu      sync.Mutex
	synced  bool   // a sync has succeeded
	results int    // outcomes seen
	lastErr string // "" after a success
}

// New returns a Reporter for component (the events' reason prefix, like
// "NetworkPolicy") on node. reader reads the Node the events are about;
// recorder may be nil (no events: tests, or an agent without the right).
func New(component, node, readyNote string, reader client.Reader, recorder events.EventRecorder, log logr.Logger) *Reporter {
	return &Reporter{component: component, node: node, reader: reader, recorder: recorder, log: log, readyNote: readyNote}
}

// Report records the outcome of one sync (err nil: success).
func (r *Reporter) Report(ctx context.Context, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
		if msg == "" {
			msg = "sync failed"
		}
	}
	r.mu.Lock()
	first := r.results == 0
	changed := first || msg != r.lastErr
	r.results++
	r.lastErr = msg
	if err == nil {
		r.synced = true
	}
	r.mu.Unlock()
	if !changed {
		return
	}
	if err != nil {
		r.log.Error(err, "sync failed", "component", r.component)
	} else {
		r.log.Info(r.readyNote, "component", r.component)
	}
	if r.recorder == nil || (first && err == nil) {
		return
	}
	node := &corev1.Node{}
	if gerr := r.reader.Get(ctx, client.ObjectKey{Name: r.node}, node); gerr != nil {
		r.log.Error(gerr, "no event recorded: cannot read this node", "node", r.node)
		return
	}
	if err != nil {
		r.recorder.Eventf(node, nil, corev1.EventTypeWarning, r.component+"Failed", "Sync", "%s", truncate(msg))
		return
	}
	r.recorder.Eventf(node, nil, corev1.EventTypeNormal, r.component+"Ready", "Sync", "%s again", r.readyNote)
}

// Ready is the component's readiness check: an error until a sync has
// succeeded, and while the last one failed (saying why).
func (r *Reporter) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.lastErr != "":
		return fmt.Errorf("%s: %s", r.component, truncate(r.lastErr))
	case !r.synced:
		return fmt.Errorf("%s: first sync pending", r.component)
	}
	return nil
}

// maxMessage bounds an event's message (the API server refuses notes
// over 1 KiB).
const maxMessage = 1000

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	n := maxMessage - 3
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
