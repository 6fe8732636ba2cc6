package gwbench

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/test/proctest"
)

// freePort is a loopback host:port nobody listens on now.
func freePort(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// controllerBinary is $BERTH_GWBENCH_CONTROLLER, or berth-controller built
// from this checkout the way `make build` builds it.
func controllerBinary(b *testing.B) string {
	return proctest.Build(b, "./cmd/berth-controller", "BERTH_GWBENCH_CONTROLLER")
}

// proc is berth-controller running as a process of its own.
type proc struct {
	*proctest.Proc
	pprof   string // host:port, "" when off
	metrics string // host:port
}

// startController runs berth-controller against the cluster with its xDS
// server on xdsAddr, and returns it with the time just before the start.
// It is stopped, and its log shown on failure, when b ends (or by stop).
func startController(b *testing.B, bin string, c *cluster, xdsAddr, name string, pprof bool) (*proc, time.Time) {
	b.Helper()
	host, _, err := net.SplitHostPort(xdsAddr)
	if err != nil {
		b.Fatal(err)
	}
	p := &proc{metrics: freePort(b)}
	args := []string{
		"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--namespace", controllerNS,
		"--xds-bind-address", xdsAddr, "--xds-address", xdsAddr, "--xds-server-names", host,
		"--metrics-bind-address", p.metrics, "--health-probe-bind-address", freePort(b),
	}
	if pprof {
		p.pprof = freePort(b)
		args = append(args, "--pprof-bind-address", p.pprof)
	}
	var start time.Time
	p.Proc, start = proctest.Start(b, "berth-controller ("+name+")", exec.Command(bin, args...))
	return p, start
}

// cpu is the controller's CPU time so far (user and system).
func (p *proc) cpu(b *testing.B) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		b.Fatalf("controller CPU: %v", err)
	}
	// The fields after the command name, which ends with the last ')'.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// utime and stime are fields 14 and 15 of stat, 12 and 13 here.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("controller /proc/%d/stat: %q", p.Cmd.Process.Pid, s)
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// settle waits until the controller has used under 5% of a core for a
// second (at most two minutes): its syncs and status writes are done, so a
// change is not measured behind work already under way.
func (p *proc) settle(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	last, lastAt := p.cpu(b), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		p.Alive(b)
		if time.Since(lastAt) < time.Second {
			continue
		}
		now := p.cpu(b)
		if float64(now-last) < 0.05*float64(time.Since(lastAt)) {
			return
		}
		last, lastAt = now, time.Now()
	}
	b.Logf("berth-controller still busy after two minutes")
}

// profile saves the controller's pprof profile at path (e.g. "heap",
// "profile?seconds=5") to dir/name.
func (p *proc) profile(b *testing.B, dir, path, name string) {
	// The server may not listen yet when the process has just started.
	var (
		resp *http.Response
		err  error
	)
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err = (&http.Client{Timeout: time.Minute}).Get("http://" + p.pprof + "/debug/pprof/" + path)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		b.Logf("pprof %s: %v", path, err)
		return
	}
	defer resp.Body.Close()
	out, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		b.Logf("pprof %s: %v", path, err)
		return
	}
	defer out.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		b.Logf("pprof %s: %v", path, err)
	}
}
