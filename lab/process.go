package lab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/berthnet/berth/lab/logtail"
	"github.com/berthnet/berth/lab/netns"
)

// procSpec is a long-running process to start for the lab.
type procSpec struct {
	name  string
	netns string // empty: the host namespace
	path  string
	args  []string
}

// startProcess starts spec detached from this process (own session, output
// to its log file), so it outlives `berthctl lab up`.
func (c Config) startProcess(spec procSpec) (Process, error) {
	logPath := c.logFile(spec.name)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Process{}, err
	}
	defer logf.Close()
	var cmd *exec.Cmd
	if spec.netns == "" {
		cmd = exec.Command(spec.path, spec.args...)
	} else {
		cmd = netns.EnterCommand(filepath.Join(netns.Dir, spec.netns), spec.path, spec.args...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = c.StateDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("start %s: %w", spec.name, err)
	}
	p := Process{Name: spec.name, Pid: cmd.Process.Pid, Netns: spec.netns, Log: logPath}
	// Reap it if it dies while we are still running, so it does not linger
	// as a zombie that looks alive.
	go func() { _ = cmd.Wait() }()
	return p, nil
}

// ours reports whether pid is a live process started for the lab whose state
// folder is dir: every one of them names that folder on its command line.
func ours(pid int, dir string) bool {
	if !netns.Alive(pid) {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte(dir+"/"))
}

// strays lists live processes, other than this one, whose command line names
// the lab's state folder: what a crashed `up` may have left unrecorded.
func strays(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if ours(pid, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// portFree checks that nothing listens on a loopback TCP port.
func portFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

// waitFor polls check until it succeeds, the process dies, or the deadline
// passes; the error then carries the end of the process's log.
func waitFor(ctx context.Context, p Process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		if !netns.Alive(p.Pid) {
			return fmt.Errorf("%s exited: %v\n%s", p.Name, last, logtail.Lines(p.Log, 20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy after %s: %v\n%s", p.Name, timeout, last, logtail.Lines(p.Log, 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
