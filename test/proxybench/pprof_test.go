package proxybench

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
)

// pprofDir is $BERTH_PROXYBENCH_PPROF: when set, Berth's agent serves
// pprof in its namespace and the benchmark saves a heap profile after the
// full sync and a CPU profile across the two changes there.
func pprofDir() string { return os.Getenv("BERTH_PROXYBENCH_PPROF") }

const pprofAddr = "127.0.0.1:6060"

// fetchProfile saves the profile at path (e.g. "heap", "profile?seconds=5")
// of the agent in ns to dir/name.
func fetchProfile(b *testing.B, ns *netns.Namespace, path, name string) {
	b.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = ns.Do(func() error {
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Get("http://" + pprofAddr + "/debug/pprof/" + path)
	if err != nil {
		b.Logf("pprof %s: %v", path, err)
		return
	}
	defer resp.Body.Close()
	out, err := os.Create(filepath.Join(pprofDir(), name))
	if err != nil {
		b.Logf("pprof %s: %v", path, err)
		return
	}
	defer out.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		b.Logf("pprof %s: %v", path, err)
	}
}
