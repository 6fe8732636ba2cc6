package lab

import (
	"context"
	"os/exec"
	"runtime"
	"syscall"
)

// childCommand is a short-lived tool the lab runs while it works (helm,
// kubectl). It dies with the berthctl that started it: a `lab up` killed
// half-way leaves no helm install running against a lab that `lab down`
// is removing. The thread that starts it stays locked for the child's
// lifetime, as the parent-death signal is tied to that thread.
func childCommand(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// runChild runs cmd (from childCommand) to its end and returns its
// combined output, on a thread locked for that time.
func runChild(cmd *exec.Cmd) ([]byte, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.CombinedOutput()
}
