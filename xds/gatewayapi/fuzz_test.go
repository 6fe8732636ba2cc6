package gatewayapi_test

import (
	"testing"

	"github.com/berthnet/berth/xds/benchgen"
	"github.com/berthnet/berth/xds/gatewayapi"
)

// FuzzTranslate mutates a generated snapshot (matches, hostnames,
// parentRefs, backends, filters, listeners, grants, missing objects) and
// checks that Translate neither panics nor emits a Group that fails
// Validate, and that it is deterministic.
func FuzzTranslate(f *testing.F) {
	f.Add(uint8(3), []byte{})
	f.Add(uint8(5), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add(uint8(8), []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\xff\xfe\xfd"))
	f.Add(uint8(2), []byte("mutate all the things, please, with many bytes of choices"))
	f.Fuzz(func(t *testing.T, n uint8, data []byte) {
		res := benchgen.Resources(benchgen.Generate(int(n%12) + 1))
		c := benchgen.NewChooser(data)
		for c.More() {
			benchgen.Mutate(c, res)
		}
		out := gatewayapi.Translate(res, gatewayapi.Options{})
		for _, g := range out.Groups {
			if err := g.Validate(); err != nil {
				t.Fatalf("group %s: %v", g.Name, err)
			}
		}
		for _, g := range out.Groups {
			gatewayapi.Endpoints(g.Clusters, nil)
		}
	})
}
