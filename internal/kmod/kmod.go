// Package kmod loads a kernel module and the modules it depends on, as
// `modprobe NAME` does, from the host's /lib/modules, with no modprobe: the
// agent image holds no other program. berth-agent's privileged init
// container uses it for br_netfilter, which no netlink request loads on
// demand (bridges, VXLAN and nftables expressions the kernel loads itself).
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Module is one line of modules.dep: the module's file, relative to its
// release's folder, and those of the modules it needs, in the order
// modprobe lists them (each needs the ones after it).
type Module struct {
	Path string
	Deps []string
}

// Name is the kernel's name of the module in file path: its base name
// without ".ko" and a compression suffix, '-' read as '_'.
func Name(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ParseDep reads modules.dep ("kernel/net/bridge/br_netfilter.ko:
// kernel/net/bridge/bridge.ko ...") into modules by name.
func ParseDep(r io.Reader) (map[string]Module, error) {
	mods := map[string]Module{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, deps, ok := strings.Cut(line, ":")
		path = strings.TrimSpace(path)
		if !ok || path == "" || !strings.Contains(path, ".ko") {
			return nil, fmt.Errorf("modules.dep line %d: %q is not \"<module>.ko: <dependencies>\"", n, truncate(line))
		}
		m := Module{Path: path, Deps: strings.Fields(deps)}
		for _, d := range m.Deps {
			if !strings.Contains(d, ".ko") {
				return nil, fmt.Errorf("modules.dep line %d: dependency %q is not a module file", n, truncate(d))
			}
		}
		mods[Name(path)] = m
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	return mods, nil
}

// Plan is the module files to load for name, dependencies first, leaving
// out those loaded already.
func Plan(mods map[string]Module, name string, loaded func(name string) bool) ([]string, error) {
	if loaded(name) {
		return nil, nil
	}
	m, ok := mods[name]
	if !ok {
		return nil, fmt.Errorf("module %s is not in modules.dep (not built for this kernel?)", name)
	}
	var files []string
	for _, d := range slices.Backward(m.Deps) {
		if !loaded(Name(d)) {
			files = append(files, d)
		}
	}
	return append(files, m.Path), nil
}

// Loader loads modules into the running kernel.
type Loader struct {
	// Dir holds the modules of the running kernel (/lib/modules/<release>).
	Dir string
	// SysModule lists the loaded and built-in modules (/sys/module).
	SysModule string
}

// NewLoader is a loader for the running kernel's modules under root (the
// host's /lib/modules, mounted into the container).
func NewLoader(root string) (Loader, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Loader{}, err
	}
	return Loader{Dir: filepath.Join(root, unix.ByteSliceToString(u.Release[:])), SysModule: "/sys/module"}, nil
}

// Loaded reports whether the kernel has module name, loaded or built in.
func (l Loader) Loaded(name string) bool {
	_, err := os.Stat(filepath.Join(l.SysModule, name))
	return err == nil
}

// Load loads name and what it needs, unless the kernel has it already.
func (l Loader) Load(name string) error {
	if l.Loaded(name) {
		return nil
	}
	f, err := os.Open(filepath.Join(l.Dir, "modules.dep"))
	if err != nil {
		return fmt.Errorf("load module %s: %w (mount the host's /lib/modules, or load it on the node: modprobe %s)", name, err, name)
	}
	defer f.Close()
	mods, err := ParseDep(f)
	if err != nil {
		return fmt.Errorf("load module %s: %s: %w", name, f.Name(), err)
	}
	files, err := Plan(mods, name, l.Loaded)
	if err != nil {
		return err
	}
	for _, file := range files {
		if err := l.insert(file); err != nil {
			return fmt.Errorf("load module %s: %s: %w", name, file, err)
		}
	}
	return nil
}

func (l Loader) insert(file string) error {
	f, err := os.Open(filepath.Join(l.Dir, file))
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(file, ".ko") {
		// .ko.xz, .ko.zst, .ko.gz: the kernel decompresses (5.17 and later,
		// CONFIG_MODULE_DECOMPRESS).
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
