package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// stoppableSpeaker runs a speaker whose Serve the test ends when it
// chooses, as the agent's SIGTERM ends it; stop waits for Serve to return.
func stoppableSpeaker(t *testing.T) (s *Speaker, ctx context.Context, stop func()) {
	t.Helper()
	s = NewSpeaker(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return s, ctx, stop
}

// ribWatch polls BIRD's table for one prefix until stopped, and counts
// the polls that found no route.
type ribWatch struct {
	polls, missing int
	firstMissing   time.Time
	stop           chan struct{}
	done           chan struct{}
}

func watchRIB(b *bird, pf string) *ribWatch {
	w := &ribWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			w.polls++
			if b.route(pf) == "" {
				if w.missing == 0 {
					w.firstMissing = time.Now()
				}
				w.missing++
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

func (w *ribWatch) end() {
	close(w.stop)
	<-w.done
}

// A graceful stop (SIGTERM) with graceful restart on: the speaker sends
// no withdrawal and closes the session without a NOTIFICATION; BIRD, a
// graceful-restart helper, keeps the route the whole time the agent is
// away; the restarted speaker opens with the Restart State bit and the
// Forwarding State bit for IPv4, and BIRD ends its graceful restart with
// the route refreshed. Without graceful restart the same stop withdraws
// the route before the session closes.
func TestSpeakerGracefulStopWithBIRD(t *testing.T) {
	t.Run("graceful restart", func(t *testing.T) {
		b := startBIRDWith(t, 64500, 64512, "graceful restart on;", "")
		peer := &Peer{Name: "router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second),
			GracefulRestart: true, RestartTime: 60 * time.Second}
		web := netip.MustParsePrefix("198.51.100.41/32")
		plan := onePeerPlan(peer, b.local, Attrs{}, web)
		first, ctx, stop := stoppableSpeaker(t)
		if err := first.Apply(ctx, plan); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the route at BIRD", func() error {
			if r := b.route(web.String()); !strings.Contains(r, "via "+b.local.String()) {
				return fmt.Errorf("no route via %s: %q", b.local, r)
			}
			return nil
		})
		w := watchRIB(b, web.String())
		stop() // as on SIGTERM
		waitFor(t, 30*time.Second, "BIRD to see the session go", func() error {
			if out, up := b.established(); up {
				return fmt.Errorf("still established: %s", out)
			}
			return nil
		})
		second, ctx2, _ := stoppableSpeaker(t)
		if err := second.Apply(ctx2, plan); err != nil {
			t.Fatal(err)
		}
		var caps string
		waitFor(t, 60*time.Second, "the session back and BIRD's graceful restart over", func() error {
			out, err := b.birdc("show", "protocols", "all", "berth")
			if err != nil {
				return err
			}
			caps = out
			if !strings.Contains(out, "Established") {
				return fmt.Errorf("not established: %s", out)
			}
			// The restarted speaker sent the route again (after BIRD's
			// End-of-RIB): the restart is over.
			if st, err := stateOf(ctx2, second, "router"); err != nil || st.Advertised != 1 {
				return fmt.Errorf("the restarted speaker has not sent the route yet: %+v %v", st, err)
			}
			return nil
		})
		w.end()
		if w.missing > 0 {
			t.Errorf("BIRD had no route to %s in %d of %d polls (first at %s) while the speaker stopped and started again; want it in every one",
				web, w.missing, w.polls, w.firstMissing.Format(time.StampMilli))
		}
		t.Logf("BIRD's table polled %d times across the restart", w.polls)
		for _, want := range []string{"Restart recovery", "AF preserved: ipv4"} {
			if !strings.Contains(caps, want) {
				t.Errorf("BIRD does not show %q in the restarted speaker's capabilities:\n%s", want, caps)
			}
		}
	})
	t.Run("no graceful restart", func(t *testing.T) {
		b := startBIRDWith(t, 64500, 64512, "graceful restart on;", "")
		peer := &Peer{Name: "router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
		web := netip.MustParsePrefix("198.51.100.42/32")
		s, ctx, stop := stoppableSpeaker(t)
		if err := s.Apply(ctx, onePeerPlan(peer, b.local, Attrs{}, web)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the route at BIRD", func() error {
			if b.route(web.String()) == "" {
				return fmt.Errorf("no route")
			}
			return nil
		})
		stop()
		// Gone when Serve returns: BIRD was sent the withdrawal before
		// the session closed.
		if r := b.route(web.String()); r != "" {
			t.Errorf("BIRD still has %s after the speaker stopped without graceful restart:\n%s", web, r)
		}
	})
	t.Run("one peer with, one without", func(t *testing.T) {
		grb := startBIRDWith(t, 64500, 64512, "graceful restart on;", "")
		// The next hop is the speaker's end of grb's link, not on
		// plain's: plain resolves it over a device route.
		plain := startBIRDWith(t, 64501, 64512, "graceful restart on; multihop;", `protocol static { ipv4; route 10.0.0.0/8 via "eth0"; }`)
		peers := []*Peer{
			{Name: "gr", Address: grb.router, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second),
				GracefulRestart: true, RestartTime: 60 * time.Second},
			{Name: "plain", Address: plain.router, Port: 179, PeerASN: 64501, LocalASN: 64512, HoldTime: ptr(9 * time.Second)},
		}
		web := netip.MustParsePrefix("198.51.100.43/32")
		plan := Plan{Peers: peers, Exports: map[string][]Export{"gr": {{Prefix: web}}, "plain": {{Prefix: web}}}, NextHop4: grb.local}
		s, ctx, stop := stoppableSpeaker(t)
		if err := s.Apply(ctx, plan); err != nil {
			t.Fatal(err)
		}
		for _, b := range []*bird{grb, plain} {
			waitFor(t, 30*time.Second, "the route at BIRD "+b.router.String(), func() error {
				if b.route(web.String()) == "" {
					return fmt.Errorf("no route")
				}
				return nil
			})
		}
		stop()
		if r := plain.route(web.String()); r != "" {
			t.Errorf("the peer without graceful restart still has %s after the stop:\n%s", web, r)
		}
		if r := grb.route(web.String()); r == "" {
			t.Errorf("the peer with graceful restart lost %s at the stop; want it kept", web)
		}
	})
}
