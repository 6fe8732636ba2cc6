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

	conns        prometheus.Gauge
	refusedConns *prometheus.CounterVec
	closed       *prometheus.CounterVec
	subs         prometheus.Gauge
	subBytes     prometheus.Gauge
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
			Help: "xDS streams refused, by reason: certificate, no_node, group_mismatch, node_changed, unknown_type, node_too_large.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_controller_xds_rejected_snapshots_total",
			Help: "Configurations refused by Set or SetTypes (invalid or inconsistent); the last good one stays served.",
		}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_controller_xds_connections",
			Help: "Open xDS connections that passed their TLS handshake.",
		}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_controller_xds_refused_connections_total",
			Help: "xDS connections closed right after their TLS handshake, by reason: group_limit (the group has --xds-max-connections-per-group), ca_rotated (its CA was dropped during the handshake).",
		}, []string{"reason"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_controller_xds_closed_connections_total",
			Help: "xDS connections the server ended, by reason: certificate_expired (the client certificate or its CA), ca_rotated (its CA is no longer trusted).",
		}, []string{"reason"}),
		subs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_controller_xds_subscriptions",
			Help: "Resource types subscribed to on the open xDS streams (one per stream and type).",
		}),
		subBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_controller_xds_subscription_request_bytes",
			Help: "Encoded size of the requests the server keeps for the subscriptions of the open xDS streams (the latest of each stream and type, as kept).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.streams, m.pushes, m.nacks, m.refused, m.rejected,
		m.conns, m.refusedConns, m.closed, m.subs, m.subBytes} {
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
