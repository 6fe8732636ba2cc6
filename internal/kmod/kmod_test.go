package kmod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A modules.dep as depmod writes it (Debian 12's, cut down).
const dep = `kernel/net/802/stp.ko.xz: kernel/net/llc/llc.ko.xz
kernel/net/llc/llc.ko.xz:
kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz
kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz
kernel/drivers/net/wireguard/wireguard.ko.xz: kernel/lib/crypto/libchacha20poly1305.ko.xz
kernel/net/ipv4/udp_tunnel.ko:
kernel/drivers/net/nf-dummy.ko:
`

func TestPlan(t *testing.T) {
	mods, err := ParseDep(strings.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		loaded []string
		want   []string
	}{
		// Nothing loaded: the last dependency first, as modprobe.
		{"br_netfilter", nil, []string{"kernel/net/llc/llc.ko.xz", "kernel/net/802/stp.ko.xz", "kernel/net/bridge/bridge.ko.xz", "kernel/net/bridge/br_netfilter.ko.xz"}},
		// bridge built in (it has /sys/module/bridge): only the module.
		{"br_netfilter", []string{"bridge", "stp", "llc"}, []string{"kernel/net/bridge/br_netfilter.ko.xz"}},
		{"br_netfilter", []string{"br_netfilter"}, nil},
		{"udp_tunnel", nil, []string{"kernel/net/ipv4/udp_tunnel.ko"}},
		// '-' in a file name is '_' in the kernel's.
		{"nf_dummy", nil, []string{"kernel/drivers/net/nf-dummy.ko"}},
	} {
		got, err := Plan(mods, tc.name, func(n string) bool { return slices.Contains(tc.loaded, n) })
		if err != nil {
			t.Errorf("%s with %v loaded: %v", tc.name, tc.loaded, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s with %v loaded: %q, want %q", tc.name, tc.loaded, got, tc.want)
		}
	}
	if _, err := Plan(mods, "nosuch", func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "nosuch is not in modules.dep") {
		t.Errorf("unknown module: %v", err)
	}
}

func TestParseDepRefuses(t *testing.T) {
	for _, bad := range []string{
		"kernel/net/bridge/bridge.ko",         // no colon
		": kernel/net/bridge/bridge.ko",       // no module
		"kernel/x.ko: not-a-module",           // dependency without .ko
		"README: kernel/net/bridge/bridge.ko", // not a module file
	} {
		if _, err := ParseDep(strings.NewReader(bad + "\n")); err == nil {
			t.Errorf("ParseDep accepted %q", bad)
		}
	}
}

// TestLoaderLoaded: a module the kernel has (in /sys/module) is not loaded
// again, and nothing is read; one it lacks without a modules.dep is an
// error that says what to mount or run.
func TestLoaderLoaded(t *testing.T) {
	dir := t.TempDir()
	sys := filepath.Join(dir, "sys")
	if err := os.MkdirAll(filepath.Join(sys, "br_netfilter"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := Loader{Dir: filepath.Join(dir, "lib/modules/6.1.0"), SysModule: sys}
	if err := l.Load("br_netfilter"); err != nil {
		t.Errorf("loaded module: %v", err)
	}
	err := l.Load("vxlan")
	if err == nil || !strings.Contains(err.Error(), "mount the host's /lib/modules") || !strings.Contains(err.Error(), "modprobe vxlan") {
		t.Errorf("missing modules.dep: %v", err)
	}
}
