// Command images builds Berth's container images, and the lab's, as OCI
// image tarballs without a Docker engine and without pulling a base image:
// each image is made from scratch out of static binaries (CGO_ENABLED=0, as
// `make build` makes them) and nothing else: the agent programs nftables
// over netlink and runs no other program. The lab's images (labimages.go)
// add its echo programs, CoreDNS, and a toolbox of Debian's busybox-static.
// `make images` runs it; build/Dockerfile makes Berth's images on a machine
// with BuildKit. See docs/images.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	var (
		o       Options
		created string
	)
	flag.StringVar(&o.BinDir, "bin", "bin", "folder with the static binaries berth-controller, berth-agent and berth-cni")
	flag.StringVar(&o.OutDir, "out", filepath.Join("bin", "images"), "folder the image tarballs are written to")
	flag.StringVar(&o.Registry, "registry", DefaultRegistry, "repository prefix of the image names")
	flag.StringVar(&o.Version, "version", "v0.0.0-dev", "image tag and org.opencontainers.image.version")
	flag.StringVar(&o.Revision, "revision", "unknown", "org.opencontainers.image.revision (the git commit)")
	flag.StringVar(&o.Source, "source", DefaultSource, "org.opencontainers.image.source")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "architecture of the binaries")
	flag.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time of the images and of every file in them, in Unix seconds (default $SOURCE_DATE_EPOCH, else 0), so that the same inputs give the same digests")
	flag.StringVar(&o.CoreDNS, "coredns", filepath.Join("bin", "node", "coredns"), "static coredns (test/k8sbin/build-coredns.sh) for the coredns image")
	flag.StringVar(&o.Busybox, "busybox", "/bin/busybox", "busybox of Debian's busybox-static for the toolbox image")
	images := flag.String("images", strings.Join(DefaultImages, ","), "comma-separated images to build, or all: "+strings.Join(AllImages(), ", ")+" (pause and after: the lab's)")
	flag.Parse()
	o.Images = strings.Split(*images, ",")
	if created != "" {
		sec, err := strconv.ParseInt(created, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "images: -created %q: want Unix seconds, like $(git log -1 --format=%%ct)\n", created)
			os.Exit(2)
		}
		o.Created = time.Unix(sec, 0).UTC()
	}
	built, err := Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
	for _, b := range built {
		fmt.Printf("%s\t%s\t%s\n", b.Path, b.Ref, b.Digest)
	}
}
