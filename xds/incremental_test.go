package xds_test

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/xds"
	"github.com/berthnet/berth/xds/benchgen"
	"github.com/berthnet/berth/xds/gatewayapi"
	"github.com/berthnet/berth/xds/translator"
)

// TestIncrementalEqualsFull runs random change sequences (benchgen.Mutate)
// on the benchmark input (xds/benchgen) and checks, after every change, that the memoized
// stages (gatewayapi.Memo, translator.Memo), carried from change to change
// as the controller carries them, give exactly what a full translation of
// the same snapshot gives.
func TestIncrementalEqualsFull(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 8))
			data := make([]byte, 400)
			for i := range data {
				data[i] = byte(r.UintN(256))
			}
			checkIncremental(t, int(seed%6)+2, data)
		})
	}
}

// FuzzIncremental is TestIncrementalEqualsFull on a fuzzer's choices.
func FuzzIncremental(f *testing.F) {
	f.Add(uint8(3), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Fuzz(func(t *testing.T, n uint8, data []byte) {
		checkIncremental(t, int(n%8)+1, data)
	})
}

func checkIncremental(t *testing.T, n int, data []byte) {
	t.Helper()
	res := benchgen.Resources(benchgen.Generate(n))
	stamp(res)
	var memo gatewayapi.Memo
	stage2 := map[string]*translator.Memo{}
	c := benchgen.NewChooser(data)
	for step := 0; ; step++ {
		// Each change makes new objects, as the API server does; a
		// changed object gets a new resourceVersion.
		res = deepCopy(t, res)
		if step > 0 {
			benchgen.Mutate(c, res)
			stamp(res)
		}
		got := memo.Translate(res, gatewayapi.Options{})
		want := gatewayapi.Translate(res, gatewayapi.Options{})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: memoized translation differs (-memo +full):\n%s", step, cmp.Diff(got, want))
		}
		for _, g := range got.Groups {
			m := stage2[g.Name]
			if m == nil {
				m = &translator.Memo{}
				stage2[g.Name] = m
			}
			inc, ierr := m.Translate(xds.BindPorts(g))
			full, ferr := translator.Translate(xds.BindPorts(g))
			if (ierr == nil) != (ferr == nil) {
				t.Fatalf("step %d group %s: memo error %v, full error %v", step, g.Name, ierr, ferr)
			}
			for typ, list := range full {
				if len(inc[typ]) != len(list) {
					t.Fatalf("step %d group %s: %d %s, want %d", step, g.Name, len(inc[typ]), typ, len(list))
				}
				for i := range list {
					if !proto.Equal(inc[typ][i], list[i]) {
						t.Fatalf("step %d group %s: %s #%d differs:\n%v\nwant\n%v", step, g.Name, typ, i, inc[typ][i], list[i])
					}
				}
			}
		}
		if !c.More() {
			return
		}
	}
}

// stamp gives every object the hash of its content as resourceVersion:
// what changed gets a new one, what did not keeps its own; and, as the API
// server does, a UID for its name and creation, and a generation that
// moves with its spec only (gatewayapi.Memo knows routes by those).
func stamp(res *gatewayapi.Resources) {
	each(res, func(o client.Object) {
		o.SetResourceVersion("")
		o.SetUID("")
		o.SetGeneration(0)
		raw, err := json.Marshal(o)
		if err != nil {
			panic(err)
		}
		o.SetResourceVersion(hash(raw))
		o.SetUID(types.UID(hash([]byte(fmt.Sprintf("%T/%s/%s/%s", o, o.GetNamespace(), o.GetName(), o.GetCreationTimestamp())))))
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			panic(err)
		}
		if spec, ok := fields["spec"]; ok {
			h := fnv.New32a()
			h.Write(spec)
			o.SetGeneration(int64(h.Sum32()) + 1)
		}
	})
}

func hash(b []byte) string {
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("%x", h.Sum64())
}

// each calls f with every object of res.
func each(res *gatewayapi.Resources, f func(client.Object)) {
	eachOf(res.GatewayClasses, f)
	eachOf(res.Gateways, f)
	eachOf(res.HTTPRoutes, f)
	eachOf(res.GRPCRoutes, f)
	eachOf(res.ReferenceGrants, f)
	eachOf(res.Namespaces, f)
	eachOf(res.Services, f)
	eachOf(res.Secrets, f)
	eachOf(res.Ingresses, f)
	eachOf(res.IngressClasses, f)
}

func eachOf[T any, P interface {
	*T
	client.Object
}](in []T, f func(client.Object)) {
	for i := range in {
		f(P(&in[i]))
	}
}

func deepCopy(t *testing.T, res *gatewayapi.Resources) *gatewayapi.Resources {
	t.Helper()
	out := *res
	out.GatewayClasses = copyAll(res.GatewayClasses)
	out.Gateways = copyAll(res.Gateways)
	out.HTTPRoutes = copyAll(res.HTTPRoutes)
	out.GRPCRoutes = copyAll(res.GRPCRoutes)
	out.ReferenceGrants = copyAll(res.ReferenceGrants)
	out.Namespaces = copyAll(res.Namespaces)
	out.Services = copyAll(res.Services)
	out.Secrets = copyAll(res.Secrets)
	out.Ingresses = copyAll(res.Ingresses)
	out.IngressClasses = copyAll(res.IngressClasses)
	return &out
}

func copyAll[T any, P interface {
	*T
	DeepCopyInto(*T)
}](in []T) []T {
	if in == nil {
		return nil
	}
	out := make([]T, len(in))
	for i := range in {
		P(&in[i]).DeepCopyInto(&out[i])
	}
	return out
}
