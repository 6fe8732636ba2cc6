package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Command prepares a command that runs inside the namespace.
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if n.Name == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	cmd := EnterCommand(n.Path(), name, args...)
	return exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
}

// EnterCommand prepares a command that runs in the network namespace at
// nsPath and nothing else: unlike `ip netns exec` it keeps the caller's
// mount namespace, so namespaces the command creates are visible to all.
// nsenter execs the command in place: the pid is the command's own.
func EnterCommand(nsPath, name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + nsPath, "--", name}, args...)...)
}

// Pids lists the processes whose network namespace is this one.
func (n *Namespace) Pids() ([]int, error) {
	return pidsIn(n.Path())
}

func pidsIn(nsPath string) ([]int, error) {
	want, err := os.Stat(nsPath)
	if err != nil {
		return nil, err
	}
	wst := want.Sys().(*syscall.Stat_t)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fi, err := os.Stat(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Dev == wst.Dev && st.Ino == wst.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killAll ends the processes in the namespace at nsPath: SIGTERM, then SIGKILL
// for those still there after a grace period.
func killAll(nsPath string) error {
	pids, err := pidsIn(nsPath)
	if err != nil || len(pids) == 0 {
		return err
	}
	return Terminate(pids, 5*time.Second)
}

// Terminate sends SIGTERM to each process, waits up to grace for them to exit,
// then sends SIGKILL to the rest and waits for them to go.
func Terminate(pids []int, grace time.Duration) error {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if waitGone(pids, grace) {
		return nil
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if waitGone(pids, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("processes %v did not exit after SIGKILL", alive(pids))
}

func waitGone(pids []int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if len(alive(pids)) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pids []int) []int {
	var out []int
	for _, pid := range pids {
		if Alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// Alive reports whether a process exists and is not a zombie.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] != 'Z'
		}
	}
	return true
}
