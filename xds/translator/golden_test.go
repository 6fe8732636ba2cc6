package translator

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/berthnet/berth/internal/golden"
	"github.com/berthnet/berth/xds/ir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current output")

// goldenInput is a testdata/<case>.ir.yaml file: an ir.Group (its fields
// inline) and the endpoints of its clusters.
type goldenInput struct {
	ir.Group
	Endpoints ir.Endpoints
}

// goldenKinds are the output files of a case, one per xDS type:
// testdata/<case>.<kind>.yaml.
func goldenKinds() []string {
	return []string{"listeners", "routes", "clusters", "endpoints", "secrets"}
}

func readInput(t testing.TB, path string) *goldenInput {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in := &goldenInput{}
	if err := yaml.UnmarshalStrict(data, in); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return in
}

// renderYAML is resources as a YAML list, through protojson (proto field
// names) and YAML with sorted keys: deterministic, unlike protojson's own
// spacing.
func renderYAML(t testing.TB, rs []types.Resource) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("[")
	for i, r := range rs {
		if i > 0 {
			buf.WriteString(",")
		}
		j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(j)
	}
	buf.WriteString("]")
	out, err := yaml.JSONToYAML(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGoldenTranslate(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.ir.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.ir.yaml")
	}
	cases := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".ir.yaml")
		cases[name] = true
		t.Run(name, func(t *testing.T) {
			g := readInput(t, in)
			res, err := Translate(&g.Group)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			outputs := map[string][]types.Resource{
				"listeners": res[resourcev3.ListenerType],
				"routes":    res[resourcev3.RouteType],
				"clusters":  res[resourcev3.ClusterType],
				"secrets":   res[resourcev3.SecretType],
				"endpoints": Endpoints(&g.Group, g.Endpoints),
			}
			for _, kind := range goldenKinds() {
				got := renderYAML(t, outputs[kind])
				path := filepath.Join("testdata", name+"."+kind+".yaml")
				golden.Compare(t, path, got, *update)
			}
		})
	}

	// Outputs whose input is gone are stale: deleted on -update, an error
	// otherwise.
	for _, kind := range goldenKinds() {
		suffix := "." + kind + ".yaml"
		golden.Prune(t, filepath.Join("testdata", "*"+suffix), func(out string) bool {
			return cases[strings.TrimSuffix(filepath.Base(out), suffix)]
		}, *update)
	}
}
