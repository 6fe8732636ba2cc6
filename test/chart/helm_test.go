// Package chart_test checks the Helm chart charts/berth with a real helm
// (built by `make test-deps`) and a real kube-apiserver: lint, what each
// component switch renders, the schema's refusals, the roles against the
// generated ones, and every rendered object through a server-side dry-run.
package chart_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/berthnet/berth/test/kubetest"
)

const (
	release   = "berth"
	namespace = "berth-system"
	// The Kubernetes version helm renders for: the one the tests' API server is.
	kubeVersion = "1.37.2"
)

// repoRoot is the checkout's root; the chart is charts/berth in it.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "berth") }

// helmBin is $HELM (the Makefile exports it), else the helm `make test-deps`
// put in bin/tools.
func helmBin(t testing.TB) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		if _, err := os.Stat(h); err != nil {
			t.Fatalf("HELM=%s: %v: run `make test-deps`", h, err)
		}
		return h
	}
	found, _ := filepath.Glob(filepath.Join(repoRoot(t), "bin", "tools", "helm-v*"))
	if len(found) == 0 {
		t.Fatal("no helm in bin/tools: run `make test-deps`")
	}
	sort.Strings(found)
	return found[len(found)-1]
}

// helm runs helm with args and returns its standard output, or an error
// holding its standard error.
func helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	// No user's helm configuration or cache leaks into the test.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out.String(), nil
}

// setArgs turns "key=value" settings into helm's --set flags.
func setArgs(sets []string) []string {
	var args []string
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return args
}

// render is `helm template` of the chart with the settings, decoded.
func render(t testing.TB, sets ...string) (objects, error) {
	t.Helper()
	args := append([]string{"template", release, chartDir(t), "--namespace", namespace, "--kube-version", kubeVersion}, setArgs(sets)...)
	out, err := helm(t, args...)
	if err != nil {
		return nil, err
	}
	return decode(t, out), nil
}

func mustRender(t testing.TB, sets ...string) objects {
	t.Helper()
	objs, err := render(t, sets...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decode(t testing.TB, manifests string) objects {
	t.Helper()
	var objs objects
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("rendered YAML: %v", err)
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		// As the API machinery reads objects: whole numbers are int64.
		var o unstructured.Unstructured
		if err := o.UnmarshalJSON(raw); err != nil {
			t.Fatalf("rendered object: %v\n%s", err, raw)
		}
		objs = append(objs, &o)
	}
}

// objects are the rendered objects of one release.
type objects []*unstructured.Unstructured

// get is the object of that kind and name, or nil.
func (os objects) get(kind, name string) *unstructured.Unstructured {
	for _, o := range os {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func (os objects) must(t testing.TB, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := os.get(kind, name)
	if o == nil {
		t.Fatalf("no %s %s rendered; rendered: %v", kind, name, os.names())
	}
	return o
}

func (os objects) ofKind(kind string) objects {
	var out objects
	for _, o := range os {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func (os objects) names() []string {
	var n []string
	for _, o := range os {
		n = append(n, o.GetKind()+"/"+o.GetName())
	}
	return n
}
