package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berthnet/berth/lab/netns"
)

// labOptions are the options of the lab images' tests.
func labOptions(t *testing.T, images ...string) Options {
	return Options{
		OutDir: t.TempDir(), Registry: "registry.example/berth", Version: testVersion,
		Revision: "0123456789abcdef", Source: DefaultSource, Arch: runtime.GOARCH,
		Created: time.Unix(1700000000, 0).UTC(), Images: images,
	}
}

// buildTwice builds o's images twice, into two folders, and checks that
// the same inputs gave the same digests and the same tarball bytes.
func buildTwice(t *testing.T, o Options) []Built {
	t.Helper()
	first, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	o.OutDir = t.TempDir()
	second, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(o.Images) || len(second) != len(o.Images) {
		t.Fatalf("built %d and %d images, want %d each", len(first), len(second), len(o.Images))
	}
	for i := range first {
		if first[i].Digest != second[i].Digest {
			t.Errorf("%s: digest %s then %s from the same inputs", first[i].Name, first[i].Digest, second[i].Digest)
		}
		if a, b := fileSum(t, first[i].Path), fileSum(t, second[i].Path); a != b {
			t.Errorf("%s: tarballs differ (sha256 %x and %x)", first[i].Name, a, b)
		}
	}
	return first
}

// readLab reads a lab image's tarball both ways (readBoth) and its config.
func readLab(t *testing.T, b Built, layers int) (v1.Image, *v1.ConfigFile) {
	t.Helper()
	img := readBoth(t, b, layers)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !cf.Created.Time.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("%s: platform %s/%s created %s", b.Name, cf.OS, cf.Architecture, cf.Created.Time)
	}
	return img, cf
}

// files lists the image's entries, folders left out: files as their path,
// links as "path -> target".
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		name := p[len(root):]
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			name += " -> " + target
		}
		out = append(out, name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// inImage prepares argv to run inside root (chroot) as uid:gid, in ns when
// it is not nil, with nothing in its environment but env.
type inImage struct {
	root     string
	uid, gid uint32
	ns       *netns.Namespace
	env      []string
	// pid1 starts it as PID 1 of a PID namespace of its own, as in a
	// container: the kernel gives it only the signals it handles.
	pid1 bool
}

func (c inImage) command(argv ...string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: c.root, Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid}}
	if c.pid1 {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	}
	cmd.Dir = "/"
	cmd.Env = append([]string{envPath}, c.env...)
	return cmd
}

// output runs argv to its end and returns what it printed.
func (c inImage) output(t *testing.T, argv ...string) string {
	t.Helper()
	cmd := c.command(argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := c.start(cmd); err != nil {
		t.Fatalf("%q in the image: %v", argv, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%q in the image: %v: %s", argv, err, out.String())
	}
	return out.String()
}

// start starts cmd; a child forks from the thread that starts it, so inside
// ns.Do it is born in the namespace.
func (c inImage) start(cmd *exec.Cmd) error {
	if err := os.Chmod(c.root, 0o755); err != nil { // t.TempDir's 0700 keeps out any user but root
		return err
	}
	if c.ns == nil {
		return cmd.Start()
	}
	return c.ns.Do(cmd.Start)
}

// served is a program started in the image.
type served struct {
	argv []string
	cmd  *exec.Cmd
	done chan error
	out  bytes.Buffer
}

// serve starts argv in the image; the test's end kills it if it still runs.
func (c inImage) serve(t *testing.T, argv ...string) *served {
	t.Helper()
	s := &served{argv: argv, cmd: c.command(argv...), done: make(chan error, 1)}
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := c.start(s.cmd); err != nil {
		t.Fatalf("%q in the image: %v", argv, err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { _ = s.cmd.Process.Kill() }) // ErrProcessDone once it ended
	return s
}

// stop sends SIGTERM: the program must end, with status 0, within a
// deadline.
func (s *served) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("%q: SIGTERM: %v", s.argv, err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("%q after SIGTERM: %v, want exit status 0; it printed: %s", s.argv, err, s.out.String())
		}
	case <-time.After(time.Minute):
		t.Errorf("%q still runs a minute after SIGTERM", s.argv)
	}
}

// eventually calls try until it succeeds, failing the test with its last
// error after 30 seconds (a program in the image starting up).
func eventually(t *testing.T, what string, try func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
