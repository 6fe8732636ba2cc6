package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bird is a BIRD 2 router in a network namespace of its own, joined to
// the test's (host) namespace by a veth pair: the speaker, in the test
// process, peers with it over that link.
type bird struct {
	*peerNet
	router netip.Addr // the daemon's address
}

func startBIRD(t *testing.T, asn, peerASN uint32, extra string) *bird {
	t.Helper()
	return startBIRDWith(t, asn, peerASN, "", extra)
}

// startBIRDWith is startBIRD with more options in the berth protocol.
func startBIRDWith(t *testing.T, asn, peerASN uint32, options, extra string) *bird {
	t.Helper()
	// 10.200/16 and links bgpt*: the FRR and gobgpd tests use others.
	pn := newPeerNet(t, 200, "bgpt")
	b := &bird{peerNet: pn, router: pn.remote}
	conf := fmt.Sprintf(`router id %s;
protocol device {}
protocol bgp berth {
	local %s as %d;
	neighbor %s as %d;
	hold time 9;
	%s
	ipv4 { import all; export none; };
}
%s
`, b.router, b.router, asn, b.local, peerASN, options, extra)
	if err := os.WriteFile(filepath.Join(b.dir, "bird.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	pn.start(t, "bird", "-f", "-c", filepath.Join(b.dir, "bird.conf"), "-s", b.sock())
	waitFor(t, 10*time.Second, "BIRD up", func() error {
		_, err := b.birdc("show", "status")
		return err
	})
	return b
}

func (b *bird) sock() string { return filepath.Join(b.dir, "bird.ctl") }

func (b *bird) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock()}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("birdc %v: %v: %s", args, err, out)
	}
	return string(out), nil
}

// route is BIRD's view of one prefix ("" when it has none).
func (b *bird) route(pf string) string {
	out, err := b.birdc("show", "route", pf, "all")
	if err != nil || strings.Contains(out, "Network not found") {
		return ""
	}
	return out
}

func (b *bird) established() (string, bool) {
	out, _ := b.birdc("show", "protocols", "berth")
	return out, strings.Contains(out, "Established")
}

// birdSession is BIRD's session with the speaker: whether it is
// Established, and how many connections BIRD's kernel has accepted. The
// speaker opens every session (it does not listen), so one count before
// and after means one session throughout. BIRD's own "Since" is no
// witness: it shows one session's start a millisecond apart from one
// listing to the next.
type birdSession struct {
	Up       bool
	Accepted int
	Show     string
}

func (b *bird) session(t *testing.T) birdSession {
	t.Helper()
	show, up := b.established()
	n, err := b.tcp("PassiveOpens")
	if err != nil {
		t.Fatal(err)
	}
	return birdSession{Up: up, Accepted: n, Show: show}
}

// sameSession reports (as an error of t) a session that is down or was
// made again since before.
func (b *bird) sameSession(t *testing.T, when string, before birdSession) {
	t.Helper()
	if now := b.session(t); !now.Up || now.Accepted != before.Accepted {
		t.Errorf("%s: the session changed (%d connections accepted before, %d after):\nbefore %s\nafter %s", when, before.Accepted, now.Accepted, before.Show, now.Show)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Against BIRD: the session comes up, the router's own table holds the
// prefix with the node as next hop and the communities; a change of
// communities reaches it without the session going down; a withdrawn
// prefix leaves it; on shutdown everything is withdrawn first.
func TestSpeakerWithBIRD(t *testing.T) {
	b := startBIRD(t, 64500, 64512, "")
	s := NewSpeaker(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	peer := &Peer{Name: "router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	web := netip.MustParsePrefix("198.51.100.10/32")
	plan := func(communities []uint32, large [][3]uint32, prefixes ...netip.Prefix) Plan {
		p := Plan{Peers: []*Peer{peer}, Exports: map[string][]Export{}, NextHop4: b.local}
		for _, pf := range prefixes {
			p.Exports["router"] = append(p.Exports["router"], Export{Prefix: pf, Attrs: Attrs{Communities: communities, LargeCommunities: large}})
		}
		return p
	}
	if err := s.Apply(ctx, plan([]uint32{65000<<16 | 100}, [][3]uint32{{64512, 1, 2}}, web)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the route at BIRD", func() error {
		r := b.route(web.String())
		for _, want := range []string{"via " + b.local.String(), "(65000,100)", "(64512, 1, 2)", "BGP.as_path: 64512"} {
			if !strings.Contains(r, want) {
				return fmt.Errorf("no %q in %q", want, r)
			}
		}
		return nil
	})
	before := b.session(t)

	// New communities, one more prefix: the session stays.
	api := netip.MustParsePrefix("198.51.100.11/32")
	if err := s.Apply(ctx, plan([]uint32{65000<<16 | 200}, nil, web, api)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "new communities at BIRD", func() error {
		r := b.route(web.String())
		if !strings.Contains(r, "(65000,200)") || strings.Contains(r, "(65000,100)") || strings.Contains(r, "(64512, 1, 2)") {
			return fmt.Errorf("%q", r)
		}
		if b.route(api.String()) == "" {
			return fmt.Errorf("no %s", api)
		}
		return nil
	})
	b.sameSession(t, "a change of communities", before)

	// Withdraw one.
	if err := s.Apply(ctx, plan([]uint32{65000<<16 | 200}, nil, api)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "withdrawal at BIRD", func() error {
		if r := b.route(web.String()); r != "" {
			return fmt.Errorf("still %q", r)
		}
		return nil
	})

	// Back again with the same attributes: the policy's sets grow in
	// place.
	if err := s.Apply(ctx, plan([]uint32{65000<<16 | 200}, nil, web, api)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the route back at BIRD", func() error {
		if r := b.route(web.String()); !strings.Contains(r, "(65000,200)") {
			return fmt.Errorf("%q", r)
		}
		return nil
	})
	b.sameSession(t, "a prefix back in the sets", before)
	if st := s.States(ctx); len(st) != 1 || st[0].State != "Established" || st[0].Advertised != 2 {
		t.Errorf("speaker's view of the session: %+v; want Established with 2 prefixes advertised", st)
	}

	// Shutdown withdraws the rest before closing.
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.Shutdown(sctx)
	scancel()
	waitFor(t, 30*time.Second, "everything withdrawn at BIRD", func() error {
		if r := b.route(api.String()); r != "" {
			return fmt.Errorf("still %q", r)
		}
		return nil
	})
}

// Graceful restart: when the speaker goes away without a NOTIFICATION (a
// crashed agent; its node's kernel still forwards), BIRD keeps the routes,
// stale, until the restarted speaker sends them again; nothing is
// withdrawn meanwhile.
func TestSpeakerGracefulRestartWithBIRD(t *testing.T) {
	b := startBIRDWith(t, 64500, 64512, "graceful restart on;", "")
	peer := &Peer{Name: "router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second),
		GracefulRestart: true, RestartTime: 60 * time.Second}
	web := netip.MustParsePrefix("198.51.100.40/32")
	plan := Plan{Peers: []*Peer{peer}, Exports: map[string][]Export{"router": {{Prefix: web}}}, NextHop4: b.local}
	first, ctx := runSpeaker(t)
	if err := first.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the route at BIRD", func() error {
		if b.route(web.String()) == "" {
			return fmt.Errorf("no route")
		}
		return nil
	})
	// The crash: the sessions close with no NOTIFICATION to a peer that
	// negotiated graceful restart.
	first.mu.Lock()
	first.stopServer(ctx, true)
	first.mu.Unlock()
	waitFor(t, 30*time.Second, "BIRD to see the session go", func() error {
		if _, up := b.established(); up {
			return fmt.Errorf("still established")
		}
		return nil
	})
	if r := b.route(web.String()); r == "" {
		t.Fatal("BIRD dropped the route when the speaker went away; want it kept, stale, for the restart time")
	}
	// The restarted speaker takes over; the route never left.
	second, ctx2 := runSpeaker(t)
	if err := second.Apply(ctx2, plan); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the session back", func() error {
		if _, up := b.established(); !up {
			return fmt.Errorf("not established")
		}
		if b.route(web.String()) == "" {
			return fmt.Errorf("the route is gone")
		}
		return nil
	})
}
