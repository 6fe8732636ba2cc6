// Package nodetest has what tests and benchmarks that start lab/realnode
// nodes against a test API server share: pointing a node's kubeconfig at
// the host end of its veth, running build steps, and waiting on a
// condition with a deadline.
package nodetest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// PointAt makes the kubeconfig at path reach the API server on hostIP (the
// host end of the node's veth), keeping its port; the test API server's
// serving certificate names localhost.
func PointAt(path, hostIP string) error {
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return err
	}
	for _, c := range kc.Clusters {
		i := strings.LastIndex(c.Server, ":")
		c.Server = "https://" + hostIP + c.Server[i:]
		c.TLSServerName = "localhost"
	}
	return clientcmd.WriteToFile(*kc, path)
}

// WaitFor polls check every 100 ms until it returns nil, and fails tb if it
// has not after 3 minutes or once ctx ends.
func WaitFor(ctx context.Context, tb testing.TB, what string, check func() error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("%s: not after 3m: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Run runs a build step (CGO off) in dir and fails tb with its output if it
// fails.
func Run(tb testing.TB, dir, name string, args ...string) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Must fails tb on err.
func Must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
