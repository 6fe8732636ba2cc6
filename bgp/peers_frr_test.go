package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/test/netnstest"
)

// frr is FRR's bgpd alone in a namespace of its own (see newPeerNet):
// no zebra (-Z) and no kernel routes (-n), so it needs nothing of the
// host's FRR; its config, pid file and vty socket live in the test's
// temporary directory, and vtysh reads its RIB through that socket.
type frr struct {
	*peerNet
}

const bgpdPath = "/usr/lib/frr/bgpd"

// startFRR runs bgpd as AS asn with one neighbour, the speaker, of
// AS peerASN; neighbor adds lines under the neighbour ("password x").
func startFRR(t *testing.T, asn, peerASN uint32, neighbor ...string) *frr {
	t.Helper()
	return startFRRAs(t, asn, fmt.Sprint(peerASN), neighbor...)
}

// startFRRAs is startFRR with the neighbour's remote-as as FRR writes it:
// a number, or "external" for any AS but its own.
func startFRRAs(t *testing.T, asn uint32, remoteAS string, neighbor ...string) *frr {
	t.Helper()
	f := &frr{peerNet: newPeerNet(t, 201, "bgpf")}
	var extra strings.Builder
	for _, l := range neighbor {
		fmt.Fprintf(&extra, " neighbor %s %s\n", f.local, l)
	}
	conf := fmt.Sprintf(`frr defaults traditional
log stdout informational
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 neighbor %s remote-as %s
 neighbor %s timers 3 9
 neighbor %s timers connect 1
%s`, asn, f.remote, f.local, remoteAS, f.local, f.local, extra.String())
	path := filepath.Join(f.dir, "bgpd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// -S: no change of user (root, no frr user needed); -P 0: no vty on
	// TCP.
	f.start(t, bgpdPath, "-S", "-Z", "-n", "-f", path, "--vty_socket", f.dir,
		"-i", filepath.Join(f.dir, "bgpd.pid"), "-P", "0", "--log", "stdout")
	waitFor(t, 10*time.Second, "bgpd up", func() error {
		_, err := f.vtysh("show bgp summary json")
		return err
	})
	return f
}

func (f *frr) vtysh(cmd string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "vtysh", "--vty_socket", f.dir, "-d", "bgpd", "-c", cmd).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("vtysh -c %q: %v: %s", cmd, err, out)
	}
	return out, nil
}

// route is FRR's best path for pf, from `show bgp ipv4 unicast PF json`
// (nil when it has none).
func (f *frr) route(pf netip.Prefix) (*peerRoute, error) {
	out, err := f.vtysh("show bgp ipv4 unicast " + pf.String() + " json")
	if err != nil {
		return nil, err
	}
	var v struct {
		Paths []struct {
			Valid    bool
			Bestpath struct{ Overall bool }
			// FRR writes "Local" for an empty AS path.
			ASPath struct{ String string } `json:"aspath"`
			// community and largeCommunity are left out when none.
			Community      struct{ String string }
			LargeCommunity struct{ String string } `json:"largeCommunity"`
			LocPrf         *uint32                 `json:"locPrf"`
			Nexthops       []struct {
				IP   string
				Used bool
			}
		}
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return nil, fmt.Errorf("show bgp %s: %w: %s", pf, err, out)
	}
	for _, p := range v.Paths {
		if !p.Valid || !p.Bestpath.Overall {
			continue
		}
		r := &peerRoute{ASPath: p.ASPath.String, Communities: p.Community.String, Large: p.LargeCommunity.String, LocalPref: "-"}
		if p.LocPrf != nil {
			r.LocalPref = fmt.Sprint(*p.LocPrf)
		}
		var nhs []string
		for _, nh := range p.Nexthops {
			if nh.Used {
				nhs = append(nhs, nh.IP)
			}
		}
		r.NextHop = strings.Join(nhs, ",")
		return r, nil
	}
	return nil, nil
}

// frrNeighbor is FRR's view of its session with the speaker.
type frrNeighbor struct {
	State string `json:"bgpState"`
	// Connections counts the sessions that came up: the same count
	// before and after means the session was never reset between.
	Connections int    `json:"connectionsEstablished"`
	LastReset   string `json:"lastResetDueTo"`
}

func (f *frr) neighbor() (frrNeighbor, error) {
	out, err := f.vtysh("show bgp neighbors " + f.local.String() + " json")
	if err != nil {
		return frrNeighbor{}, err
	}
	var v map[string]frrNeighbor
	if err := json.Unmarshal(out, &v); err != nil {
		return frrNeighbor{}, fmt.Errorf("show bgp neighbors: %w: %s", err, out)
	}
	n, ok := v[f.local.String()]
	if !ok {
		return frrNeighbor{}, fmt.Errorf("FRR has no neighbour %s: %s", f.local, out)
	}
	return n, nil
}

// Against FRR's bgpd, the peer's own RIB read with vtysh: over eBGP the
// prefix arrives with the node as next hop and both kinds of community,
// and withdrawals leave it; over iBGP the local preference arrives too;
// with TCP MD5 the session comes up on the right key and stays down,
// visibly, on a wrong one.
func TestSpeakerWithFRR(t *testing.T) {
	netnstest.RequireRoot(t)
	web := netip.MustParsePrefix("198.51.100.10/32")
	api := netip.MustParsePrefix("198.51.100.11/32")
	attrs := Attrs{Communities: []uint32{65000<<16 | 100, 65000<<16 | 101}, LargeCommunities: [][3]uint32{{64512, 1, 2}}}

	t.Run("eBGP", func(t *testing.T) {
		f := startFRR(t, 64500, 64512)
		s, ctx := runSpeaker(t)
		peer := &Peer{Name: "frr", Address: f.remote, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
		if err := s.Apply(ctx, onePeerPlan(peer, f.local, attrs, web, api)); err != nil {
			t.Fatal(err)
		}
		want := &peerRoute{NextHop: f.local.String(), ASPath: "64512", Communities: "65000:100 65000:101", Large: "64512:1:2", LocalPref: "-"}
		wantRoute(t, "FRR", f.route, web, want)
		wantRoute(t, "FRR", f.route, api, want)
		st := established(t, ctx, s, "frr")
		if st.Advertised != 2 || st.LastError != "" {
			t.Errorf("speaker's state %+v, want 2 advertised and no error", st)
		}
		before, err := f.neighbor()
		if err != nil {
			t.Fatal(err)
		}

		// Withdraw one, then the other: the session stays.
		if err := s.Apply(ctx, onePeerPlan(peer, f.local, attrs, api)); err != nil {
			t.Fatal(err)
		}
		wantRoute(t, "FRR", f.route, web, nil)
		wantRoute(t, "FRR", f.route, api, want)
		if err := s.Apply(ctx, onePeerPlan(peer, f.local, attrs)); err != nil {
			t.Fatal(err)
		}
		wantRoute(t, "FRR", f.route, api, nil)
		after, err := f.neighbor()
		if err != nil {
			t.Fatal(err)
		}
		if after.State != "Established" || after.Connections != before.Connections {
			t.Errorf("FRR's session changed on withdrawals: before %+v, after %+v", before, after)
		}
	})

	t.Run("iBGP", func(t *testing.T) {
		f := startFRR(t, 64500, 64500)
		s, ctx := runSpeaker(t)
		peer := &Peer{Name: "frr", Address: f.remote, Port: 179, PeerASN: 64500, LocalASN: 64500, HoldTime: ptr(9 * time.Second)}
		lp := uint32(250)
		ibgp := attrs
		ibgp.LocalPref = &lp
		if err := s.Apply(ctx, onePeerPlan(peer, f.local, ibgp, web)); err != nil {
			t.Fatal(err)
		}
		wantRoute(t, "FRR", f.route, web, &peerRoute{NextHop: f.local.String(), ASPath: "Local", Communities: "65000:100 65000:101", Large: "64512:1:2", LocalPref: "250"})
		if err := s.Apply(ctx, onePeerPlan(peer, f.local, ibgp)); err != nil {
			t.Fatal(err)
		}
		wantRoute(t, "FRR", f.route, web, nil)
	})

	t.Run("TCP MD5", func(t *testing.T) {
		const key = "berth-md5-key"
		// Passive: FRR's own connections to the speaker (which does not
		// listen) would be refused with unsigned resets, which its
		// kernel counts as TCPMD5NotFound too.
		f := startFRR(t, 64500, 64512, "password "+key, "passive")
		s, ctx := runSpeaker(t)
		peer := &Peer{Name: "frr", Address: f.remote, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second), Password: key}
		want := &peerRoute{NextHop: f.local.String(), ASPath: "64512", Communities: "65000:100 65000:101", Large: "64512:1:2", LocalPref: "-"}
		if err := s.Apply(ctx, onePeerPlan(peer, f.local, attrs, web)); err != nil {
			t.Fatal(err)
		}
		wantRoute(t, "FRR", f.route, web, want)
		established(t, ctx, s, "frr")

		// A wrong key, then none: FRR's kernel drops every segment (a
		// wrong signature; a missing one), so there is no session, the
		// route goes, and the speaker says the session is down.
		for _, c := range []struct{ password, counter string }{{"not-the-key", "TCPMD5Failure"}, {"", "TCPMD5NotFound"}} {
			before, err := f.tcpExt(c.counter)
			if err != nil {
				t.Fatal(err)
			}
			bad := *peer
			bad.Password = c.password
			if err := s.Apply(ctx, onePeerPlan(&bad, f.local, attrs, web)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "FRR's kernel dropping the speaker's segments ("+c.counter+")", func() error {
				n, err := f.tcpExt(c.counter)
				if err == nil && n <= before {
					err = fmt.Errorf("%s %d", c.counter, n)
				}
				return err
			})
			wantRoute(t, "FRR", f.route, web, nil)
			if n, err := f.neighbor(); err != nil || n.State == "Established" {
				t.Errorf("password %q: FRR's session %+v (%v)", c.password, n, err)
			}
			st, err := stateOf(ctx, s, "frr")
			if err != nil {
				t.Fatal(err)
			}
			if st.State == "Established" {
				t.Errorf("password %q: the speaker's session is %+v", c.password, st)
			}
			// GoBGP sees only connections that never complete: not one of
			// vagueErrors, and for the wrong key, the password named.
			t.Run(fmt.Sprintf("last error with password %q", c.password), func(t *testing.T) {
				if c.password != "" {
					wantCause(t, st, "TCP MD5 password changed", "Established with the previous password")
				} else {
					wantCause(t, st, "TCP MD5")
				}
			})
		}

		// The right key again: the session comes back.
		if err := s.Apply(ctx, onePeerPlan(peer, f.local, attrs, web)); err != nil {
			t.Fatal(err)
		}
		if st := established(t, ctx, s, "frr"); st.LastError != "" {
			t.Errorf("the speaker's session %+v: a last error once Established", st)
		}
		wantRoute(t, "FRR", f.route, web, want)
	})
}
