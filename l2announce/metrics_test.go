package l2announce

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The series follow the agent's naming, berth_agent_<component>_*
// (docs/upgrade.md lists the old berth_l2_* names).
func TestMetricNames(t *testing.T) {
	m := NewMetrics()
	m.set(2, 3)
	m.taken()
	m.released()
	m.contended(lbIP, true)
	m.conflicted([]netip.Addr{lbIP})
	m.heartbeatRefused(refuse(RefusedStale, "old"))
	m.frame("answered who-has")
	reg := prometheus.NewRegistry()
	for _, c := range m.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range got {
		names = append(names, f.GetName())
	}
	want := []string{
		"berth_agent_l2_address_conflict",
		"berth_agent_l2_announced_addresses",
		"berth_agent_l2_conflicts_total",
		"berth_agent_l2_frames_total",
		"berth_agent_l2_heartbeats_refused_total",
		"berth_agent_l2_live_agents",
		"berth_agent_l2_releases_total",
		"berth_agent_l2_takeovers_total",
	}
	if !slices.Equal(names, want) {
		t.Errorf("series %v; want %v", names, want)
	}
}
