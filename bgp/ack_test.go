package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The send queue judged reading by reading: empty is acknowledged; bytes
// that stay, without the queue shrinking, for ackGrace are not.
func TestAckState(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var prev ackSample
	have := false
	for i, step := range []struct {
		at     time.Duration
		queued uint32
		want   string
	}{
		{0, 0, AckTrue},
		{time.Second, 300, AckPending},             // sent, in flight
		{2 * time.Second, 300, AckPending},         // 1 s stuck
		{3 * time.Second, 120, AckPending},         // shrank: progress
		{4500 * time.Millisecond, 120, AckPending}, // 1.5 s stuck
		{5 * time.Second, 400, AckFalse},           // 2 s without shrinking (more queued)
		{6 * time.Second, 400, AckFalse},           //
		{7 * time.Second, 0, AckTrue},              // all acknowledged at last
		{8 * time.Second, 50, AckPending},          // the next UPDATE
		{10 * time.Second, 50, AckFalse},           // 2 s
	} {
		var got string
		got, prev = ackState(prev, have, step.queued, t0.Add(step.at))
		have = true
		if got != step.want {
			t.Errorf("step %d (%s, %d bytes queued): %q, want %q", i, step.at, step.queued, got, step.want)
		}
	}
}

// Against BIRD: the session's routes are acknowledged; then BIRD's
// kernel drops every segment from the node (as TTL security one hop too
// strict does) and a new prefix is advertised: while the session is still
// Established (BIRD's hold timer has not run out), the speaker says the
// routes are not acknowledged.
func TestRoutesAcknowledgedWithBIRD(t *testing.T) {
	b := startBIRD(t, 64500, 64512, "")
	peer := &Peer{Name: "router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	web, api := netip.MustParsePrefix("198.51.100.47/32"), netip.MustParsePrefix("198.51.100.48/32")
	s, ctx := runSpeaker(t)
	if err := s.Apply(ctx, onePeerPlan(peer, b.local, Attrs{}, web)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the route at BIRD, acknowledged", func() error {
		if b.route(web.String()) == "" {
			return fmt.Errorf("no route at BIRD")
		}
		st, err := stateOf(ctx, s, "router")
		if err == nil && (st.State != "Established" || st.RoutesAcknowledged != AckTrue) {
			err = fmt.Errorf("%s, routes acknowledged %q", st.State, st.RoutesAcknowledged)
		}
		return err
	})
	rules := fmt.Sprintf(`table inet berthack {
	chain in {
		type filter hook input priority 0;
		ip saddr %s tcp dport 179 drop
	}
}`, b.local)
	cmd := b.ns.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	if err := s.Apply(ctx, onePeerPlan(peer, b.local, Attrs{}, web, api)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 8*time.Second, "routes not acknowledged on an Established session", func() error {
		st, err := stateOf(ctx, s, "router")
		if err != nil {
			return err
		}
		if st.State != "Established" {
			t.Fatalf("the session went down (%s, %q) before the speaker said the routes were not acknowledged", st.State, st.LastError)
		}
		if st.RoutesAcknowledged != AckFalse || st.Unacknowledged == 0 {
			return fmt.Errorf("routes acknowledged %q, %d bytes unacknowledged", st.RoutesAcknowledged, st.Unacknowledged)
		}
		return nil
	})
	// The same at a scrape: the bytes not acknowledged, above 0.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var unacked float64
	for _, mf := range mfs {
		if mf.GetName() == "berth_agent_bgp_unacknowledged_bytes" {
			for _, m := range mf.GetMetric() {
				unacked = m.GetGauge().GetValue()
			}
		}
	}
	if unacked <= 0 {
		t.Errorf("berth_agent_bgp_unacknowledged_bytes %v; want above 0 while BIRD drops the node's segments", unacked)
	}
	if r := b.route(api.String()); r != "" {
		t.Errorf("BIRD has %s though its kernel drops the node's segments: %s", api, r)
	}
}
