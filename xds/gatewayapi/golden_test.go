package gatewayapi

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
	"time"

	"github.com/google/go-cmp/cmp"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"

	"github.com/berthnet/berth/internal/golden"
	"github.com/berthnet/berth/xds/ir"
)

var update = flag.Bool("update", false, "rewrite the golden files xds/testdata/*.ir.yaml and *.status.yaml")

const testdata = "../testdata"

// TestGolden translates every xds/testdata/<case>.in.yaml and compares the
// IR (with the endpoints of the slices in the input) with <case>.ir.yaml
// and the statuses with <case>.status.yaml.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob(filepath.Join(testdata, "*.in.yaml"))
	if err != nil || len(ins) == 0 {
		t.Fatalf("no test cases in %s: %v", testdata, err)
	}
	if *update {
		removeStale(t, ins)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			res, slices, err := DecodeYAML(data)
			if err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			out := Translate(res, Options{})
			for _, g := range out.Groups {
				if err := g.Validate(); err != nil {
					t.Errorf("group %s: %v", g.Name, err)
				}
			}
			again := Translate(res, Options{})
			if d := cmp.Diff(out, again); d != "" {
				t.Errorf("two translations differ (-first +second):\n%s", d)
			}
			compareGolden(t, filepath.Join(testdata, name+".ir.yaml"), irYAML(t, out, slices))
			compareGolden(t, filepath.Join(testdata, name+".status.yaml"), cleanYAML(t, out))
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	golden.Compare(t, path, got, *update)
}

// removeStale deletes outputs of this test whose input is gone; outputs of
// other tests sharing xds/testdata are left alone.
func removeStale(t *testing.T, ins []string) {
	t.Helper()
	have := map[string]bool{}
	for _, in := range ins {
		have[strings.TrimSuffix(filepath.Base(in), ".in.yaml")] = true
	}
	for _, suffix := range []string{".ir.yaml", ".status.yaml"} {
		golden.Prune(t, filepath.Join(testdata, "*"+suffix), func(o string) bool {
			return have[strings.TrimSuffix(filepath.Base(o), suffix)]
		}, *update)
	}
}

// irYAML renders the groups and their endpoints.
func irYAML(t *testing.T, out *Result, slices []discoveryv1.EndpointSlice) []byte {
	t.Helper()
	endpoints := map[string]ir.Endpoints{}
	for _, g := range out.Groups {
		if len(g.Clusters) > 0 {
			endpoints[g.Name] = Endpoints(g.Clusters, slices)
		}
	}
	return cleanYAML(t, map[string]any{"groups": out.Groups, "endpoints": endpoints})
}

// cleanYAML marshals v as YAML without nulls, with durations in Go syntax
// and certificate data as a digest, so the files stay readable.
func cleanYAML(t *testing.T, v any) []byte {
	t.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(j, &generic); err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(clean(generic))
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func clean(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			switch {
			case e == nil || e == "":
				delete(v, k)
			case k == "Timeout" || k == "BackendTimeout":
				if f, ok := e.(float64); ok {
					if f == 0 {
						delete(v, k)
					} else {
						v[k] = time.Duration(f).String()
					}
				}
			case k == "Chain" || k == "Key":
				if s, ok := e.(string); ok {
					b, _ := base64.StdEncoding.DecodeString(s)
					v[k] = fmt.Sprintf("%d bytes, sha256 %x", len(b), sha256.Sum256(b))
				}
			default:
				v[k] = clean(e)
			}
		}
		return v
	case []any:
		for i := range v {
			v[i] = clean(v[i])
		}
	}
	return v
}
