package labtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthnet/berth/test/kubetest"
)

// RealNodeInputs are what a lab of real nodes needs beyond Berth's binaries:
// the node binaries (bin/node), the images built from the binaries under
// test, the chart and helm.
type RealNodeInputs struct {
	NodeBinDir string
	ImagesDir  string
	Chart      string
	Helm       string
}

var (
	imagesOnce sync.Once
	images     RealNodeInputs
	imagesErr  error
)

// BuildImages builds, once per test process, every image the lab's real
// nodes import, from static binaries of the tree under test (version
// TestVersion), with `make images`' builder.
func BuildImages(t testing.TB) RealNodeInputs {
	t.Helper()
	imagesOnce.Do(func() { images, imagesErr = buildImages() })
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
	return images
}

func buildImages() (RealNodeInputs, error) {
	root, err := kubetest.RepoRoot()
	if err != nil {
		return RealNodeInputs{}, err
	}
	in := RealNodeInputs{NodeBinDir: filepath.Join(root, "bin", "node"), Chart: filepath.Join(root, "charts", "berth")}
	for _, b := range []string{"kubelet", "containerd", "runc", "coredns"} {
		if _, err := os.Stat(filepath.Join(in.NodeBinDir, b)); err != nil {
			return in, fmt.Errorf("%s not in %s: run `make test-deps`", b, in.NodeBinDir)
		}
	}
	in.Helm = os.Getenv("HELM")
	if in.Helm == "" {
		found, _ := filepath.Glob(filepath.Join(root, "bin", "tools", "helm-*"))
		if len(found) == 0 {
			return in, fmt.Errorf("no helm in %s: run `make test-deps`", filepath.Join(root, "bin", "tools"))
		}
		sort.Strings(found)
		in.Helm = found[len(found)-1]
	}
	dir, err := os.MkdirTemp("", "berth-e2e-images-")
	if err != nil {
		return in, err
	}
	bin := filepath.Join(dir, "bin")
	in.ImagesDir = filepath.Join(dir, "images")
	ldflags := "-X github.com/berthnet/berth/internal/version.version=" + TestVersion
	for _, c := range [][]string{
		{"go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin + "/", "./cmd/berth-controller", "./cmd/berth-agent", "./cmd/berth-cni"},
		{"go", "build", "-trimpath", "-o", filepath.Join(bin, "berth-pause"), "./build/pause"},
		{"go", "build", "-trimpath", "-o", filepath.Join(bin, "berth-echo"), "./build/echo"},
		{"go", "run", "./hack/images", "-bin", bin, "-out", in.ImagesDir, "-version", TestVersion, "-images", "all",
			"-coredns", filepath.Join(in.NodeBinDir, "coredns")},
	} {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return in, fmt.Errorf("%v: %v\n%s", c, err, out)
		}
	}
	return in, nil
}

// logClusterState logs what a failed test's lab runs, before down removes
// it: every pod with its node and phase, the events, and the end of each
// real node's kubelet and containerd logs.
func (l *Lab) logClusterState(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{{"get", "pods", "-A", "-o", "wide"}, {"get", "events", "-A", "--sort-by=.lastTimestamp"}} {
		out, err := l.Kubectl(ctx, args...)
		t.Logf("kubectl %v (%v):\n%s", args, err, lastLines(out, 60))
	}
	logs, _ := filepath.Glob(filepath.Join(l.StateDir, "nodes", "*", "real", "*.log"))
	for _, f := range logs {
		if b, err := os.ReadFile(f); err == nil {
			t.Logf("%s (end):\n%s", f, lastLines(string(b), 25))
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
