package translator

import (
	"fmt"
	"slices"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/berthnet/berth/xds/ir"
)

// byPriority is an assignment as "address:port" lists, by priority.
func byPriority(t *testing.T, cla *endpointv3.ClusterLoadAssignment) map[uint32][]string {
	t.Helper()
	if err := cla.ValidateAll(); err != nil {
		t.Fatalf("assignment %s: %v", cla.ClusterName, err)
	}
	out := map[uint32][]string{}
	for _, l := range cla.Endpoints {
		if _, dup := out[l.Priority]; dup {
			t.Errorf("priority %d twice", l.Priority)
		}
		out[l.Priority] = []string{}
		for _, e := range l.LbEndpoints {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out[l.Priority] = append(out[l.Priority], fmt.Sprintf("%s:%d", sa.Address, sa.GetPortValue()))
		}
	}
	for p := range uint32(len(out)) {
		if _, ok := out[p]; !ok {
			t.Errorf("priorities skip %d: %v", p, out)
		}
	}
	return out
}

func TestClusterLoadAssignment(t *testing.T) {
	for _, tc := range []struct {
		name string
		eps  []ir.Endpoint
		want map[uint32][]string
	}{
		{"none", nil, map[uint32][]string{}},
		{"ready only, sorted", []ir.Endpoint{{Address: "10.0.0.2", Port: 80}, {Address: "10.0.0.10", Port: 80}, {Address: "10.0.0.2", Port: 79}},
			map[uint32][]string{0: {"10.0.0.2:79", "10.0.0.2:80", "10.0.0.10:80"}}},
		{"terminating behind ready", []ir.Endpoint{{Address: "10.0.0.3", Port: 80, Terminating: true}, {Address: "10.0.0.1", Port: 80}},
			map[uint32][]string{0: {"10.0.0.1:80"}, 1: {"10.0.0.3:80"}}},
		{"all terminating still serve", []ir.Endpoint{{Address: "10.0.0.3", Port: 80, Terminating: true}},
			map[uint32][]string{0: {"10.0.0.3:80"}}},
		{"duplicates: ready wins", []ir.Endpoint{{Address: "10.0.0.1", Port: 80, Terminating: true}, {Address: "10.0.0.1", Port: 80}, {Address: "10.0.0.1", Port: 80}},
			map[uint32][]string{0: {"10.0.0.1:80"}}},
		{"IPv6 canonical, mapped IPv4 unmapped", []ir.Endpoint{{Address: "FD00:0::1", Port: 80}, {Address: "::ffff:10.0.0.1", Port: 80}},
			map[uint32][]string{0: {"10.0.0.1:80", "fd00::1:80"}}},
		{"invalid dropped", []ir.Endpoint{{Address: "pod.local", Port: 80}, {Address: "", Port: 80}, {Address: "10.0.0.1", Port: 0},
			{Address: "10.0.0.1", Port: 70000}, {Address: "fe80::1%eth0", Port: 80}, {Address: "10.0.0.9", Port: 80}},
			map[uint32][]string{0: {"10.0.0.9:80"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.eps)
			cla := ClusterLoadAssignment("ns/svc/80", tc.eps)
			if cla.ClusterName != "ns/svc/80" {
				t.Errorf("cluster name %q", cla.ClusterName)
			}
			if d := cmp.Diff(tc.want, byPriority(t, cla)); d != "" {
				t.Errorf("endpoints by priority (-want +got):\n%s", d)
			}
			if !slices.Equal(in, tc.eps) {
				t.Errorf("input modified: %v, was %v", tc.eps, in)
			}
		})
	}
}

// TestEndpoints: every cluster of the group gets an assignment, sorted,
// the ones without endpoints too (Envoy waits for each EDS cluster); other
// clusters' endpoints are ignored.
func TestEndpoints(t *testing.T) {
	g := httpGroup(&ir.HTTPRoute{Name: "r", Backends: to("t/a/80")})
	slices.Reverse(g.Clusters)
	got := Endpoints(g, ir.Endpoints{
		"t/b/80":     {{Address: "10.0.0.1", Port: 8080}},
		"other/x/80": {{Address: "10.0.0.2", Port: 8080}},
	})
	var names []string
	for _, r := range got {
		cla := r.(*endpointv3.ClusterLoadAssignment)
		names = append(names, cla.ClusterName)
		n := 0
		for _, l := range cla.Endpoints {
			n += len(l.LbEndpoints)
		}
		if want := map[string]int{"t/b/80": 1}[cla.ClusterName]; n != want {
			t.Errorf("%s: %d endpoints, want %d", cla.ClusterName, n, want)
		}
	}
	if d := cmp.Diff([]string{"t/a/80", "t/b/80", "t/c/80"}, names); d != "" {
		t.Errorf("assignments (-want +got):\n%s", d)
	}
}
