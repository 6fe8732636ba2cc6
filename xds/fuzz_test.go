package xds_test

import (
	"testing"

	"github.com/berthnet/berth/xds"
	"github.com/berthnet/berth/xds/benchgen"
	"github.com/berthnet/berth/xds/gatewayapi"
)

// FuzzPipeline runs random valid resource sets (the benchmark
// input with n routes, then benchgen.Mutate for as long as data lasts)
// through the whole pipeline: gatewayapi.Translate must not panic, every
// group it emits must Build, and everything Build emits must pass its
// ValidateAll and make a consistent snapshot, as the server requires
// before it serves anything. The seed corpus is in
// testdata/fuzz/FuzzPipeline; go test -fuzz FuzzPipeline ./xds/ explores.
func FuzzPipeline(f *testing.F) {
	f.Add(uint8(1), []byte{})
	f.Add(uint8(4), []byte{15, 0, 2, 1, 7, 0, 2, 1})
	f.Fuzz(func(t *testing.T, n uint8, data []byte) {
		in := benchgen.Generate(int(n%12) + 1)
		res := benchgen.Resources(in)
		c := benchgen.NewChooser(data)
		for c.More() {
			benchgen.Mutate(c, res)
		}
		out := gatewayapi.Translate(res, gatewayapi.Options{})
		for _, g := range out.Groups {
			served, err := xds.Build(g, gatewayapi.Endpoints(g.Clusters, in.EndpointSlices))
			if err != nil {
				t.Fatalf("group %s: %v", g.Name, err)
			}
			checkServable(t, g.Name, served)
		}
	})
}
