package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
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
	// Images names the images to build; empty: DefaultImages; "all": every
	// image (AllImages). The pause, echo, toolbox and coredns images (the
	// lab's, labimages.go) are built only when named.
	Images []string
	// CoreDNS is the static coredns that test/k8sbin/build-coredns.sh builds
	// (bin/node/coredns), for the coredns image.
	CoreDNS string
	// Busybox is Debian's busybox-static's /bin/busybox, for the toolbox.
	Busybox string
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

// imageSpec describes one image.
type imageSpec struct {
	name        string
	description string
	// repo and tag, when set, name the image instead of
	// <registry>/<name>:<version>: the lab's images keep the names its
	// manifests and upstream's use, whatever the registry.
	repo, tag string
	// version and source, when set, are the version and source labels
	// instead of Berth's (CoreDNS's own).
	version, source string
	// labels are more labels.
	labels     map[string]string
	entrypoint []string
	cmd        []string
	user       string
	ports      []string
	// layers, bottom first; each is a list of entries.
	layers [][]file
	// bins are the host paths of the executables the image holds, which
	// must be static; hint says how to build them.
	bins []string
	hint string
}

// recipe makes one image's spec; lab images read their inputs (versions)
// only when named.
type recipe struct {
	name string
	make func(o Options) (imageSpec, error)
}

func binFile(o Options, n string) file {
	return file{path: path.Join(binPath, n), src: filepath.Join(o.BinDir, n), mode: 0o755}
}

// shippedRecipes are Berth's images and the pause image. berth-cni has no
// image of its own: nothing runs it as a container; the agent copies it
// from its image onto the host.
func shippedRecipes() []recipe {
	const hint = "build them with `make build`, which sets CGO_ENABLED=0"
	return []recipe{{"berth-controller", func(o Options) (imageSpec, error) {
		return imageSpec{
			name:        "berth-controller",
			description: "Berth controller: LoadBalancer IPAM, Gateway API and Ingress over xDS, Envoy fleets",
			entrypoint:  []string{path.Join(binPath, "berth-controller")},
			user:        NonRoot,
			layers:      [][]file{baseFiles(), {binFile(o, "berth-controller")}},
			bins:        []string{filepath.Join(o.BinDir, "berth-controller")},
			hint:        hint,
		}, nil
	}}, {"berth-agent", func(o Options) (imageSpec, error) {
		return imageSpec{
			name:        "berth-agent",
			description: "Berth node agent: pod network and CNI plugin, service proxy, NetworkPolicy, L2 and BGP announcements",
			entrypoint:  []string{path.Join(binPath, "berth-agent")},
			user:        Root,
			// Static binaries only: the agent programs nftables over netlink
			// and runs no other program.
			layers: [][]file{{binFile(o, "berth-agent"), binFile(o, "berth-cni")}},
			bins:   []string{filepath.Join(o.BinDir, "berth-agent"), filepath.Join(o.BinDir, "berth-cni")},
			hint:   hint,
		}, nil
	}}, {"pause", func(o Options) (imageSpec, error) {
		return imageSpec{
			name:        "pause",
			description: "Berth lab pod sandbox: sleeps until SIGTERM and reaps orphans (build/pause)",
			entrypoint:  []string{path.Join(binPath, "berth-pause")},
			user:        NonRoot,
			layers:      [][]file{{binFile(o, "berth-pause")}},
			bins:        []string{filepath.Join(o.BinDir, "berth-pause")},
			hint:        "build it with `CGO_ENABLED=0 go build -o bin/berth-pause ./build/pause`",
		}, nil
	}}}
}

// AllImages names every image, in the order "all" builds them.
func AllImages() []string {
	var out []string
	for _, r := range append(shippedRecipes(), labRecipes()...) {
		out = append(out, r.name)
	}
	return out
}

func specs(o Options) ([]imageSpec, error) {
	all := append(shippedRecipes(), labRecipes()...)
	want := o.Images
	if len(want) == 0 {
		want = DefaultImages
	}
	if slices.Equal(want, []string{"all"}) {
		want = AllImages()
	}
	var out []imageSpec
	for _, w := range want {
		i := slices.IndexFunc(all, func(r recipe) bool { return r.name == w })
		if i < 0 {
			return nil, fmt.Errorf("no image %q: choose among %s, or all", w, strings.Join(AllImages(), ", "))
		}
		s, err := all[i].make(o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w, err)
		}
		for _, b := range s.bins {
			if err := checkStatic(b, o.Arch); err != nil {
				return nil, fmt.Errorf("%w (%s)", err, s.hint)
			}
		}
		out = append(out, s)
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
		ref, err := s.ref(o)
		if err != nil {
			return nil, err
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

// ref is the image's name: <registry>/<name>:<version>, or its own.
func (s imageSpec) ref(o Options) (name.Tag, error) {
	repo, tag := o.Registry+"/"+s.name, o.Version
	if s.repo != "" {
		repo = s.repo
	}
	if s.tag != "" {
		tag = s.tag
	}
	ref, err := name.NewTag(repo + ":" + tag)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image name: %w (check -registry and -version)", err)
	}
	return ref, nil
}

func (s imageSpec) image(o Options) (v1.Image, error) {
	created := v1.Time{Time: o.Created}
	version, source := o.Version, o.Source
	if s.version != "" {
		version = s.version
	}
	if s.source != "" {
		source = s.source
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       s.name,
		"org.opencontainers.image.description": s.description,
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.source":      source,
	}
	for k, v := range s.labels {
		labels[k] = v
	}
	var ports map[string]struct{}
	for _, p := range s.ports {
		if ports == nil {
			ports = map[string]struct{}{}
		}
		ports[p] = struct{}{}
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: o.Arch,
		OS:           "linux",
		Created:      created,
		Config: v1.Config{
			Entrypoint:   s.entrypoint,
			Cmd:          s.cmd,
			User:         s.user,
			ExposedPorts: ports,
			Env:          []string{envPath},
			WorkingDir:   "/",
			Labels:       labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	for i, files := range s.layers {
		raw, err := layerTar(files, o.Created)
		if err != nil {
			return nil, err
		}
		// Compressed once, here: a layer made from the tar would compress
		// it again for its digest and for the archive (CoreDNS's 55 MB).
		data, err := gzipBytes(raw)
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
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.source":   source,
	}).(v1.Image), nil
}

// gzipBytes compresses a layer as go-containerregistry does (gzip,
// BestSpeed, no name or time in the header), so the bytes and digests are
// those it would make from the tar.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func layerSummary(files []file) string {
	var names []string
	for _, f := range files {
		names = append(names, f.path)
	}
	return strings.Join(names, " ")
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
