package bgp

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// holdTime is the hold time BIRD negotiated with the speaker, from
// `show protocols all` ("Hold timer: 3.141/90": the denominator), and
// whether the session is Established.
func (b *bird) holdTime() (int, error) {
	out, err := b.birdc("show", "protocols", "all", "berth")
	if err != nil {
		return 0, err
	}
	if !strings.Contains(out, "Established") {
		return 0, fmt.Errorf("not Established: %s", out)
	}
	m := regexp.MustCompile(`Hold timer:\s+[0-9.]+/([0-9]+)`).FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no hold timer in %s", out)
	}
	return strconv.Atoi(m[1])
}

// The hold time the peer runs with is the one the BGPPeer gives, and 90 s
// when it gives none (BIRD offers 240 s, so the lower, the speaker's,
// wins); a zero hold time, which GoBGP would turn into 90 s, is refused
// with a reason before the running session is touched.
func TestHoldTimeAtBIRD(t *testing.T) {
	b := startBIRDWith(t, 64500, 64512, "hold time 240;", "")
	s, ctx := runSpeaker(t)
	base := Peer{Name: "router", Address: b.router, Port: 179, PeerASN: 64500, LocalASN: 64512}
	for _, c := range []struct {
		name     string
		hold, ka *time.Duration
		wantHold int
	}{
		{name: "unset", wantHold: 90},
		{name: "30s", hold: ptr(30 * time.Second), wantHold: 30},
		{name: "10s, keepalive 2s", hold: ptr(10 * time.Second), ka: ptr(2 * time.Second), wantHold: 10},
		{name: "unset again", wantHold: 90},
	} {
		p := base
		p.HoldTime, p.Keepalive = c.hold, c.ka
		if err := s.Apply(ctx, onePeerPlan(&p, b.local, Attrs{})); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		waitFor(t, 20*time.Second, c.name+": BIRD's negotiated hold time", func() error {
			got, err := b.holdTime()
			if err == nil && got != c.wantHold {
				err = fmt.Errorf("hold time %d, want %d", got, c.wantHold)
			}
			return err
		})
	}

	up := b.session(t)
	zero := base
	zero.HoldTime = ptr(time.Duration(0))
	err := s.Apply(ctx, onePeerPlan(&zero, b.local, Attrs{}))
	if err == nil || !strings.Contains(err.Error(), "holdTime 0s") || !strings.Contains(err.Error(), "GoBGP turns it into 90s") {
		t.Errorf("Apply with holdTime 0s: %v; want the refusal naming holdTime 0s and why", err)
	}
	b.sameSession(t, "a refused change", up)
}

// Peer.Check against hand-written cases: what the speaker refuses and why.
func TestPeerCheck(t *testing.T) {
	for _, c := range []struct {
		name     string
		hold, ka *time.Duration
		want     string // "" none; else a part of the error
	}{
		{name: "defaults"},
		{name: "3s", hold: ptr(3 * time.Second)},
		{name: "65535s", hold: ptr(65535 * time.Second)},
		{name: "hold 0s", hold: ptr(time.Duration(0)), want: "holdTime 0s"},
		{name: "hold 0s, keepalive 0s", hold: ptr(time.Duration(0)), ka: ptr(time.Duration(0)), want: "holdTime 0s"},
		{name: "hold 2s", hold: ptr(2 * time.Second), want: "from 3s to 65535s"},
		{name: "hold 65536s", hold: ptr(65536 * time.Second), want: "from 3s to 65535s"},
		{name: "hold 4.5s", hold: ptr(4500 * time.Millisecond), want: "whole seconds"},
		{name: "keepalive 0s", ka: ptr(time.Duration(0)), want: "keepaliveTime 0s"},
		{name: "keepalive = hold", hold: ptr(30 * time.Second), ka: ptr(30 * time.Second), want: "must be less than holdTime"},
		{name: "keepalive 1.5s", ka: ptr(1500 * time.Millisecond), want: "whole seconds"},
		{name: "keepalive 10s of default hold", ka: ptr(10 * time.Second)},
	} {
		p := Peer{HoldTime: c.hold, Keepalive: c.ka}
		err := p.Check()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	// The timers offered: written out, not derived.
	for _, c := range []struct {
		hold, ka         *time.Duration
		wantHold, wantKA time.Duration
	}{
		{nil, nil, 90 * time.Second, 30 * time.Second},
		{ptr(10 * time.Second), nil, 10 * time.Second, 3 * time.Second},
		{ptr(4 * time.Second), nil, 4 * time.Second, time.Second},
		{ptr(30 * time.Second), ptr(5 * time.Second), 30 * time.Second, 5 * time.Second},
		{nil, ptr(7 * time.Second), 90 * time.Second, 7 * time.Second},
	} {
		p := Peer{HoldTime: c.hold, Keepalive: c.ka}
		if h, k := p.Timers(); h != c.wantHold || k != c.wantKA {
			t.Errorf("Timers(%s, %s) = %s, %s; want %s, %s", durKey(c.hold), durKey(c.ka), h, k, c.wantHold, c.wantKA)
		}
	}
}
