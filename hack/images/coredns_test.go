package main

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// coreDNSVersion is test/k8sbin/coredns's github.com/coredns/coredns,
// written here by hand: the image's tag must follow go.mod.
const coreDNSVersion = "v1.15.0"

// TestCoreDNSImage builds CoreDNS with test/k8sbin/build-coredns.sh (into
// bin/node, where a second run is instant) and its image: upstream's name
// and tag, user, entrypoint, and /coredns's cap_net_bind_service. As root it
// runs the image's /coredns in a chroot: -version, its plugins, and, as
// user 65532 in a network namespace of the test's, a Corefile on port 53
// that answers a name from its hosts plugin.
func TestCoreDNSImage(t *testing.T) {
	node, err := filepath.Abs("../../bin/node")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("../../test/k8sbin/build-coredns.sh", node).CombinedOutput(); err != nil {
		t.Fatalf("build-coredns.sh: %v\n%s", err, out)
	}
	o := labOptions(t, "coredns")
	o.CoreDNS = filepath.Join(node, "coredns")
	b := buildTwice(t, o)[0]
	if want := "registry.k8s.io/coredns/coredns:" + coreDNSVersion; b.Ref != want {
		t.Errorf("ref %s, want %s", b.Ref, want)
	}
	img, cf := readLab(t, b, 2)
	if !slices.Equal(cf.Config.Entrypoint, []string{"/coredns"}) || cf.Config.User != "65532:65532" {
		t.Errorf("entrypoint %q user %q, want [/coredns] as 65532:65532", cf.Config.Entrypoint, cf.Config.User)
	}
	if _, ok := cf.Config.ExposedPorts["53/udp"]; !ok || len(cf.Config.ExposedPorts) != 2 {
		t.Errorf("exposed ports %v, want 53/tcp and 53/udp", cf.Config.ExposedPorts)
	}
	if v, s := cf.Config.Labels["org.opencontainers.image.version"], cf.Config.Labels["org.opencontainers.image.source"]; v != coreDNSVersion || s != "https://github.com/coredns/coredns" {
		t.Errorf("version label %q source %q", v, s)
	}

	// /coredns carries `setcap cap_net_bind_service=+ep`, as upstream's:
	// the bytes of `getfattr -n security.capability -e hex` on their image,
	// 0x0100000200040000000000000000000000000000.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "coredns" {
			found = true
			want := "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
			if got := hdr.PAXRecords["SCHILY.xattr.security.capability"]; got != want {
				t.Errorf("/coredns security.capability %x, want %x", got, want)
			}
		}
	}
	if !found {
		t.Fatal("no /coredns in the binary's layer")
	}

	netnstest.RequireRoot(t)
	root := extractWith(t, img, unpackOptions{xattrs: true})
	in := inImage{root: root}
	if out := in.output(t, "/coredns", "-version"); !strings.HasPrefix(out, "CoreDNS-1.15.0\n") {
		t.Errorf("coredns -version: %q", out)
	}
	// Only the plugins a cluster's Corefile uses, and those they import.
	plugins := strings.Fields(in.output(t, "/coredns", "-plugins"))
	want := []string{"cache", "debug", "dnstap", "errors", "forward", "health", "hosts", "kubernetes",
		"loadbalance", "log", "loop", "metadata", "prometheus", "ready", "reload", "transfer"}
	if !slices.Equal(plugins, want) {
		t.Errorf("coredns -plugins: %q, want %q", plugins, want)
	}

	// Serving on 53 as 65532: the file capability at work (a new network
	// namespace lets no other user bind below 1024).
	corefile := ".:53 {\n    errors\n    hosts {\n        10.96.7.42 probe.imagetest.berth.test\n    }\n}\n"
	if err := os.WriteFile(filepath.Join(root, "Corefile"), []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := netnstest.New(t)
	srv := inImage{root: root, uid: 65532, gid: 65532, ns: ns}.serve(t, "/coredns", "-conf", "/Corefile")
	eventually(t, "resolve probe.imagetest.berth.test at 127.0.0.1:53", func() error {
		select {
		case err := <-srv.done:
			t.Fatalf("coredns ended: %v: %s", err, srv.out.String())
		default:
		}
		addrs, err := lookupIn(ns, "probe.imagetest.berth.test")
		if err != nil {
			return err
		}
		if !slices.Equal(addrs, []string{"10.96.7.42"}) {
			t.Fatalf("probe.imagetest.berth.test: %q, want [10.96.7.42]", addrs)
		}
		return nil
	})
	srv.stop(t)
}

// lookupIn asks 127.0.0.1:53 inside ns for name's IPv4 addresses.
func lookupIn(ns *netns.Namespace, name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (c net.Conn, err error) {
		err = ns.Do(func() error {
			c, err = (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:53")
			return err
		})
		return c, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := r.LookupIP(ctx, "ip4", name)
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out, err
}
