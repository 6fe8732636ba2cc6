package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPauseImage builds the lab nodes' sandbox image from build/pause: one
// layer with the static berth-pause as entrypoint, which sleeps until SIGTERM
// and then exits 0. Only named images are built; an unknown name is refused.
func TestPauseImage(t *testing.T) {
	bins := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(bins, "berth-pause"), "../../build/pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build berth-pause: %v\n%s", err, out)
	}
	o := Options{BinDir: bins, OutDir: t.TempDir(), Registry: "berth.test", Version: testVersion, Arch: runtime.GOARCH, Images: []string{"pause"}}
	built, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != 1 || built[0].Ref != "berth.test/pause:"+testVersion {
		t.Fatalf("built %+v, want berth.test/pause:%s alone", built, testVersion)
	}
	img := readBoth(t, built[0], 1)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/usr/local/bin/berth-pause" || cf.Config.User != NonRoot {
		t.Errorf("entrypoint %q user %q, want /usr/local/bin/berth-pause as %s", got, cf.Config.User, NonRoot)
	}
	root := extract(t, img)
	p := exec.Command(filepath.Join(root, "usr/local/bin/berth-pause"))
	stderr, err := p.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	// It keeps running until told to stop; SIGTERM then ends it cleanly.
	// It says when its handler is in place: a SIGTERM before that would
	// end it by the runtime's default action (the Go runtime catches every
	// signal from the start, so /proc's SigCgt cannot tell).
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stderr).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stderr)
	}()
	deadline := time.After(time.Minute)
	select {
	case line := <-ready:
		if line != "berth-pause: waiting for SIGTERM or SIGINT\n" {
			t.Fatalf("berth-pause said %q before its handler was ready", line)
		}
	case <-deadline:
		t.Fatal("berth-pause never said it was waiting")
	}
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	_ = p.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("berth-pause after SIGTERM: %v, want exit 0", err)
		}
	case <-deadline:
		t.Fatal("berth-pause still running after SIGTERM")
	}

	o.Images = []string{"pause", "busybox"}
	if _, err := Build(o); err == nil || !strings.Contains(err.Error(), `no image "busybox"`) {
		t.Errorf("unknown image: %v, want no image \"busybox\"", err)
	}
}

// sigCaught reads the SigCgt mask of /proc/PID/status.
func sigCaught(status string, sig syscall.Signal) bool {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}
