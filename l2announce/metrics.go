package l2announce

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the announcer's Prometheus series. A nil *Metrics counts
// nothing.
type Metrics struct {
	announced prometheus.Gauge
	live      prometheus.Gauge
	frames    *prometheus.CounterVec
	takeovers prometheus.Counter
	releases  prometheus.Counter
	conflicts *prometheus.CounterVec
	// inConflictG is berth_agent_l2_address_conflict; inConflict the
	// addresses it has now.
	inConflictG *prometheus.GaugeVec
	inConflict  map[netip.Addr]bool
	hbRefused   *prometheus.CounterVec
}

// NewMetrics makes the series; register Collectors.
func NewMetrics() *Metrics {
	return &Metrics{
		announced: prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_agent_l2_announced_addresses",
			Help: "Addresses this node answers ARP or neighbour solicitations for."}),
		live: prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_agent_l2_live_agents",
			Help: "Agents this node hears heartbeats from, itself included."}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "berth_agent_l2_frames_total",
			Help: "ARP and NDP frames received, by outcome: answered, limited (a request not answered: its source is over its reply limit), ignored, garbled, conflict (another host claims an address this node announces)."}, []string{"outcome"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_agent_l2_takeovers_total",
			Help: "Addresses this node started announcing."}),
		releases: prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_agent_l2_releases_total",
			Help: "Addresses this node stopped announcing."}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "berth_agent_l2_conflicts_total",
			Help: "Conflict probes that saw another host want the address, by address and kind: claim (it answered or announced it) or probe (it only probed for it)."}, []string{"address", "kind"}),
		inConflictG: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "berth_agent_l2_address_conflict",
			Help: "1 while another host claims an address this node should announce, which it therefore does not announce."}, []string{"address"}),
		inConflict: map[netip.Addr]bool{},
		hbRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "berth_agent_l2_heartbeats_refused_total",
			Help: "Heartbeats refused, by reason: not_peer (source is no Node's InternalIP), signature, stale (time outside the window), replay, malformed."}, []string{"reason"}),
	}
}

// Collectors lists the series to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.announced, m.live, m.frames, m.takeovers, m.releases, m.conflicts, m.inConflictG, m.hbRefused}
}

func (m *Metrics) set(announced, live int) {
	if m != nil {
		m.announced.Set(float64(announced))
		m.live.Set(float64(live))
	}
}

func (m *Metrics) taken() {
	if m != nil {
		m.takeovers.Inc()
	}
}

func (m *Metrics) released() {
	if m != nil {
		m.releases.Inc()
	}
}

// contended counts a probe of addr that saw another host claim it, or
// only probe for it.
func (m *Metrics) contended(addr netip.Addr, claim bool) {
	if m == nil {
		return
	}
	kind := "probe"
	if claim {
		kind = "claim"
	}
	m.conflicts.WithLabelValues(addr.String(), kind).Inc()
}

// conflicted sets berth_agent_l2_address_conflict to 1 for exactly addrs
// (called from the announcer's loop only).
func (m *Metrics) conflicted(addrs []netip.Addr) {
	if m == nil {
		return
	}
	now := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		now[a] = true
		if !m.inConflict[a] {
			m.inConflictG.WithLabelValues(a.String()).Set(1)
		}
	}
	for a := range m.inConflict {
		if !now[a] {
			m.inConflictG.DeleteLabelValues(a.String())
		}
	}
	m.inConflict = now
}

func (m *Metrics) heartbeatRefused(err error) {
	if m == nil {
		return
	}
	reason := RefusedMalformed
	var r *HeartbeatRefusal
	if errors.As(err, &r) {
		reason = r.Reason
	}
	m.hbRefused.WithLabelValues(reason).Inc()
}

// frame counts one received frame by the reason the responder gave.
func (m *Metrics) frame(reason string) {
	if m == nil {
		return
	}
	outcome := "ignored"
	switch {
	case strings.HasPrefix(reason, "answered"):
		outcome = "answered"
	case strings.HasPrefix(reason, LimitedReason):
		outcome = "limited"
	case strings.HasPrefix(reason, "garbled"), strings.HasPrefix(reason, "not an Ethernet"):
		outcome = "garbled"
	case strings.Contains(reason, "conflict"):
		outcome = "conflict"
	}
	m.frames.WithLabelValues(outcome).Inc()
}
