package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Which lost sessions the speaker makes again itself, and after how long
// (GoBGP would hold each Idle for 5 s first).
func TestRedialAfter(t *testing.T) {
	grCap := []bgp.ParameterCapabilityInterface{bgp.NewCapGracefulRestart(false, false, 120, nil)}
	plain := &Peer{Name: "p"}
	held := &Peer{Name: "h", IdleHold: 3 * time.Second}
	gr := &Peer{Name: "g", GracefulRestart: true}
	for _, c := range []struct {
		name  string
		peer  *Peer
		st    apiutil.PeerState
		ok    bool
		after time.Duration
	}{
		{"router sent a Cease (its daemon stops)", plain,
			apiutil.PeerState{SessionState: bgp.BGP_FSM_IDLE, DisconnectReason: api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED}, true, 0},
		{"hold timer expired", plain,
			apiutil.PeerState{SessionState: bgp.BGP_FSM_IDLE, DisconnectReason: api.PeerState_DISCONNECT_REASON_HOLD_TIMER_EXPIRED}, true, 0},
		{"idle hold set", held,
			apiutil.PeerState{SessionState: bgp.BGP_FSM_IDLE, DisconnectReason: api.PeerState_DISCONNECT_REASON_READ_FAILED}, true, 3 * time.Second},
		{"still established", plain, apiutil.PeerState{SessionState: bgp.BGP_FSM_ESTABLISHED}, false, 0},
		{"Berth removed it", plain,
			apiutil.PeerState{SessionState: bgp.BGP_FSM_IDLE, DisconnectReason: api.PeerState_DISCONNECT_REASON_DECONFIGURED}, false, 0},
		{"closed on maxPrefixes", plain,
			apiutil.PeerState{SessionState: bgp.BGP_FSM_IDLE, AdminState: api.PeerState_ADMIN_STATE_PFX_CT}, false, 0},
		{"router restarts gracefully, node its helper", gr,
			apiutil.PeerState{SessionState: bgp.BGP_FSM_IDLE, DisconnectReason: api.PeerState_DISCONNECT_REASON_READ_FAILED, RemoteCap: grCap}, false, 0},
		{"router with graceful restart sent a Cease", gr,
			apiutil.PeerState{SessionState: bgp.BGP_FSM_IDLE, DisconnectReason: api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED, RemoteCap: grCap}, true, 0},
	} {
		after, ok := redialAfter(c.peer, c.st)
		if ok != c.ok || after != c.after {
			t.Errorf("%s: redial %v after %s; want %v after %s", c.name, ok, after, c.ok, c.after)
		}
	}
}

// restart stops BIRD as its operator would (birdc down: a Cease to the
// speaker) and starts it again on the same configuration.
func (b *bird) restart(t *testing.T) {
	t.Helper()
	if _, err := b.birdc("down"); err != nil && !strings.Contains(err.Error(), "Shutdown") {
		t.Logf("birdc down: %v", err)
	}
	waitFor(t, 10*time.Second, "BIRD gone", func() error {
		if _, err := b.birdc("show", "status"); err == nil {
			return fmt.Errorf("still answering")
		}
		return nil
	})
	b.start(t, "bird", "-f", "-c", filepath.Join(b.dir, "bird.conf"), "-s", b.sock())
	waitFor(t, 10*time.Second, "BIRD up again", func() error {
		_, err := b.birdc("show", "status")
		return err
	})
}

// A router whose BGP daemon restarts: the speaker connects again on its
// own and the route is back in the router's table. How fast is
// test/bgpbench's figure.
func TestPeerRestartSessionBack(t *testing.T) {
	b := startBIRD(t, 64500, 64512, "")
	peer := &Peer{Name: "router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	web := netip.MustParsePrefix("198.51.100.44/32")
	s, ctx := runSpeaker(t)
	if err := s.Apply(ctx, onePeerPlan(peer, b.local, Attrs{}, web)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		waitFor(t, 30*time.Second, fmt.Sprintf("the route at BIRD (%d)", i), func() error {
			if r := b.route(web.String()); !strings.Contains(r, "via "+b.local.String()) {
				return fmt.Errorf("no route via %s: %q", b.local, r)
			}
			return nil
		})
		established(t, ctx, s, "router")
		b.restart(t)
	}
	waitFor(t, 30*time.Second, "the route at BIRD after its restarts", func() error {
		if b.route(web.String()) == "" {
			return fmt.Errorf("no route")
		}
		return nil
	})
	st := established(t, ctx, s, "router")
	if st.Advertised != 1 {
		t.Errorf("speaker's view after the router's restarts: %+v; want 1 prefix advertised", st)
	}
}

// TTL security (GTSM): BIRD with "ttl security on" takes only packets
// that arrive with TTL 255; a peer with ttlSecurityHops 1 sends them so,
// and the session comes up. And ebgpMultiHopTTL: the session's packets
// arrive at the router with the TTL set (counted by an nftables rule in
// the router's namespace).
func TestTTLControlWithBIRD(t *testing.T) {
	t.Run("ttl security", func(t *testing.T) {
		b := startBIRDWith(t, 64500, 64512, "ttl security on;", "")
		peer := &Peer{Name: "router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second),
			TTLSecurityHops: 1}
		s, ctx := runSpeaker(t)
		if err := s.Apply(ctx, onePeerPlan(peer, b.local, Attrs{}, netip.MustParsePrefix("198.51.100.45/32"))); err != nil {
			t.Fatal(err)
		}
		established(t, ctx, s, "router")
	})
	t.Run("multihop ttl", func(t *testing.T) {
		b := startBIRDWith(t, 64500, 64512, "multihop;", "")
		rules := `table inet berthttl {
	chain in {
		type filter hook input priority 0;
		tcp dport 179 ip ttl 7 counter
	}
}`
		cmd := b.ns.Command(context.Background(), "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v: %s", err, out)
		}
		peer := &Peer{Name: "router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second),
			EBGPMultihop: true, MultihopTTL: 7}
		s, ctx := runSpeaker(t)
		if err := s.Apply(ctx, onePeerPlan(peer, b.local, Attrs{}, netip.MustParsePrefix("198.51.100.46/32"))); err != nil {
			t.Fatal(err)
		}
		established(t, ctx, s, "router")
		out, err := b.ns.Command(context.Background(), "nft", "list", "table", "inet", "berthttl").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(string(out))
		if m == nil || m[1] == "0" {
			t.Errorf("no packet of the session arrived with TTL 7:\n%s", out)
		}
	})
}
