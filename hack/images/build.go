package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Defaults of the image names and of the source label.
const (
	DefaultRegistry = "ghcr.io/berthnet"
	DefaultSource   = "https://github.com/berthnet/berth"
)

// The paths and users the images share with build/Dockerfile and the chart.
const (
	binPath = "/usr/local/bin"
	// NonRoot is distroless's nonroot user, which the controller runs as.
	NonRoot = "65532:65532"
	// Root is the agent's user: it programs the host's network (NET_ADMIN)
	// and writes the CNI plugin and its config into host folders.
	Root    = "0:0"
	envPath = "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Options say what to build from and where to.
type Options struct {
	BinDir   string
	OutDir   string
	Registry string
	Version  string
	Revision string
	Source   string
	Arch     string
	// Created stamps the image config and every file, so the same inputs
	// give the same digest.
	Created time.Time
	// Images names the images to build; empty: DefaultImages. "pause" (the
	// lab nodes' sandbox image, from the static berth-pause) is built only
	// when named.
	Images []string
}

// DefaultImages are the images `make images` ships.
var DefaultImages = []string{"berth-controller", "berth-agent"}

// Built is one image written.
type Built struct {
	Name   string
	Ref    string
	Path   string
	Digest v1.Hash
}

// file is one regular file of a layer, read from the host.
type file struct {
	path string // in the image, absolute
	src  string // on the host; symbolic links are followed
	data []byte // instead of src
	mode int64
}

// imageSpec describes one image.
type imageSpec struct {
	name        string
	description string
	entrypoint  []string
	user        string
	// layers, bottom first; each is a list of files.
	layers [][]file
	// bins are the static binaries of BinDir the image holds.
	bins []string
}

// specs lists the images. berth-cni has no image of its own: nothing runs
// it as a container; the agent copies it from its image onto the host.
func specs(o Options) ([]imageSpec, error) {
	bin := func(n string) file {
		return file{path: path.Join(binPath, n), src: filepath.Join(o.BinDir, n), mode: 0o755}
	}
	all := []imageSpec{{
		name:        "berth-controller",
		description: "Berth controller: LoadBalancer IPAM, Gateway API and Ingress over xDS, Envoy fleets",
		entrypoint:  []string{path.Join(binPath, "berth-controller")},
		user:        NonRoot,
		layers:      [][]file{baseFiles(), {bin("berth-controller")}},
		bins:        []string{"berth-controller"},
	}, {
		name:        "berth-agent",
		description: "Berth node agent: pod network and CNI plugin, service proxy, NetworkPolicy, L2 and BGP announcements",
		entrypoint:  []string{path.Join(binPath, "berth-agent")},
		user:        Root,
		// Static binaries only: the agent programs nftables over netlink
		// and runs no other program.
		layers: [][]file{{bin("berth-agent"), bin("berth-cni")}},
		bins:   []string{"berth-agent", "berth-cni"},
	}, {
		name:        "pause",
		description: "Berth lab pod sandbox: sleeps until SIGTERM and reaps orphans (build/pause)",
		entrypoint:  []string{path.Join(binPath, "berth-pause")},
		user:        NonRoot,
		layers:      [][]file{{bin("berth-pause")}},
		bins:        []string{"berth-pause"},
	}}
	want := o.Images
	if len(want) == 0 {
		want = DefaultImages
	}
	var out []imageSpec
	for _, w := range want {
		i := slices.IndexFunc(all, func(s imageSpec) bool { return s.name == w })
		if i < 0 {
			return nil, fmt.Errorf("no image %q: choose among berth-controller, berth-agent, pause", w)
		}
		for _, n := range all[i].bins {
			if err := checkStatic(filepath.Join(o.BinDir, n), o.Arch); err != nil {
				return nil, fmt.Errorf("%w (build them with `make build`, which sets CGO_ENABLED=0; berth-pause with `CGO_ENABLED=0 go build -o bin/berth-pause ./build/pause`)", err)
			}
		}
		out = append(out, all[i])
	}
	return out, nil
}

// baseFiles is what of distroless/static:nonroot, the controller's base in
// build/Dockerfile, a tool may look for: names for its users.
func baseFiles() []file {
	return []file{
		{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
	}
}

// Build writes one tarball per image into o.OutDir.
func Build(o Options) ([]Built, error) {
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0).UTC()
	}
	specs, err := specs(o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	var out []Built
	for _, s := range specs {
		ref, err := name.NewTag(o.Registry + "/" + s.name + ":" + o.Version)
		if err != nil {
			return nil, fmt.Errorf("image name: %w (check -registry and -version)", err)
		}
		img, err := s.image(o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		p := filepath.Join(o.OutDir, s.name+".tar")
		if err := writeArchive(p, ref, img); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		out = append(out, Built{Name: s.name, Ref: ref.String(), Path: p, Digest: d})
	}
	return out, nil
}

func (s imageSpec) image(o Options) (v1.Image, error) {
	created := v1.Time{Time: o.Created}
	labels := map[string]string{
		"org.opencontainers.image.title":       s.name,
		"org.opencontainers.image.description": s.description,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.source":      o.Source,
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: o.Arch,
		OS:           "linux",
		Created:      created,
		Config: v1.Config{
			Entrypoint: s.entrypoint,
			User:       s.user,
			Env:        []string{envPath},
			WorkingDir: "/",
			Labels:     labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	for i, files := range s.layers {
		data, err := layerTar(files, o.Created)
		if err != nil {
			return nil, err
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{
			Created:   created,
			CreatedBy: fmt.Sprintf("berth hack/images: layer %d: %s", i, layerSummary(files)),
			Comment:   "built from scratch without a Docker engine",
		}})
		if err != nil {
			return nil, err
		}
	}
	return mutate.Annotations(img, map[string]string{
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.source":   o.Source,
	}).(v1.Image), nil
}

func layerSummary(files []file) string {
	var names []string
	for _, f := range files {
		names = append(names, f.path)
	}
	return strings.Join(names, " ")
}

// layerTar makes a layer's tar: the files and their parent folders, sorted,
// owned by root, every time set to mtime, so it depends on contents alone.
func layerTar(files []file, mtime time.Time) ([]byte, error) {
	dirs := map[string]bool{}
	byPath := map[string]file{}
	for _, f := range files {
		if _, dup := byPath[f.path]; dup {
			return nil, fmt.Errorf("%s twice in one layer", f.path)
		}
		byPath[f.path] = f
		for d := path.Dir(f.path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	for p := range byPath {
		names = append(names, p)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		hdr := &tar.Header{Name: strings.TrimPrefix(n, "/"), ModTime: mtime, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		if dirs[n] {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
			continue
		}
		f := byPath[n]
		data := f.data
		if data == nil {
			var err error
			if data, err = os.ReadFile(f.src); err != nil {
				return nil, err
			}
		}
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, f.mode, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// elfMachines maps GOARCH to the ELF machine its binaries have.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM,
	"ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
}

// checkStatic fails unless p is a statically linked Linux executable for
// arch: an image from scratch has no C library to load.
func checkStatic(p, arch string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	if m, ok := elfMachines[arch]; !ok || f.Machine != m {
		return fmt.Errorf("%s: built for %s, not %s", p, f.Machine, arch)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("%s is dynamically linked", p)
		}
	}
	return nil
}
