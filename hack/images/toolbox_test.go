package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berthnet/berth/test/netnstest"
)

// TestToolboxImage builds the toolbox from Debian's busybox-static: busybox
// and its applets' links, root, `sleep infinity` as its command, the
// package's version in a label; as root it runs the image's shell and ping
// in a chroot of the image, in a network namespace of the test's.
func TestToolboxImage(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatalf("no /bin/busybox: install Debian's busybox-static (hack/debian-deps.sh): %v", err)
	}
	o := labOptions(t, "toolbox")
	o.Busybox = "/bin/busybox"
	built := buildTwice(t, o)
	b := built[0]
	if b.Ref != "berth.dev/lab/toolbox:lab" {
		t.Errorf("ref %s, want berth.dev/lab/toolbox:lab", b.Ref)
	}
	img, cf := readLab(t, b, 2)
	wantCmd := []string{"/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"}
	if len(cf.Config.Entrypoint) != 0 || !slices.Equal(cf.Config.Cmd, wantCmd) || cf.Config.User != "0:0" {
		t.Errorf("entrypoint %q cmd %q user %q, want none, %q, 0:0", cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.User, wantCmd)
	}
	version, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "busybox-static").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Config.Labels["dev.berth.lab.busybox.version"]; got == "" || got != string(version) ||
		cf.Config.Labels["dev.berth.lab.busybox.package"] != "busybox-static" {
		t.Errorf("busybox labels %v, want package busybox-static version %s", cf.Config.Labels, version)
	}
	root := extractWith(t, img, unpackOptions{links: true})
	got := files(t, root)
	for _, want := range []string{
		"/bin/busybox", "/bin/sh -> busybox", "/bin/ping -> busybox", "/bin/ping6 -> busybox",
		"/bin/nslookup -> busybox", "/bin/wget -> busybox", "/bin/nc -> busybox", "/bin/ip -> busybox",
		"/bin/sleep -> busybox", "/bin/cat -> busybox", "/bin/ls -> busybox", "/bin/ps -> busybox",
		"/bin/hostname -> busybox", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("the toolbox has no %s", want)
		}
	}
	if len(got) != 4+len(ToolboxApplets) {
		t.Errorf("the toolbox holds %d entries, want busybox, %d links, /etc/passwd, /etc/group and /etc/nsswitch.conf: %q", len(got), len(ToolboxApplets), got)
	}
	// Static glibc's resolver reads it (files, then DNS).
	if b, err := os.ReadFile(filepath.Join(root, "etc/nsswitch.conf")); err != nil || string(b) != "hosts: files dns\n" {
		t.Errorf("/etc/nsswitch.conf: %q %v, want \"hosts: files dns\"", b, err)
	}
	for dir, mode := range map[string]os.FileMode{"tmp": os.ModeDir | os.ModeSticky | 0o777, "root": os.ModeDir | 0o700} {
		if fi, err := os.Stat(filepath.Join(root, dir)); err != nil || fi.Mode() != mode {
			t.Errorf("/%s: %v %v, want mode %v", dir, fi.Mode(), err, mode)
		}
	}

	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	box := inImage{root: root, ns: ns}
	if out := box.output(t, "/bin/sh", "-c", "echo ok"); out != "ok\n" {
		t.Errorf("sh -c 'echo ok' printed %q", out)
	}
	// Root in the image opens ping's raw socket: one echo over loopback.
	if out := box.output(t, "/bin/ping", "-c", "1", "-W", "10", "127.0.0.1"); !strings.Contains(out, "1 packets received") {
		t.Errorf("ping 127.0.0.1 in the image: %s", out)
	}
	// The image's command, as PID 1 of a PID namespace as in a container,
	// runs until SIGTERM and then ends at once with status 0 (a bare
	// `sleep infinity` as PID 1 ignores SIGTERM: the kubelet would wait out
	// the grace period). Signal it once its shell handles SIGTERM.
	// The runtime gives a container /dev; the shell's background job reads
	// /dev/null.
	if err := os.Mkdir(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	srv := inImage{root: root, ns: ns, pid1: true}.serve(t, cf.Config.Cmd...)
	eventually(t, "the toolbox's shell handles SIGTERM", func() error {
		select {
		case err := <-srv.done:
			t.Fatalf("%q ended by itself: %v: %s", cf.Config.Cmd, err, srv.out.String())
		default:
		}
		status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(srv.cmd.Process.Pid), "status"))
		if err != nil || !sigCaught(string(status), syscall.SIGTERM) {
			return fmt.Errorf("no SIGTERM handler yet (%v)", err)
		}
		return nil
	})
	srv.stop(t)

	o.Busybox = "/bin/bash" // Debian's, but not busybox-static
	if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "comes from Debian's bash, not busybox-static") {
		t.Errorf("busybox from bash: %v", err)
	}
	o.Busybox = filepath.Join(t.TempDir(), "busybox") // from no package
	if err := os.WriteFile(o.Busybox, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "belongs to no Debian package") {
		t.Errorf("busybox from no package: %v", err)
	}
}
