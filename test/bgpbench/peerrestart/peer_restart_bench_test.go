// Package peerrestart measures how fast a node's routes are back at a
// router whose BGP daemon restarted: Berth's speaker against BIRD in a
// network namespace, no lab.
package peerrestart

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthnet/berth/bgp"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// The speaker runs in the benchmark process, in a namespace of its own.
func TestMain(m *testing.M) { netnstest.MainIsolated(m) }

// restarts is how many times each case restarts the router's daemon.
const restarts = 10

// BenchmarkPeerRestart restarts BIRD (birdc down, then bird again) ten
// times per case and reports, from the shutdown command until BIRD has
// the node's route again:
//
//   - ms-peer-restart-routes-back-median/-worst: the default (idle hold
//     0s, connect retry 2s);
//   - ms-peer-restart-routes-back-idle5s-median/-worst: with idleHoldTime
//     5s, which is how GoBGP alone holds a lost peer (5 s Idle, then a
//     connect retry): the baseline;
//   - ms-bird-restart-median: of that, until the restarted BIRD answers
//     its control socket.
//
// Run it with -benchtime 1x.
func BenchmarkPeerRestart(b *testing.B) {
	netnstest.RequireRoot(b)
	for range b.N {
		for _, c := range []struct {
			suffix string
			idle   time.Duration
		}{{"", 0}, {"-idle5s", 5 * time.Second}} {
			back, birdUp := measure(b, c.idle)
			b.ReportMetric(ms(back[len(back)/2]), "ms-peer-restart-routes-back"+c.suffix+"-median")
			b.ReportMetric(ms(back[len(back)-1]), "ms-peer-restart-routes-back"+c.suffix+"-worst")
			if c.idle == 0 {
				b.ReportMetric(ms(birdUp[len(birdUp)/2]), "ms-bird-restart-median")
			}
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// measure runs one speaker against one BIRD and restarts BIRD
// `restarts` times; it returns the sorted times until the route was
// back and until BIRD answered again.
func measure(b *testing.B, idle time.Duration) (back, birdUp []time.Duration) {
	r := newRouter(b)
	s := bgp.NewSpeaker(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	hold := 9 * time.Second
	peer := &bgp.Peer{Name: "router", Address: r.remote, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: &hold, IdleHold: idle}
	pf := netip.MustParsePrefix("198.51.100.50/32")
	plan := bgp.Plan{Peers: []*bgp.Peer{peer}, Exports: map[string][]bgp.Export{"router": {{Prefix: pf}}}, NextHop4: r.local}
	if err := s.Apply(ctx, plan); err != nil {
		b.Fatal(err)
	}
	r.waitRoute(b, pf)
	for range restarts {
		start := time.Now()
		r.stop(b)
		r.start(b)
		birdUp = append(birdUp, time.Since(start))
		r.waitRoute(b, pf)
		back = append(back, time.Since(start))
	}
	slices.Sort(back)
	slices.Sort(birdUp)
	return back, birdUp
}

var seq atomic.Int32

// router is BIRD in a namespace, linked to the benchmark's by a veth.
type router struct {
	ns            *netns.Namespace
	dir           string
	local, remote netip.Addr
	cmd           *exec.Cmd
}

func newRouter(b *testing.B) *router {
	r := &router{ns: netnstest.New(b), dir: b.TempDir()}
	// A /30 and a link of its own per router of this process.
	n := (os.Getpid()%2000)*8 + int(seq.Add(1)-1)%8
	base := netip.AddrFrom4([4]byte{10, 202, byte(n >> 6), byte(n&63) << 2})
	r.local, r.remote = base.Next(), base.Next().Next()
	host, err := netns.Host()
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	link := fmt.Sprintf("bgpr%d", n)
	if err := netns.Veth(host, link, r.ns, "eth0"); err != nil {
		b.Fatal(err)
	}
	if err := host.AddAddress(link, r.local.String()+"/30"); err != nil {
		b.Fatal(err)
	}
	if err := r.ns.AddAddress("eth0", r.remote.String()+"/30"); err != nil {
		b.Fatal(err)
	}
	conf := fmt.Sprintf(`router id %s;
protocol device {}
protocol bgp berth {
	local %s as 64500;
	neighbor %s as 64512;
	hold time 9;
	ipv4 { import all; export none; };
}
`, r.remote, r.remote, r.local)
	if err := os.WriteFile(filepath.Join(r.dir, "bird.conf"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	r.start(b)
	b.Cleanup(func() {
		if r.cmd != nil {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
		}
	})
	return r
}

func (r *router) sock() string { return filepath.Join(r.dir, "bird.ctl") }

func (r *router) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", r.sock()}, args...)...).CombinedOutput()
	return string(out), err
}

// start runs BIRD and waits until it answers.
func (r *router) start(b *testing.B) {
	r.cmd = r.ns.Command(context.Background(), "bird", "-f", "-c", filepath.Join(r.dir, "bird.conf"), "-s", r.sock())
	if err := r.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	wait(b, "BIRD up", func() bool { _, err := r.birdc("show", "status"); return err == nil })
}

// stop shuts BIRD down as an operator does (a Cease to its peers).
func (r *router) stop(b *testing.B) {
	_, _ = r.birdc("down")
	_ = r.cmd.Wait()
	r.cmd = nil
}

func (r *router) waitRoute(b *testing.B, pf netip.Prefix) {
	wait(b, "the route at BIRD", func() bool {
		out, err := r.birdc("show", "route", pf.String())
		return err == nil && strings.Contains(out, "via "+r.local.String())
	})
}

func wait(b *testing.B, what string, ok func() bool) {
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not after 60 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
