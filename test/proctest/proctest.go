// Package proctest runs the component a system benchmark measures as a
// process of its own (so its memory and CPU can be read from /proc), with
// its output in a log shown when the benchmark fails.
package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthnet/berth/test/kubetest"
)

// Build returns $env when set, else the command package pkg (e.g.
// "./cmd/berth-agent") built from this checkout as `make build` builds it.
func Build(tb testing.TB, pkg, env string) string {
	tb.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	root, err := kubetest.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(tb.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// Proc is a running process.
type Proc struct {
	Name   string
	Cmd    *exec.Cmd
	Log    string
	exited chan struct{}
	err    error
}

// Start starts cmd (not started yet) with its output in a log file, and
// returns it with the time just before the start. It is stopped, and the
// end of its log shown on failure, when tb ends.
func Start(tb testing.TB, name string, cmd *exec.Cmd) (*Proc, time.Time) {
	tb.Helper()
	p := &Proc{Name: name, Cmd: cmd, Log: filepath.Join(tb.TempDir(), name+".log"), exited: make(chan struct{})}
	f, err := os.Create(p.Log)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	start := time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("%s log, last lines:\n%s", name, p.Tail(40))
		}
	})
	return p, start
}

// Alive fails tb when the process has exited.
func (p *Proc) Alive(tb testing.TB) {
	tb.Helper()
	select {
	case <-p.exited:
		tb.Fatalf("%s exited: %v\n%s", p.Name, p.err, p.Tail(40))
	default:
	}
}

// Stop sends SIGTERM, and SIGKILL after 10 s, and waits for the exit.
func (p *Proc) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.exited
	}
}

// MemMiB is a /proc/PID/status figure (VmRSS, VmHWM) in MiB.
func (p *Proc) MemMiB(tb testing.TB, field string) float64 {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		tb.Fatalf("%s memory: %v", p.Name, err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				tb.Fatalf("%s %s: %v", p.Name, line, err)
			}
			return kb / 1024
		}
	}
	tb.Fatalf("%s: no %s in /proc/%d/status", p.Name, field, p.Cmd.Process.Pid)
	return 0
}

// Tail is the last n lines of the log.
func (p *Proc) Tail(n int) string {
	raw, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
