package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gobgpd is Debian's GoBGP daemon in a namespace of its own (see
// newPeerNet), configured by a TOML file; its gRPC API listens on the
// namespace's loopback only, so the gobgp CLI runs inside the namespace
// too.
type gobgpd struct {
	*peerNet
}

// startGoBGPd runs gobgpd as AS asn with one neighbour, the speaker, of AS
// peerASN.
func startGoBGPd(t *testing.T, asn, peerASN uint32) *gobgpd {
	t.Helper()
	return startGoBGPdOn(t, newPeerNet(t, 202, "bgpg"), asn, peerASN)
}

// startGoBGPdOn is startGoBGPd on a link of the caller's (an IPv6 one:
// the session is IPv6 unicast, GoBGP's default for an IPv6 neighbour).
func startGoBGPdOn(t *testing.T, pn *peerNet, asn, peerASN uint32) *gobgpd {
	t.Helper()
	g := &gobgpd{peerNet: pn}
	rid := g.remote
	if rid.Is6() {
		rid = netip.AddrFrom4([4]byte{192, 0, 2, rid.As16()[15]})
	}
	conf := fmt.Sprintf(`[global.config]
  as = %d
  router-id = "%s"
  port = 179
  local-address-list = ["%s"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "%s"
    peer-as = %d
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
`, asn, rid, g.remote, g.local, peerASN)
	path := filepath.Join(g.dir, "gobgpd.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	g.start(t, "gobgpd", "-f", path, "-p", "--api-hosts", "127.0.0.1:50051", "--pprof-disable")
	waitFor(t, 10*time.Second, "gobgpd up", func() error {
		_, err := g.gobgp("neighbor", "-j")
		return err
	})
	return g
}

// gobgp runs the CLI inside the namespace, against the daemon's API.
func (g *gobgpd) gobgp(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := g.ns.Command(ctx, "gobgp", append([]string{"-u", "127.0.0.1", "-p", "50051"}, args...)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("gobgp %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// route is gobgpd's best path for pf, from `gobgp global rib -j` (nil
// when it has none).
func (g *gobgpd) route(pf netip.Prefix) (*peerRoute, error) {
	out, err := g.gobgp("global", "rib", "-a", "ipv4", "-j")
	if err != nil {
		return nil, err
	}
	// Path attributes by type code: 2 AS path, 3 next hop, 5 local
	// preference, 8 communities, 32 large communities.
	var rib map[string][]struct {
		Best  bool
		Attrs []struct {
			Type    int
			Value   json.RawMessage
			NextHop string `json:"nexthop"`
			ASPaths []struct {
				ASNs []uint32 `json:"asns"`
			} `json:"as_paths"`
			Communities []uint32
		}
	}
	if err := json.Unmarshal(out, &rib); err != nil {
		return nil, fmt.Errorf("gobgp global rib: %w: %s", err, out)
	}
	for _, p := range rib[pf.String()] {
		if !p.Best {
			continue
		}
		r := &peerRoute{LocalPref: "-"}
		for _, a := range p.Attrs {
			switch a.Type {
			case 2:
				var asns []string
				for _, seg := range a.ASPaths {
					for _, asn := range seg.ASNs {
						asns = append(asns, fmt.Sprint(asn))
					}
				}
				r.ASPath = strings.Join(asns, " ")
			case 3:
				r.NextHop = a.NextHop
			case 5:
				r.LocalPref = string(a.Value)
			case 8:
				var cs []string
				for _, c := range a.Communities {
					cs = append(cs, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
				}
				r.Communities = strings.Join(cs, " ")
			case 32:
				var large []struct{ ASN, LocalData1, LocalData2 uint32 }
				if err := json.Unmarshal(a.Value, &large); err != nil {
					return nil, fmt.Errorf("large communities %s: %w", a.Value, err)
				}
				var cs []string
				for _, c := range large {
					cs = append(cs, fmt.Sprintf("%d:%d:%d", c.ASN, c.LocalData1, c.LocalData2))
				}
				r.Large = strings.Join(cs, " ")
			}
		}
		return r, nil
	}
	return nil, nil
}

// gobgpdNeighbor is gobgpd's view of its session with the speaker.
type gobgpdNeighbor struct {
	Established bool
	// OpensReceived counts the OPENs the speaker sent: the same count
	// before and after means no new session between.
	OpensReceived         uint64
	NotificationsSent     uint64
	NotificationsReceived uint64
	// Up is when the session came up, in seconds since 1970.
	Up int64
}

func (g *gobgpd) neighbor() (gobgpdNeighbor, error) {
	out, err := g.gobgp("neighbor", g.local.String(), "-j")
	if err != nil {
		return gobgpdNeighbor{}, err
	}
	type counts struct{ Open, Notification uint64 }
	var v struct {
		State struct {
			// 6: ESTABLISHED in GoBGP's API.
			SessionState int `json:"session_state"`
			Messages     struct{ Sent, Received counts }
		}
		Timers struct {
			State struct {
				Uptime struct{ Seconds int64 }
			}
		}
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return gobgpdNeighbor{}, fmt.Errorf("gobgp neighbor: %w: %s", err, out)
	}
	m := v.State.Messages
	return gobgpdNeighbor{Established: v.State.SessionState == 6, OpensReceived: m.Received.Open,
		NotificationsSent: m.Sent.Notification, NotificationsReceived: m.Received.Notification,
		Up: v.Timers.State.Uptime.Seconds}, nil
}

// notified waits until gobgpd has sent (sent) or received n NOTIFICATIONs
// more than before.
func (g *gobgpd) notified(t *testing.T, before gobgpdNeighbor, sent bool, n uint64) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d more NOTIFICATIONs at gobgpd", n), func() error {
		now, err := g.neighbor()
		if err != nil {
			return err
		}
		if sent && now.NotificationsSent < before.NotificationsSent+n || !sent && now.NotificationsReceived < before.NotificationsReceived+n {
			return fmt.Errorf("before %+v, now %+v", before, now)
		}
		return nil
	})
}

// Against Debian's gobgpd, its RIB read with the gobgp CLI: the prefix
// arrives with the node as next hop and both kinds of community, and a
// withdrawal leaves it; a wrong peer ASN at the speaker, then a wrong
// local ASN, refuse the session, and the speaker's state says so; fixed,
// the session comes back.
func TestSpeakerWithGoBGPd(t *testing.T) {
	g := startGoBGPd(t, 64500, 64512)
	s, ctx := runSpeaker(t)
	web := netip.MustParsePrefix("198.51.100.20/32")
	api := netip.MustParsePrefix("198.51.100.21/32")
	attrs := Attrs{Communities: []uint32{65000<<16 | 100}, LargeCommunities: [][3]uint32{{64512, 1, 2}, {64512, 3, 4}}}
	peer := &Peer{Name: "gobgpd", Address: g.remote, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	if err := s.Apply(ctx, onePeerPlan(peer, g.local, attrs, web, api)); err != nil {
		t.Fatal(err)
	}
	want := &peerRoute{NextHop: g.local.String(), ASPath: "64512", Communities: "65000:100", Large: "64512:1:2 64512:3:4", LocalPref: "-"}
	wantRoute(t, "gobgpd", g.route, web, want)
	wantRoute(t, "gobgpd", g.route, api, want)
	if st := established(t, ctx, s, "gobgpd"); st.Advertised != 2 || st.LastError != "" {
		t.Errorf("the speaker's session %+v, want 2 advertised and no error", st)
	}

	// A withdrawal.
	if err := s.Apply(ctx, onePeerPlan(peer, g.local, attrs, api)); err != nil {
		t.Fatal(err)
	}
	wantRoute(t, "gobgpd", g.route, web, nil)
	wantRoute(t, "gobgpd", g.route, api, want)

	// A wrong peer ASN: the speaker refuses gobgpd's OPEN, and gobgpd
	// receives a NOTIFICATION after the Cease that ended the session
	// before; then a wrong local ASN: gobgpd refuses the speaker's OPEN
	// and sends one.
	for _, c := range []struct {
		name          string
		peer, local   uint32
		gobgpdRefuses bool
		notifications uint64
	}{{"wrong peer ASN", 64999, 64512, false, 2}, {"wrong local ASN", 64500, 64513, true, 1}} {
		before, err := g.neighbor()
		if err != nil {
			t.Fatal(err)
		}
		bad := *peer
		bad.PeerASN, bad.LocalASN = c.peer, c.local
		if err := s.Apply(ctx, onePeerPlan(&bad, g.local, attrs, api)); err != nil {
			t.Fatal(err)
		}
		g.notified(t, before, c.gobgpdRefuses, c.notifications)
		wantRoute(t, "gobgpd", g.route, api, nil)
		st, err := stateOf(ctx, s, "gobgpd")
		if err != nil {
			t.Fatal(err)
		}
		if st.State == "Established" {
			t.Errorf("%s: the speaker's session %+v", c.name, st)
		}
		t.Run("last error on a "+c.name, func(t *testing.T) {
			if c.gobgpdRefuses {
				// GoBGP v4.8 drops the code of a NOTIFICATION received in
				// OpenConfirm (it reports "invalid msg"): the speaker can say
				// the peer refused the session, not why.
				wantCause(t, st, "refused the session")
			} else {
				wantCause(t, st, "bad peer as")
			}
		})
	}

	// Fixed: the session and the route come back, and the error goes.
	if err := s.Apply(ctx, onePeerPlan(peer, g.local, attrs, api)); err != nil {
		t.Fatal(err)
	}
	if st := established(t, ctx, s, "gobgpd"); st.LastError != "" {
		t.Errorf("the speaker's session %+v: a last error once Established", st)
	}
	wantRoute(t, "gobgpd", g.route, api, want)
}
