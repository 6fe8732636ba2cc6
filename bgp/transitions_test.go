package bgp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The speaker converges from any configuration to any other without
// stopping for good (issue 23): FRR (any eBGP AS) and gobgpd (AS 64512
// only) as peers, "frr" first by name, whose local AS was the server's
// own before. Its local AS changes and changes back while gobgpd's
// session is never reset; the node goes through zero peers and back, and
// its router ID changes: every time both sessions come back, with their
// routes, and the speaker reports no stale error.
func TestSpeakerTransitions(t *testing.T) {
	f := startFRRAs(t, 64500, "external")
	g := startGoBGPd(t, 64501, 64512)
	s, ctx := runSpeaker(t)
	web := netip.MustParsePrefix("198.51.100.50/32")
	a := &Peer{Name: "frr", Address: f.remote, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	b := &Peer{Name: "gobgpd", Address: g.remote, Port: 179, PeerASN: 64501, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	plan := func(nextHop netip.Addr, peers ...*Peer) Plan {
		p := Plan{Peers: peers, NextHop4: nextHop, Exports: map[string][]Export{}}
		for _, peer := range peers {
			p.Exports[peer.Name] = []Export{{Prefix: web}}
		}
		return p
	}
	apply := func(p Plan) {
		t.Helper()
		if err := s.Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// bothUp waits for both sessions and both routes, FRR's with the AS
	// path asPath, and checks the speaker has no error for either.
	bothUp := func(when, asPath string, nextHop netip.Addr) {
		t.Helper()
		wantRoute(t, "FRR", f.route, web, &peerRoute{NextHop: nextHop.String(), ASPath: asPath, LocalPref: "-"})
		wantRoute(t, "gobgpd", g.route, web, &peerRoute{NextHop: nextHop.String(), ASPath: "64512", LocalPref: "-"})
		for _, name := range []string{"frr", "gobgpd"} {
			if st := established(t, ctx, s, name); st.LastError != "" {
				t.Errorf("%s: the speaker's session with %s is up with a last error %q", when, name, st.LastError)
			}
		}
	}
	apply(plan(f.local, a, b))
	bothUp("start", "64512", f.local)
	up, err := g.neighbor()
	if err != nil {
		t.Fatal(err)
	}
	untouched := func(when string) {
		t.Helper()
		n, err := g.neighbor()
		if err != nil {
			t.Fatal(err)
		}
		if !n.Established || n.OpensReceived != up.OpensReceived || n.Up != up.Up {
			t.Errorf("%s: gobgpd's session was reset: from %+v to %+v", when, up, n)
		}
	}

	// FRR's local AS, the first peer's, changes: only FRR's session is
	// made again, and FRR sees the new AS.
	a2 := *a
	a2.LocalASN = 64513
	apply(plan(f.local, &a2, b))
	wantRoute(t, "FRR", f.route, web, &peerRoute{NextHop: f.local.String(), ASPath: "64513", LocalPref: "-"})
	established(t, ctx, s, "frr")
	untouched("frr's localASN 64512 -> 64513")
	// And back.
	apply(plan(f.local, a, b))
	wantRoute(t, "FRR", f.route, web, &peerRoute{NextHop: f.local.String(), ASPath: "64512", LocalPref: "-"})
	established(t, ctx, s, "frr")
	untouched("frr's localASN back to 64512")

	// A peer that sorts first, with another local AS (BIRD, AS 64999),
	// joins and leaves.
	r := startBIRD(t, 64999, 65001, "")
	first := &Peer{Name: "aa-first", Address: r.router, Port: 179, PeerASN: 64999, LocalASN: 65001, HoldTime: ptr(9 * time.Second)}
	apply(plan(f.local, first, a, b))
	established(t, ctx, s, "aa-first")
	established(t, ctx, s, "frr")
	untouched("a peer aa-first with local AS 65001 added")
	apply(plan(f.local, a, b))
	untouched("aa-first removed")

	// Zero peers: both sessions end and the routes go.
	apply(Plan{Exports: map[string][]Export{}, NextHop4: f.local})
	wantRoute(t, "FRR", f.route, web, nil)
	wantRoute(t, "gobgpd", g.route, web, nil)
	if st := s.States(ctx); len(st) != 0 {
		t.Errorf("with no peers the speaker reports sessions %+v", st)
	}
	// Back: both sessions come back.
	apply(plan(f.local, a, b))
	bothUp("after zero peers", "64512", f.local)

	// The only peer removed and made again, its local AS edited and
	// back: gobgpd alone, as a node with one BGPPeer has.
	apply(plan(f.local))
	wantRoute(t, "gobgpd", g.route, web, nil)
	apply(plan(f.local, b))
	wantRoute(t, "gobgpd", g.route, web, &peerRoute{NextHop: f.local.String(), ASPath: "64512", LocalPref: "-"})
	b2 := *b
	b2.LocalASN = 64513 // gobgpd refuses it
	apply(plan(f.local, &b2))
	wantRoute(t, "gobgpd", g.route, web, nil)
	waitFor(t, 20*time.Second, "the speaker to say why gobgpd refused", func() error {
		st, err := stateOf(ctx, s, "gobgpd")
		if err == nil && (st.State == "Established" || st.LastError == "") {
			err = fmt.Errorf("%+v", st)
		}
		return err
	})
	apply(plan(f.local, b))
	wantRoute(t, "gobgpd", g.route, web, &peerRoute{NextHop: f.local.String(), ASPath: "64512", LocalPref: "-"})
	if st := established(t, ctx, s, "gobgpd"); st.LastError != "" {
		t.Errorf("gobgpd's session back with the last error %q of the refused one", st.LastError)
	}

	// A new router ID (the node's IPv4 address changed): a new server,
	// and both sessions come back.
	apply(plan(f.local, a, b))
	bothUp("both again", "64512", f.local)
	if up, err = g.neighbor(); err != nil {
		t.Fatal(err)
	}
	apply(plan(g.local, a, b))
	waitFor(t, 30*time.Second, "both sessions with the new router ID", func() error {
		n, err := g.neighbor()
		if err == nil && (!n.Established || n.OpensReceived == up.OpensReceived) {
			err = fmt.Errorf("gobgpd %+v", n)
		}
		return err
	})
	wantRoute(t, "gobgpd", g.route, web, &peerRoute{NextHop: g.local.String(), ASPath: "64512", LocalPref: "-"})
	for _, name := range []string{"frr", "gobgpd"} {
		if st := established(t, ctx, s, name); st.LastError != "" {
			t.Errorf("new router ID: the speaker's session with %s is up with a last error %q", name, st.LastError)
		}
	}
}

// A peer the server refuses (here a second peer of the same address:
// GoBGP keeps one neighbour per address) is left out with the reason as
// its state; the others are configured and sent their routes, and what
// the refused one would have been sent goes nowhere.
func TestSpeakerRefusedPeer(t *testing.T) {
	b := startBIRD(t, 64500, 64512, "")
	s, ctx := runSpeaker(t)
	web := netip.MustParsePrefix("198.51.100.60/32")
	good := &Peer{Name: "a-router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	copied := &Peer{Name: "b-copy", Address: b.router, Port: 179, PeerASN: 64501, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	plan := Plan{Peers: []*Peer{good, copied}, NextHop4: b.local, Exports: map[string][]Export{
		"a-router": {{Prefix: web}},
		"b-copy":   {{Prefix: web, Attrs: Attrs{Communities: []uint32{65000<<16 | 7}}}},
	}}
	if err := s.Apply(ctx, plan); err != nil {
		t.Fatalf("one refused peer failed the whole apply: %v", err)
	}
	established(t, ctx, s, "a-router")
	waitFor(t, 20*time.Second, "the route at BIRD, without b-copy's community", func() error {
		r := b.route(web.String())
		if r == "" || strings.Contains(r, "(65000,7)") {
			return fmt.Errorf("%q", r)
		}
		return nil
	})
	st, err := stateOf(ctx, s, "b-copy")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "Idle" || !strings.Contains(st.LastError, "the speaker refused the peer's settings") || !strings.Contains(st.LastError, "existing peer") {
		t.Errorf("the refused peer's state %+v, want Idle with GoBGP's reason", st)
	}
	// Without it, its state goes.
	plan.Peers = plan.Peers[:1]
	if err := s.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if _, err := stateOf(ctx, s, "b-copy"); err == nil {
		t.Errorf("b-copy is still reported after it left the plan")
	}
}
