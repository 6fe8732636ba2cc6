// Package gwbench measures Berth's Gateway API side end to end: the
// benchmark input of issue 8 (xds/benchgen) in a real API server,
// berth-controller run as a process of its own against it, and an ADS
// client playing an Envoy of the Gateway with the certificate the
// controller provisioned. It holds benchmarks only; `make bench` runs them.
package gwbench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/benchgen"
)

// routes is $BERTH_GWBENCH_ROUTES, 5,000 by default.
func routes(b *testing.B) int {
	raw := os.Getenv("BERTH_GWBENCH_ROUTES")
	if raw == "" {
		return 5000
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		b.Fatalf("BERTH_GWBENCH_ROUTES=%q: want a positive number of HTTPRoutes", raw)
	}
	return n
}

// pprofDir is $BERTH_GWBENCH_PPROF: when set, the controller serves pprof
// and the benchmark saves a heap profile at steady state, and CPU profiles
// of the cold start and across the changes, there.
func pprofDir() string { return os.Getenv("BERTH_GWBENCH_PPROF") }

// rounds is how many times each change is measured.
const rounds = 10

// BenchmarkGateway creates the benchmark input (xds/benchgen) with N HTTPRoutes
// ($BERTH_GWBENCH_ROUTES, default 5,000: 5,000 Services and EndpointSlices
// of 2 endpoints, so 10,000 endpoints) in a real API server and runs
// berth-controller against it as a process, with an ADS client playing
// one Envoy of the Gateway. It reports:
//
//   - MiB-rss-idle: the controller's resident set serving the Gateway with
//     no routes (a first controller process, before the routes exist; it
//     also provisions the fleet's certificate, which the second reuses);
//   - s-full-config: from the start of a second controller process, with
//     every object in place, until the client has received a configuration
//     holding all N routes (cache sync, translation, xDS, all of it as seen
//     from outside); s-list-baseline: a plain client LISTing the same
//     objects in parallel, the least any controller must do before it can
//     translate; ratio-full-config is the first over the second;
//   - s-status-all: from that start until every HTTPRoute's status says
//     Accepted by Berth (N status writes);
//   - MiB-rss: the controller's resident set once it is quiet after that
//     (steady state), MiB-rss-at-full when the client got everything, and
//     MiB-hwm its peak, at the end;
//   - ms-route-change-median/-worst: a new Exact path added to the first
//     rule of one route, from the write being sent until the client has
//     received the RouteConfiguration with it (10 rounds);
//     ms-route-watch-median/-worst: the same write until a plain watch on
//     HTTPRoutes from the benchmark delivers it (the API server's own
//     latency, which the controller's informer also waits for);
//   - ms-endpoint-change-median/-worst and ms-endpoint-watch-median/-worst:
//     the same for one endpoint address changed in one EndpointSlice, until
//     the client has the ClusterLoadAssignment with it;
//   - ms-endpoint-delta-change-median/-worst: the same endpoint change seen
//     by a delta ADS client, as Envoy connects (xds/bootstrap), with no
//     state-of-the-world client connected: its responses carry the changed
//     assignment only, where a state-of-the-world one carries all N;
//   - MiB-rss-end: the controller's resident set after all the changes.
//
// The changes start when the write is sent, not when it returns. Before
// each change the controller is let settle (see proc.settle). Figures,
// never verdicts: hack/bench.sh prints them against the goals. Run it
// with -benchtime 1x: one run is the measurement.
func BenchmarkGateway(b *testing.B) {
	if b.N > 1 {
		b.Skip("one run is the measurement; use -benchtime 1x")
	}
	n := routes(b)
	bin := controllerBinary(b)
	c := startCluster(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	in := benchgen.Generate(n)
	objs := in.Objects()
	serial := len(in.Namespaces) + 2
	xdsAddr := freePort(b)
	const serverName = "127.0.0.1"

	// The Gateway with no routes, served by a first controller.
	c.createAll(b, objs[:serial], serial)
	idle, _ := startController(b, bin, c, xdsAddr, "idle", false)
	tlsCfg, err := fleetTLS(ctx, c, serverName)
	if err != nil {
		idle.Alive(b)
		b.Fatal(err)
	}
	if _, _, err := connect(ctx, b, xdsAddr, tlsCfg, "idle", 0); err != nil {
		idle.Alive(b)
		b.Fatal(err)
	}
	idle.settle(b)
	rssIdle := idle.MemMiB(b, "VmRSS")
	idle.Stop()

	start := time.Now()
	c.createAll(b, objs[serial:], 0)
	b.Logf("created %d Services, %d EndpointSlices and %d HTTPRoutes in %s", n, n, n, time.Since(start).Round(time.Millisecond))
	listed, count, err := c.listAll(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("a plain client lists the %d objects in %s", count, listed.Round(time.Millisecond))
	routeWatch := startWatch(b, c.c, func() client.ObjectList { return &gwv1.HTTPRouteList{} })
	sliceWatch := startWatch(b, c.c, func() client.ObjectList { return &discoveryv1.EndpointSliceList{} })

	// The measured controller: every object is in place when it starts.
	p, started := startController(b, bin, c, xdsAddr, "measured", pprofDir() != "")
	var coldCPU chan struct{}
	if pprofDir() != "" {
		coldCPU = make(chan struct{})
		go func() {
			defer close(coldCPU)
			p.profile(b, pprofDir(), "profile?seconds=20", "cpu-cold-start.pb.gz")
		}()
	}
	env, full, err := connect(ctx, b, xdsAddr, tlsCfg, "envoy-0", n)
	if err != nil {
		p.Alive(b)
		b.Fatal(err)
	}
	fullConfig := full.Sub(started)
	rssAtFull := p.MemMiB(b, "VmRSS")
	b.Logf("the client had all %d routes %s after the controller started (RSS %.0f MiB)", n, fullConfig.Round(time.Millisecond), rssAtFull)
	if err := routeWatch.until(ctx, func(objs map[string]client.Object) bool { return accepted(objs) >= n }); err != nil {
		p.Alive(b)
		b.Fatalf("route status: %v", err)
	}
	statusAll := time.Since(started)
	if coldCPU != nil {
		<-coldCPU
	}
	p.settle(b)
	rss := p.MemMiB(b, "VmRSS")
	b.Logf("every route Accepted %s after the start; RSS at steady state %.0f MiB", statusAll.Round(time.Millisecond), rss)
	if pprofDir() != "" {
		p.profile(b, pprofDir(), "heap", "heap-steady.pb.gz")
	}

	var changesCPU chan struct{}
	if pprofDir() != "" {
		changesCPU = make(chan struct{})
		go func() {
			defer close(changesCPU)
			p.profile(b, pprofDir(), "profile?seconds=30", "cpu-changes.pb.gz")
		}()
	}
	route := 1234 % n
	host := fmt.Sprintf("r%d.example.com", route)
	var routeChange, routeWatched []time.Duration
	beforeRoutes := p.steps(b)
	before := beforeRoutes
	var steps []string // each change: its time, and the controller's steps
	for k := range rounds {
		if err := env.drain(); err != nil {
			b.Fatal(err)
		}
		path := fmt.Sprintf("/changed-%d", k)
		sent, rv, err := c.addPath(ctx, route, path)
		if err != nil {
			b.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		got, err := env.waitPath(wctx, host, path)
		if err != nil {
			p.Alive(b)
			b.Fatal(err)
		}
		seen, err := routeWatch.at(wctx, rv)
		wcancel()
		if err != nil {
			b.Fatal(err)
		}
		routeChange, routeWatched = append(routeChange, got.Sub(sent)), append(routeWatched, seen.Sub(sent))
		p.settle(b)
		after := p.steps(b)
		steps = append(steps, fmt.Sprintf("%.0f ms (%s)", float64(got.Sub(sent))/float64(time.Millisecond), after.since(before)))
		before = after
	}
	b.Logf("controller during the route changes: %s; each change: %s", p.steps(b).since(beforeRoutes), strings.Join(steps, " | "))
	if pprofDir() != "" {
		// Against heap-steady.pb.gz (pprof -base), what the route changes allocated.
		p.profile(b, pprofDir(), "heap", "heap-after-routes.pb.gz")
	}
	slice := 4321 % n
	var epChange, epWatched []time.Duration
	for k := range rounds {
		if err := env.drain(); err != nil {
			b.Fatal(err)
		}
		addr := fmt.Sprintf("10.250.0.%d", k+1)
		sent, rv, err := c.setEndpoint(ctx, slice, addr)
		if err != nil {
			b.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		got, err := env.waitEndpoint(wctx, addr)
		if err != nil {
			p.Alive(b)
			b.Fatal(err)
		}
		seen, err := sliceWatch.at(wctx, rv)
		wcancel()
		if err != nil {
			b.Fatal(err)
		}
		epChange, epWatched = append(epChange, got.Sub(sent)), append(epWatched, seen.Sub(sent))
		p.settle(b)
	}
	if changesCPU != nil {
		<-changesCPU
	}

	// The same endpoint change, seen by a delta client as real Envoys
	// connect: the state-of-the-world client goes (the server would
	// otherwise send it all N assignments first on every change).
	env.c.Close()
	delta, err := connectDelta(ctx, b, xdsAddr, tlsCfg, "envoy-delta", n)
	if err != nil {
		p.Alive(b)
		b.Fatal(err)
	}
	p.settle(b)
	var deltaChange []time.Duration
	for k := range rounds {
		addr := fmt.Sprintf("10.251.0.%d", k+1)
		sent, _, err := c.setEndpoint(ctx, slice, addr)
		if err != nil {
			b.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		got, err := delta.waitEndpoint(wctx, addr)
		wcancel()
		if err != nil {
			p.Alive(b)
			b.Fatal(err)
		}
		deltaChange = append(deltaChange, got.Sub(sent))
		p.settle(b)
	}
	rssEnd := p.MemMiB(b, "VmRSS")
	hwm := p.MemMiB(b, "VmHWM")
	b.Logf("route change %v (watch %v); endpoint change %v (watch %v), delta client %v; RSS at the end %.0f MiB, peak %.0f MiB",
		ms(routeChange), ms(routeWatched), ms(epChange), ms(epWatched), ms(deltaChange), rssEnd, hwm)

	b.ReportMetric(rssIdle, "MiB-rss-idle")
	b.ReportMetric(fullConfig.Seconds(), "s-full-config")
	b.ReportMetric(listed.Seconds(), "s-list-baseline")
	b.ReportMetric(fullConfig.Seconds()/listed.Seconds(), "ratio-full-config")
	b.ReportMetric(statusAll.Seconds(), "s-status-all")
	b.ReportMetric(rss, "MiB-rss")
	b.ReportMetric(rssAtFull, "MiB-rss-at-full")
	b.ReportMetric(hwm, "MiB-hwm")
	b.ReportMetric(rssEnd, "MiB-rss-end")
	report(b, "route-change", routeChange)
	report(b, "route-watch", routeWatched)
	report(b, "endpoint-change", epChange)
	report(b, "endpoint-delta-change", deltaChange)
	report(b, "endpoint-watch", epWatched)
	b.ReportMetric(float64(median(routeChange))/float64(median(routeWatched)), "ratio-route-change")
	b.ReportMetric(float64(median(epChange))/float64(median(epWatched)), "ratio-endpoint-change")
}

// accepted counts the routes whose status says Accepted by Berth.
func accepted(objs map[string]client.Object) int {
	n := 0
	for _, o := range objs {
		r, ok := o.(*gwv1.HTTPRoute)
		if !ok {
			continue
		}
		for _, p := range r.Status.Parents {
			if p.ControllerName == benchgen.ControllerName && meta.IsStatusConditionTrue(p.Conditions, string(gwv1.RouteConditionAccepted)) {
				n++
				break
			}
		}
	}
	return n
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func report(b *testing.B, name string, d []time.Duration) {
	b.ReportMetric(float64(median(d))/float64(time.Millisecond), "ms-"+name+"-median")
	b.ReportMetric(float64(slices.Max(d))/float64(time.Millisecond), "ms-"+name+"-worst")
}

func ms(d []time.Duration) []string {
	out := make([]string, len(d))
	for i, v := range d {
		out[i] = fmt.Sprintf("%.1f", float64(v)/float64(time.Millisecond))
	}
	return out
}
