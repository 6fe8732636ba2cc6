// Package netns creates and tears down named network namespaces and the links,
// addresses and routes inside them. The lab builds its topology with it and the
// privileged tests use it for their throwaway namespaces.
//
// Every link operation goes through a netlink handle bound to the namespace,
// so no goroutine changes namespace except inside Do, which locks its thread.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Dir is where named namespaces are bind-mounted, the same place `ip netns` uses,
// so `ip netns exec` and `ip netns list` see them too.
const Dir = "/var/run/netns"

// Namespace is an open handle on a network namespace.
type Namespace struct {
	// Name is the namespace's name under Dir; empty for the host's namespace.
	Name string
	// path is the file it was opened from (OpenPath), if not by name.
	path string
	fd   netns.NsHandle
	nl   *netlink.Handle
}

// Create makes a new named namespace with its loopback up. It fails with an
// error matching os.ErrExist if the name is taken.
func Create(name string) (*Namespace, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	fd, err := createNamed(name)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("network namespace %q already exists: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("create network namespace %q: %w", name, err)
	}
	ns, err := wrap(name, fd)
	if err != nil {
		_ = deleteNamed(name)
		return nil, err
	}
	if err := ns.Up("lo"); err != nil {
		_ = ns.Delete()
		return nil, err
	}
	return ns, nil
}

// Open opens an existing named namespace.
func Open(name string) (*Namespace, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	fd, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %q: %w", name, err)
	}
	return wrap(name, fd)
}

// OpenPath opens the namespace a file names, such as /proc/<pid>/ns/net of
// a process in it (a pod's sandbox, whose runtime keeps the namespace out of
// Dir).
func OpenPath(path string) (*Namespace, error) {
	fd, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	ns, err := wrap("", fd)
	if err != nil {
		return nil, err
	}
	ns.path = path
	return ns, nil
}

// Host opens the namespace this process runs in.
func Host() (*Namespace, error) {
	fd, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open host network namespace: %w", err)
	}
	return wrap("", fd)
}

func wrap(name string, fd netns.NsHandle) (*Namespace, error) {
	nl, err := netlink.NewHandleAt(fd)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("netlink handle in namespace %q: %w", name, err)
	}
	return &Namespace{Name: name, fd: fd, nl: nl}, nil
}

func validName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("invalid network namespace name %q", name)
	}
	return nil
}

// Netlink is the namespace's netlink handle, for operations this package
// does not wrap.
func (n *Namespace) Netlink() *netlink.Handle { return n.nl }

// Fd is the namespace's file descriptor, for moving links into it.
func (n *Namespace) Fd() int { return int(n.fd) }

// Path is the file that names the namespace.
func (n *Namespace) Path() string {
	if n.path != "" {
		return n.path
	}
	if n.Name == "" {
		return "/proc/self/ns/net"
	}
	return filepath.Join(Dir, n.Name)
}

// Close releases the handle; the namespace itself stays.
func (n *Namespace) Close() error {
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.fd.IsOpen() {
		return n.fd.Close()
	}
	return nil
}

// Delete ends every process inside the namespace, then removes it. The links
// inside go with it, and so do the peers of its veth pairs.
func (n *Namespace) Delete() error {
	if n.Name == "" {
		return errors.New("refusing to delete the host network namespace")
	}
	_ = n.Close()
	return Remove(n.Name)
}

// Remove deletes a named namespace that may not be open, ending its processes
// first. A namespace that does not exist is not an error.
func Remove(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	path := filepath.Join(Dir, name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := killAll(path); err != nil {
		return fmt.Errorf("network namespace %q: %w", name, err)
	}
	if err := deleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete network namespace %q: %w", name, err)
	}
	return nil
}

// List returns the names of the named namespaces that start with prefix, sorted.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Do runs fn on a thread inside the namespace, for code that must open sockets
// or /proc/sys files there.
func (n *Namespace) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(n.fd); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %q: %w", n.Name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime will retire it.
		return errors.Join(ferr, fmt.Errorf("leave network namespace %q: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Sysctl writes a value under /proc/sys inside the namespace, e.g.
// Sysctl("net/ipv4/ip_forward", "1").
func (n *Namespace) Sysctl(key, value string) error {
	return n.Do(func() error {
		path := filepath.Join("/proc/sys", key)
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}
