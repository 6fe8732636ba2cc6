package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testVersion = "v1.2.3-imagetest"

// TestImages builds the real binaries, builds the images twice from them
// and reads the tarballs back, both as an OCI layout and as a
// docker-archive, then runs what is inside.
func TestImages(t *testing.T) {
	bins := buildBinaries(t)
	opts := func() Options {
		return Options{
			BinDir: bins, OutDir: t.TempDir(), Registry: "registry.example/berth", Version: testVersion,
			Revision: "0123456789abcdef", Source: DefaultSource, Arch: runtime.GOARCH,
			Created: time.Unix(1700000000, 0).UTC(),
		}
	}
	first, err := Build(opts())
	if err != nil {
		t.Fatal(err)
	}
	second, err := Build(opts())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("reproducible", func(t *testing.T) {
		if len(first) != 2 || len(second) != 2 {
			t.Fatalf("built %d and %d images, want 2 each", len(first), len(second))
		}
		for i := range first {
			if first[i].Digest != second[i].Digest {
				t.Errorf("%s: digest %s then %s from the same inputs", first[i].Name, first[i].Digest, second[i].Digest)
			}
			if a, b := fileSum(t, first[i].Path), fileSum(t, second[i].Path); a != b {
				t.Errorf("%s: tarballs differ (sha256 %x and %x)", first[i].Name, a, b)
			}
		}
	})

	want := map[string]struct {
		user   string
		entry  string
		layers int
	}{
		"berth-controller": {NonRoot, "/usr/local/bin/berth-controller", 2},
		"berth-agent":      {Root, "/usr/local/bin/berth-agent", 1},
	}
	for _, b := range first {
		t.Run(b.Name, func(t *testing.T) {
			w, ok := want[b.Name]
			if !ok {
				t.Fatalf("unexpected image %s", b.Name)
			}
			if b.Ref != "registry.example/berth/"+b.Name+":"+testVersion {
				t.Errorf("ref %s", b.Ref)
			}
			img := readBoth(t, b, w.layers)
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
				t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
			}
			if !slices.Equal(cfg.Config.Entrypoint, []string{w.entry}) {
				t.Errorf("entrypoint %q, want [%s]", cfg.Config.Entrypoint, w.entry)
			}
			if cfg.Config.User != w.user {
				t.Errorf("user %q, want %q", cfg.Config.User, w.user)
			}
			for k, v := range map[string]string{
				"org.opencontainers.image.version":  testVersion,
				"org.opencontainers.image.revision": "0123456789abcdef",
				"org.opencontainers.image.source":   DefaultSource,
				"org.opencontainers.image.title":    b.Name,
			} {
				if got := cfg.Config.Labels[k]; got != v {
					t.Errorf("label %s = %q, want %q", k, got, v)
				}
			}
			if !slices.Contains(cfg.Config.Env, envPath) {
				t.Errorf("env %q has no %s", cfg.Config.Env, envPath)
			}
			if !cfg.Created.Time.Equal(time.Unix(1700000000, 0)) {
				t.Errorf("created %s", cfg.Created.Time)
			}

			root := extract(t, img)
			entry := filepath.Join(root, w.entry)
			if err := checkStatic(entry, runtime.GOARCH); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(entry, "--version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), b.Name+" "+testVersion+" (commit imagetest") {
				t.Errorf("%s --version: %v: %s", w.entry, err, out)
			}
			if b.Name != "berth-agent" {
				return
			}
			checkCNI(t, root)
			checkAgentAlone(t, root)
		})
	}
}

// TestImagesRefuse: a dynamically linked binary stops the build with a
// message that says what to do, and leaves nothing behind.
func TestImagesRefuse(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, err := os.ReadFile(sh) // a dynamically linked executable at hand
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"berth-controller", "berth-agent", "berth-cni"} {
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{BinDir: dir, OutDir: t.TempDir(), Registry: DefaultRegistry, Version: testVersion, Arch: runtime.GOARCH}
	_, err = Build(o)
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("dynamic binaries: err = %v", err)
	}
	if entries, _ := os.ReadDir(o.OutDir); len(entries) != 0 {
		t.Errorf("a failed build left %d files in the output folder", len(entries))
	}
}

// buildBinaries builds the three binaries as `make build` does, with a
// test version stamped in.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	const mod = "github.com/berthnet/berth/internal/version"
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X "+mod+".version="+testVersion+" -X "+mod+".commit=imagetest",
		"-o", dir+"/", "../../cmd/berth-controller", "../../cmd/berth-agent", "../../cmd/berth-cni")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return dir
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// readBoth reads the tarball as a docker-archive and, unpacked, as an OCI
// layout; both must give the image that was built.
func readBoth(t *testing.T, b Built, layers int) v1.Image {
	t.Helper()
	docker, err := tarball.ImageFromPath(b.Path, nil)
	if err != nil {
		t.Fatalf("as a docker-archive: %v", err)
	}
	dir := t.TempDir()
	untar(t, b.Path, dir)
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatalf("as an OCI layout: %v", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["io.containerd.image.name"] != b.Ref ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != b.Ref[strings.LastIndex(b.Ref, ":")+1:] {
		t.Fatalf("index.json: %+v", im.Manifests)
	}
	oci, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	for what, img := range map[string]v1.Image{"OCI layout": oci} {
		d, err := img.Digest()
		if err != nil || d != b.Digest {
			t.Errorf("%s: digest %s (%v), built %s", what, d, err, b.Digest)
		}
	}
	// A docker-archive has no manifest of its own: compare what it loads.
	dc, err := docker.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	oc, err := oci.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dc, oc) {
		t.Errorf("the docker-archive's config differs from the OCI layout's")
	}
	dl, err := docker.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ol, err := oci.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != len(ol) || len(ol) != layers {
		t.Fatalf("layers: %d in the docker-archive, %d in the OCI layout, want %d", len(dl), len(ol), layers)
	}
	for i := range ol {
		a, _ := dl[i].DiffID()
		b, _ := ol[i].DiffID()
		if a != b {
			t.Errorf("layer %d: diff ID %s in the docker-archive, %s in the OCI layout", i, a, b)
		}
	}
	return oci
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unpack(t, f, dir)
}

// extract unpacks the image's file system (every layer, in order). The
// images hold only folders and files, but for the toolbox's links.
func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	return extractWith(t, img, unpackOptions{})
}

// unpackOptions widen what unpack accepts, for the images that need it.
type unpackOptions struct {
	// links accepts symbolic links that stay inside the image: the toolbox
	// links busybox's applets (sh, ping, ...) to it, as Debian's busybox
	// does when it installs them.
	links bool
	// xattrs sets the entries' extended attributes (root only), so that
	// CoreDNS's file capability works in the unpacked tree.
	xattrs bool
}

func extractWith(t *testing.T, img v1.Image, o unpackOptions) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	dir := t.TempDir()
	unpackWith(t, rc, dir, o)
	return dir
}

func unpack(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	unpackWith(t, r, dir, unpackOptions{})
}

func unpackWith(t *testing.T, r io.Reader, dir string, o unpackOptions) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("entry %q leaves the folder", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err = os.MkdirAll(p, 0o755); err == nil {
				err = os.Chmod(p, hdr.FileInfo().Mode())
			}
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				var data []byte
				if data, err = io.ReadAll(tr); err == nil {
					err = os.WriteFile(p, data, hdr.FileInfo().Mode().Perm())
				}
			}
		case tar.TypeSymlink:
			if !o.links {
				t.Fatalf("entry %q is a symbolic link: the images hold only folders and files (the toolbox excepted)", hdr.Name)
			}
			target := filepath.Join(filepath.Dir(p), hdr.Linkname)
			if filepath.IsAbs(hdr.Linkname) || !strings.HasPrefix(target, dir+string(filepath.Separator)) {
				t.Fatalf("link %q -> %q leaves the image", hdr.Name, hdr.Linkname)
			}
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.Symlink(hdr.Linkname, p)
			}
		default:
			t.Fatalf("entry %q of type %c: the images hold only folders, files and the toolbox's links", hdr.Name, hdr.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr.PAXRecords {
			name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
			if !ok {
				continue
			}
			if !o.xattrs {
				t.Fatalf("entry %q has extended attribute %s: only CoreDNS's binary has one", hdr.Name, name)
			}
			if err := syscall.Setxattr(p, name, []byte(v), 0); err != nil {
				t.Fatalf("%s: set %s: %v", hdr.Name, name, err)
			}
		}
	}
}

// checkCNI: the agent image carries berth-cni next to the agent, where
// --cni-plugin-source looks by default, and it answers a runtime's VERSION.
func checkCNI(t *testing.T, root string) {
	t.Helper()
	p := filepath.Join(root, "usr/local/bin/berth-cni")
	if err := checkStatic(p, runtime.GOARCH); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p)
	cmd.Env = []string{"CNI_COMMAND=VERSION"}
	cmd.Stdin = strings.NewReader(`{"cniVersion":"1.1.0"}`)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("berth-cni VERSION: %v", err)
	}
	var v struct {
		Supported []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(out, &v); err != nil || !slices.Contains(v.Supported, "1.1.0") {
		t.Errorf("berth-cni VERSION: %v: %s", err, out)
	}
}

// checkAgentAlone: the agent image holds its two static binaries and
// nothing else (no nft, no shared library: it programs nftables over
// netlink), and the agent starts inside the image's file system alone
// (chroot, so nothing of this machine can be loaded).
func checkAgentAlone(t *testing.T, root string) {
	t.Helper()
	var files []string
	if err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, strings.TrimPrefix(p, root))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	if want := []string{"/usr/local/bin/berth-agent", "/usr/local/bin/berth-cni"}; !slices.Equal(files, want) {
		t.Errorf("the agent image holds %q, want %q", files, want)
	}
	if os.Geteuid() != 0 {
		t.Skip("running the image's agent in a chroot needs root")
	}
	cmd := exec.Command("/usr/local/bin/berth-agent", "--version")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{envPath}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "berth-agent "+testVersion) {
		t.Errorf("berth-agent --version in the image: %v: %s", err, out)
	}
}
