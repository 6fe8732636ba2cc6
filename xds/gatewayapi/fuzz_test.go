package gatewayapi_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthnet/berth/xds/benchgen"
	"github.com/berthnet/berth/xds/gatewayapi"
)

// FuzzTranslate mutates a generated snapshot (matches, hostnames,
// parentRefs, backends, filters, listeners, grants, missing objects) and
// checks that Translate neither panics nor emits a Group that fails
// Validate, and that it is deterministic: the same resources translated
// again, and the same resources listed in reverse order (as an informer
// may list them), give the same Groups and the same status.
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
		sameResult(t, "translated again", out, gatewayapi.Translate(res, gatewayapi.Options{}))
		sameResult(t, "input in reverse order", out, gatewayapi.Translate(reversed(res), gatewayapi.Options{}))
	})
}

// sameResult fails the test when two translations differ in their Groups
// or their status.
func sameResult(t *testing.T, what string, want, got *gatewayapi.Result) {
	t.Helper()
	if !reflect.DeepEqual(want.Groups, got.Groups) {
		wj, _ := json.MarshalIndent(want.Groups, "", " ")
		gj, _ := json.MarshalIndent(got.Groups, "", " ")
		t.Fatalf("%s: the groups differ (-first +second):\n%s", what, cmp.Diff(string(wj), string(gj)))
	}
	wj, _ := json.MarshalIndent(want, "", " ")
	gj, _ := json.MarshalIndent(got, "", " ")
	if string(wj) != string(gj) {
		t.Fatalf("%s: the status differs (-first +second):\n%s", what, cmp.Diff(string(wj), string(gj)))
	}
}

// reversed is a copy of res with every list in reverse order.
func reversed(res *gatewayapi.Resources) *gatewayapi.Resources {
	r := *res
	r.GatewayClasses = slices.Clone(r.GatewayClasses)
	r.Gateways = slices.Clone(r.Gateways)
	r.HTTPRoutes = slices.Clone(r.HTTPRoutes)
	r.GRPCRoutes = slices.Clone(r.GRPCRoutes)
	r.ReferenceGrants = slices.Clone(r.ReferenceGrants)
	r.Namespaces = slices.Clone(r.Namespaces)
	r.Services = slices.Clone(r.Services)
	r.Secrets = slices.Clone(r.Secrets)
	r.Ingresses = slices.Clone(r.Ingresses)
	r.IngressClasses = slices.Clone(r.IngressClasses)
	slices.Reverse(r.GatewayClasses)
	slices.Reverse(r.Gateways)
	slices.Reverse(r.HTTPRoutes)
	slices.Reverse(r.GRPCRoutes)
	slices.Reverse(r.ReferenceGrants)
	slices.Reverse(r.Namespaces)
	slices.Reverse(r.Services)
	slices.Reverse(r.Secrets)
	slices.Reverse(r.Ingresses)
	slices.Reverse(r.IngressClasses)
	return &r
}
