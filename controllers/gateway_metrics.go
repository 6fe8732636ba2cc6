package controllers

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Steps of a Gateway sync, as the step label of
// berth_controller_gateway_sync_step_seconds.
const (
	stepGather    = "gather"    // list the snapshot from the cache
	stepTranslate = "translate" // Gateway API and Ingress -> IR
	stepServe     = "serve"     // IR -> Envoy resources -> xDS server, every changed group
	stepProvision = "provision" // fleets applied
	stepStatus    = "status"    // status written
)

// gatewayMetrics say where the Gateway engine's time goes: each step of a
// sync, and how long a change waited from its watch event until the xDS
// server had its configuration.
type gatewayMetrics struct {
	steps *prometheus.HistogramVec
	// served observes, per sync that served a group, the time since the
	// first watch event that sync took in.
	served prometheus.Histogram
	// pending is when the first event not yet taken in by a sync arrived
	// (UnixNano), 0 when none waits.
	pending atomic.Int64
}

// Buckets from 1 ms to ~16 s: a route change should take milliseconds, a
// first sync of thousands of routes seconds.
var gatewayBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

func newGatewayMetrics(reg prometheus.Registerer) (*gatewayMetrics, error) {
	m := &gatewayMetrics{
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_controller_gateway_sync_step_seconds",
			Help:    "Time of each step of a Gateway/Ingress sync: gather, translate, serve, provision, status.",
			Buckets: gatewayBuckets,
		}, []string{"step"}),
		served: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_controller_gateway_event_to_serve_seconds",
			Help:    "Time from a watch event (route, Gateway, Service, ...) to the xDS server holding the configuration it led to.",
			Buckets: gatewayBuckets,
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.steps, m.served} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway metrics: %w", err)
		}
	}
	return m, nil
}

// event notes that a watch event asked for a sync.
func (m *gatewayMetrics) event() {
	m.pending.CompareAndSwap(0, time.Now().UnixNano())
}

// take hands a starting sync the time of the first event it covers (zero
// when it was started by a timer or a retry).
func (m *gatewayMetrics) take() time.Time {
	if ns := m.pending.Swap(0); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// retake puts back what take handed a sync that failed before it could
// serve, so the retry is measured from the event.
func (m *gatewayMetrics) retake(since time.Time) {
	if !since.IsZero() {
		m.pending.CompareAndSwap(0, since.UnixNano())
	}
}

// step observes one step that began at start and returns now, the next
// step's start.
func (m *gatewayMetrics) step(name string, start time.Time) time.Time {
	now := time.Now()
	m.steps.WithLabelValues(name).Observe(now.Sub(start).Seconds())
	return now
}
