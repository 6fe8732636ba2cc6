package translator

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berthnet/berth/xds/ir"
)

// benchGroup is the IR the benchmark input (xds/benchgen) becomes: one listener
// on port 80 for *.example.com, and n HTTPRoutes over 50 namespaces, each
// for host rN.example.com with two rules: Exact /healthz with a request
// header added, and PathPrefix /api/vN, both to the route's own Service on
// port 8080.
func benchGroup(n int) *ir.Group {
	l := &ir.HTTPListener{Name: "bench/gw/http", Port: 80, Hostname: "*.example.com"}
	g := &ir.Group{Name: "gateway/bench/gw", HTTP: []*ir.HTTPListener{l}}
	for i := range n {
		ns := fmt.Sprintf("ns%d", i%50)
		host := fmt.Sprintf("r%d.example.com", i)
		c := &ir.Cluster{Name: fmt.Sprintf("%s/svc%d/8080", ns, i), Namespace: ns, Service: fmt.Sprintf("svc%d", i),
			Port: 8080, PortName: "http", Protocol: ir.HTTP}
		g.Clusters = append(g.Clusters, c)
		prefix := fmt.Sprintf("httproute/%s/r%d/rule/", ns, i)
		l.Routes = append(l.Routes,
			&ir.HTTPRoute{
				Name: prefix + "1/match/0/host/" + host, Hostname: host,
				Path:           &ir.StringMatch{Type: ir.Exact, Value: "/healthz"},
				RequestHeaders: &ir.HeaderModifier{Add: []ir.Header{{Name: "X-Health-Check", Value: "berth"}}},
				Backends:       []*ir.Backend{{Cluster: c.Name, Weight: 1}},
			},
			&ir.HTTPRoute{
				Name: prefix + "0/match/0/host/" + host, Hostname: host,
				Path:     &ir.StringMatch{Type: ir.Prefix, Value: fmt.Sprintf("/api/v%d", i)},
				Backends: []*ir.Backend{{Cluster: c.Name, Weight: 1}},
			})
	}
	return g
}

// BenchmarkTranslate times Translate alone (ns/op), per HTTPRoute of the
// input (ns/route: flat across sizes when translation is linear), and
// against a baseline measured in the same loop: deterministic proto
// marshalling of the resources it produced, which any server must do
// anyway (translate/marshal).
func BenchmarkTranslate(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			g := benchGroup(n)
			var marshal time.Duration
			b.ReportAllocs()
			for b.Loop() {
				res, err := Translate(g)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				start := time.Now()
				for _, list := range res {
					for _, r := range list {
						if _, err := (proto.MarshalOptions{Deterministic: true}).Marshal(r); err != nil {
							b.Fatal(err)
						}
					}
				}
				marshal += time.Since(start)
				b.StartTimer()
			}
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(perOp/float64(n), "ns/route")
			b.ReportMetric(perOp/(float64(marshal.Nanoseconds())/float64(b.N)), "translate/marshal")
		})
	}
}

// BenchmarkClusterLoadAssignment is the EDS hot path: one cluster's
// assignment rebuilt after an EndpointSlice change, with the benchmark's 2
// endpoints per Service and with 100.
func BenchmarkClusterLoadAssignment(b *testing.B) {
	for _, n := range []int{2, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			eps := make([]ir.Endpoint, n)
			for i := range eps {
				eps[i] = ir.Endpoint{Address: fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256), Port: 8080, Terminating: i%10 == 9}
			}
			b.ReportAllocs()
			for b.Loop() {
				if cla := ClusterLoadAssignment("ns0/svc0/8080", eps); cla == nil {
					b.Fatal("nil")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/endpoint")
		})
	}
}

// TestBenchGroupTranslates keeps the benchmark input honest: valid, and
// translated to what it means.
func TestBenchGroupTranslates(t *testing.T) {
	g := benchGroup(60)
	checkResources(t, g, mustTranslate(t, g))
}
