package main

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// The lab's images: what its real nodes run besides Berth, imported into
// each node's containerd under the names its manifests use, so nothing is
// ever pulled. They are built only when named (or with "all").

// Names and tags of the lab's images.
const (
	labRepo = "berth.dev/lab"
	labTag  = "lab"
	// CoreDNSRepo is upstream's name for CoreDNS, which kubeadm's manifests
	// use; the tag is the version built.
	CoreDNSRepo = "registry.k8s.io/coredns/coredns"
	coreDNSPath = "/coredns"
	// BusyboxPackage is the Debian package the toolbox's busybox comes from.
	BusyboxPackage = "busybox-static"
)

// echoPrograms are the lab's echo programs (build/echo), one image each.
var echoPrograms = []struct{ prog, what string }{
	{"http", "answers every HTTP request with the pod's name, namespace, IPs and node and the client's address, as JSON"},
	{"tcp", "echoes TCP"},
	{"udp", "echoes UDP, prefixed with the pod's IP"},
	{"multi", "echoes TCP and UDP on its port and on each of $ECHO_PORTS (NetworkPolicy truth tables)"},
}

// ToolboxApplets are the busybox applets the toolbox links into /bin: what
// a person types in `kubectl exec` to look at a pod's network.
var ToolboxApplets = []string{
	"[", "arp", "arping", "awk", "base64", "cat", "cp", "cut", "date", "df", "dmesg", "du", "echo",
	"env", "false", "find", "free", "grep", "gunzip", "gzip", "head", "hexdump", "hostname", "id",
	"ifconfig", "ip", "kill", "less", "ln", "ls", "md5sum", "mkdir", "mv", "nc", "netstat", "nslookup",
	"pidof", "ping", "ping6", "printf", "ps", "readlink", "rm", "route", "sed", "seq", "sh",
	"sha256sum", "sleep", "sort", "stat", "sysctl", "tail", "tar", "tee", "telnet", "test", "timeout",
	"top", "touch", "tr", "traceroute", "traceroute6", "true", "uname", "uniq", "vi", "watch", "wc",
	"wget", "which", "xargs",
}

func labRecipes() []recipe {
	var out []recipe
	for _, e := range echoPrograms {
		out = append(out, recipe{e.prog + "-echo", func(o Options) (imageSpec, error) {
			return echoSpec(o, e.prog, e.what), nil
		}})
	}
	return append(out, recipe{"toolbox", toolboxSpec}, recipe{"coredns", coreDNSSpec})
}

// echoSpec: the four echo images share build/echo's binary (one layer, the
// same digest in each) and differ in the entrypoint's program.
func echoSpec(o Options, prog, what string) imageSpec {
	return imageSpec{
		name:        prog + "-echo",
		description: "Berth lab pod program (build/echo): " + what + "; port --port N, else $PORT, else 8080",
		repo:        labRepo + "/" + prog + "-echo",
		tag:         labTag,
		entrypoint:  []string{path.Join(binPath, "berth-echo"), prog},
		user:        NonRoot,
		layers:      [][]file{baseFiles(), {binFile(o, "berth-echo")}},
		bins:        []string{filepath.Join(o.BinDir, "berth-echo")},
		hint:        "build it with `CGO_ENABLED=0 go build -o bin/berth-echo ./build/echo`",
	}
}

// toolboxCmd keeps the toolbox's container running for `kubectl exec`. A
// bare `sleep infinity` as PID 1 would ignore SIGTERM (PID 1 gets only the
// signals it handles), so the kubelet would wait the whole grace period;
// the shell's trap ends it at once.
const toolboxCmd = "trap 'exit 0' TERM; sleep infinity & wait"

// toolboxSpec: Debian's static busybox as /bin/busybox, its applets as
// symbolic links beside it, run as root (ping opens raw sockets), sleeping
// until stopped (toolboxCmd) so that `kubectl exec` has a container to
// enter.
func toolboxSpec(o Options) (imageSpec, error) {
	version, err := debianVersion(o.Busybox, BusyboxPackage)
	if err != nil {
		return imageSpec{}, err
	}
	list, err := exec.Command(o.Busybox, "--list").Output()
	if err != nil {
		return imageSpec{}, fmt.Errorf("%s --list: %w", o.Busybox, err)
	}
	have := strings.Fields(string(list))
	tools := []file{{path: "/bin/busybox", src: o.Busybox, mode: 0o755}}
	for _, a := range ToolboxApplets {
		if !slices.Contains(have, a) {
			return imageSpec{}, fmt.Errorf("%s %s has no applet %q", BusyboxPackage, version, a)
		}
		tools = append(tools, file{path: "/bin/" + a, link: "busybox"})
	}
	base := append(baseFiles(), file{path: "/tmp", dir: true, mode: 0o1777}, file{path: "/root", dir: true, mode: 0o700},
		// For static glibc's resolver (busybox's nc, ping, wget): files, then
		// DNS, as every distribution's default.
		file{path: "/etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")})
	return imageSpec{
		name:        "toolbox",
		description: "Berth lab toolbox: Debian's busybox-static (sh, ping, nslookup, wget, nc, ip, ...) for kubectl exec",
		repo:        labRepo + "/toolbox",
		tag:         labTag,
		labels: map[string]string{
			"dev.berth.lab.busybox.package": BusyboxPackage,
			"dev.berth.lab.busybox.version": version,
		},
		cmd:    []string{"/bin/sh", "-c", toolboxCmd},
		user:   Root,
		layers: [][]file{base, tools},
		bins:   []string{o.Busybox},
		hint:   "install Debian's " + BusyboxPackage + " (hack/debian-deps.sh)",
	}, nil
}

// debianVersion is the version of the installed Debian package pkg, which
// must own the file p.
func debianVersion(p, pkg string) (string, error) {
	out, err := exec.Command("dpkg-query", "-S", p).Output()
	if err != nil {
		return "", fmt.Errorf("%s belongs to no Debian package (dpkg-query -S: %v): install %s (hack/debian-deps.sh) and use its /bin/busybox", p, err, pkg)
	}
	owner, _, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
	if owner != pkg {
		return "", fmt.Errorf("%s comes from Debian's %s, not %s: install %s and use its /bin/busybox", p, owner, pkg, pkg)
	}
	v, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil || len(bytes.TrimSpace(v)) == 0 {
		return "", fmt.Errorf("version of %s: %v", pkg, err)
	}
	return string(bytes.TrimSpace(v)), nil
}

// capNetBindService is the security.capability extended attribute of
// `setcap cap_net_bind_service=+ep` (struct vfs_cap_data, revision 2,
// little-endian): magic 0x02000001 (revision 2, effective), permitted
// 1<<10 (CAP_NET_BIND_SERVICE), inheritable 0, and the upper 32 bits 0.
// Upstream's image sets it so CoreDNS binds :53 as user 65532.
const capNetBindService = "\x01\x00\x00\x02" + "\x00\x04\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00"

// coreDNSSpec: as upstream's image (its Dockerfile): /coredns with
// cap_net_bind_service, user 65532, tagged with the CoreDNS version the
// binary was built from, which its build information names.
func coreDNSSpec(o Options) (imageSpec, error) {
	version, err := CoreDNSVersion(o.CoreDNS)
	if err != nil {
		return imageSpec{}, err
	}
	return imageSpec{
		name:        "coredns",
		description: "CoreDNS " + version + " with the plugins a cluster's Corefile uses (Berth's test/k8sbin/coredns)",
		repo:        CoreDNSRepo,
		tag:         version,
		version:     version,
		source:      "https://github.com/coredns/coredns",
		entrypoint:  []string{coreDNSPath},
		user:        NonRoot,
		ports:       []string{"53/tcp", "53/udp"},
		layers: [][]file{baseFiles(), {{
			path: coreDNSPath, src: o.CoreDNS, mode: 0o755,
			xattrs: map[string]string{"security.capability": capNetBindService},
		}}},
		bins: []string{o.CoreDNS},
		hint: "build it with test/k8sbin/build-coredns.sh",
	}, nil
}

// CoreDNSVersion is the github.com/coredns/coredns module version a coredns
// binary was built from, read from its Go build information: a dependency
// of test/k8sbin/coredns's main, or the main module of upstream's build.
func CoreDNSVersion(p string) (string, error) {
	const mod = "github.com/coredns/coredns"
	bi, err := buildinfo.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w (build it with test/k8sbin/build-coredns.sh)", p, err)
	}
	if bi.Main.Path == mod && strings.HasPrefix(bi.Main.Version, "v") {
		return bi.Main.Version, nil
	}
	for _, d := range bi.Deps {
		if d.Path == mod {
			if d.Replace != nil {
				return "", fmt.Errorf("%s: built with %s replaced by %s: its version is not CoreDNS's", p, mod, d.Replace.Path)
			}
			return d.Version, nil
		}
	}
	return "", fmt.Errorf("%s: not built from %s (build it with test/k8sbin/build-coredns.sh)", p, mod)
}
