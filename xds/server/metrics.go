package server

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics, registered on the Registerer in Options.
type metrics struct {
	streams  *prometheus.GaugeVec
	pushes   *prometheus.CounterVec
	nacks    *prometheus.CounterVec
	refused  *prometheus.CounterVec
	rejected prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_controller_xds_connected_streams",
			Help: "Open xDS streams whose node was admitted, by protocol (sotw or delta).",
		}, []string{"protocol"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_controller_xds_pushes_total",
			Help: "xDS responses sent to Envoys, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_controller_xds_nacks_total",
			Help: "xDS responses Envoys rejected (NACK), by resource type.",
		}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_controller_xds_refused_streams_total",
			Help: "xDS streams refused, by reason: certificate, no_node, group_mismatch, node_changed.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_controller_xds_rejected_snapshots_total",
			Help: "Configurations refused by Set or SetTypes (invalid or inconsistent); the last good one stays served.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.streams, m.pushes, m.nacks, m.refused, m.rejected} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("xds metrics: %w (one Server per Registerer)", err)
			}
			return nil, fmt.Errorf("xds metrics: %w", err)
		}
	}
	return m, nil
}

// shortType turns a type URL into a metric label: "type.googleapis.com/envoy.config.cluster.v3.Cluster" -> "Cluster".
func shortType(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, ".")+1:]
}
