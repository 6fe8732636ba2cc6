package xds_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/berthnet/berth/internal/golden"
	"github.com/berthnet/berth/xds"
	"github.com/berthnet/berth/xds/gatewayapi"
	"github.com/berthnet/berth/xds/translator"
)

var update = flag.Bool("update", false, "rewrite the golden files xds/testdata/*.{listeners,routes,clusters,endpoints,secrets}.yaml")

const testdata = "testdata"

// goldenType is one output file of a case: testdata/<case>.<kind>.yaml
// holds the resources of type typ.
type goldenType struct {
	kind string
	typ  resourcev3.Type
}

func goldenTypes() []goldenType {
	return []goldenType{
		{"listeners", resourcev3.ListenerType},
		{"routes", resourcev3.RouteType},
		{"clusters", resourcev3.ClusterType},
		{"endpoints", resourcev3.EndpointType},
		{"secrets", resourcev3.SecretType},
	}
}

// TestGoldenPipeline runs every xds/testdata/<case>.in.yaml through the
// whole pipeline the controller serves (gatewayapi.Translate, then Build
// with gatewayapi.Endpoints per group) and compares what each node group
// is served with <case>.<kind>.yaml, one file per xDS type, every group of
// the case in it by name. Everything served must also pass ValidateAll and
// make a consistent snapshot, and two builds must be equal.
func TestGoldenPipeline(t *testing.T) {
	ins, err := filepath.Glob(filepath.Join(testdata, "*.in.yaml"))
	if err != nil || len(ins) == 0 {
		t.Fatalf("no test cases in %s: %v", testdata, err)
	}
	cases := map[string]bool{}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		cases[name] = true
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			res, eps, err := gatewayapi.DecodeYAML(data)
			if err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			out := gatewayapi.Translate(res, gatewayapi.Options{})
			byGroup := map[string]translator.Resources{}
			for _, g := range out.Groups {
				served, err := xds.Build(g, gatewayapi.Endpoints(g.Clusters, eps))
				if err != nil {
					t.Fatalf("group %s: %v", g.Name, err)
				}
				checkServable(t, g.Name, served)
				again, err := xds.Build(g, gatewayapi.Endpoints(g.Clusters, eps))
				if err != nil {
					t.Fatalf("group %s, second build: %v", g.Name, err)
				}
				if d := cmp.Diff(render(t, served), render(t, again)); d != "" {
					t.Errorf("group %s: two builds differ (-first +second):\n%s", g.Name, d)
				}
				byGroup[g.Name] = served
			}
			for _, gt := range goldenTypes() {
				perGroup := map[string]any{}
				for group, served := range byGroup {
					perGroup[group] = resourcesJSON(t, served[gt.typ])
				}
				got, err := yaml.Marshal(perGroup)
				if err != nil {
					t.Fatal(err)
				}
				compareGolden(t, filepath.Join(testdata, name+"."+gt.kind+".yaml"), got)
			}
		})
	}
	removeStale(t, cases)
}

// checkServable is what the server would refuse: a resource failing its
// ValidateAll, or a snapshot that is not consistent (an EDS cluster
// without its assignment, an RDS name without its route configuration).
func checkServable(t *testing.T, group string, res translator.Resources) {
	t.Helper()
	for typ, list := range res {
		for _, r := range list {
			v, ok := r.(interface{ ValidateAll() error })
			if !ok {
				t.Errorf("group %s: %s %s cannot be validated", group, typ, cachev3.GetResourceName(r))
				continue
			}
			if err := v.ValidateAll(); err != nil {
				t.Errorf("group %s: %s %s: %v", group, typ, cachev3.GetResourceName(r), err)
			}
		}
	}
	snap, err := cachev3.NewSnapshot("1", res)
	if err != nil {
		t.Fatalf("group %s: NewSnapshot: %v", group, err)
	}
	if err := snap.Consistent(); err != nil {
		t.Errorf("group %s: inconsistent snapshot: %v", group, err)
	}
}

func render(t *testing.T, res translator.Resources) map[string]any {
	t.Helper()
	out := map[string]any{}
	for typ, list := range res {
		out[typ] = resourcesJSON(t, list)
	}
	return out
}

// resourcesJSON is a list of resources as generic JSON with Envoy's field
// names (protojson), inline bytes (certificates and keys) replaced by
// their size and digest so the files stay readable and secret-free.
func resourcesJSON(t *testing.T, rs []types.Resource) []any {
	t.Helper()
	out := make([]any, 0, len(rs))
	for _, r := range rs {
		j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(j, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, digestBytes(v))
	}
	return out
}

func digestBytes(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && k == "inline_bytes" {
				b, _ := base64.StdEncoding.DecodeString(s)
				v[k] = fmt.Sprintf("%d bytes, sha256 %x", len(b), sha256.Sum256(b))
				continue
			}
			v[k] = digestBytes(e)
		}
	case []any:
		for i := range v {
			v[i] = digestBytes(v[i])
		}
	}
	return v
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	golden.Compare(t, path, got, *update)
}

// removeStale deletes (on -update) or reports outputs of this test whose
// case is gone; other tests' files in xds/testdata are left alone.
func removeStale(t *testing.T, cases map[string]bool) {
	t.Helper()
	for _, gt := range goldenTypes() {
		suffix := "." + gt.kind + ".yaml"
		golden.Prune(t, filepath.Join(testdata, "*"+suffix), func(o string) bool {
			return cases[strings.TrimSuffix(filepath.Base(o), suffix)]
		}, *update)
	}
}
