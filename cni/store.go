package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Store keeps the node's pod address reservations on disk: one file per
// address, named by it, holding the attachment that owns it. Every operation
// holds an exclusive lock on the folder, so concurrent ADDs and DELs from
// parallel runtime calls never hand one address out twice, and the record
// survives restarts of everything.
type Store struct {
	dir string
}

// OpenStore opens (creating it if needed) the store for one network.
func OpenStore(dataDir, network string) (*Store, error) {
	if network == "" || strings.ContainsAny(network, "/\x00") || network == "." || network == ".." {
		return nil, fmt.Errorf("network name %q cannot name a folder", network)
	}
	dir := filepath.Join(dataDir, network)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("address store %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// locked runs fn holding the store's lock.
func (s *Store) locked(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(s.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("address store lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("address store lock: %w", err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
	return fn()
}

// ErrExhausted says a pod range has no free address.
var ErrExhausted = errors.New("no free address")

// Reserve gives the attachment one address in each range, or the ones it
// already has (a repeated ADD gets the same answer).
func (s *Store) Reserve(att Attachment, ranges []netip.Prefix) ([]netip.Addr, error) {
	var out []netip.Addr
	err := s.locked(func() error {
		owned, err := s.owned(att)
		if err != nil {
			return err
		}
		for _, r := range ranges {
			if a, ok := pickIn(owned, r); ok {
				out = append(out, a)
				continue
			}
			a, err := s.reserveIn(att, r)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		// Leave nothing half-reserved behind a failed ADD.
		if _, rerr := s.Release(att); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	return out, nil
}

func pickIn(addrs []netip.Addr, r netip.Prefix) (netip.Addr, bool) {
	for _, a := range addrs {
		if r.Contains(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// reserveIn takes the next free address of r after the last one handed out,
// so a just-freed address is not reused at once. Callers hold the lock.
func (s *Store) reserveIn(att Attachment, r netip.Prefix) (netip.Addr, error) {
	lastFile := filepath.Join(s.dir, ".last-"+familyName(r))
	first := Gateway(r).Next()
	start := first
	if b, err := os.ReadFile(lastFile); err == nil {
		if last, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && r.Contains(last) {
			start = last.Next()
		}
	}
	body, err := json.Marshal(att)
	if err != nil {
		return netip.Addr{}, err
	}
	// At most one pass over the range; IPv6 ranges are far larger than any
	// node's pods, so a free address comes long before the cap.
	const maxScan = 1 << 20
	a := start
	for i := 0; i < maxScan; i++ {
		if !usable(a, r) {
			a = first
			if i > 0 && a == start {
				break
			}
			continue
		}
		f, err := os.OpenFile(filepath.Join(s.dir, a.String()), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			_, werr := f.Write(body)
			cerr := f.Close()
			if werr != nil || cerr != nil {
				_ = os.Remove(filepath.Join(s.dir, a.String()))
				return netip.Addr{}, fmt.Errorf("address store: %w", errors.Join(werr, cerr))
			}
			if err := os.WriteFile(lastFile, []byte(a.String()), 0o600); err != nil {
				return netip.Addr{}, fmt.Errorf("address store: %w", err)
			}
			return a, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return netip.Addr{}, fmt.Errorf("address store: %w", err)
		}
		a = a.Next()
		if a == start {
			break
		}
	}
	return netip.Addr{}, fmt.Errorf("pod range %v: %w: every address is in use; delete pods or give the node a larger podCIDR", r, ErrExhausted)
}

// usable reports whether a may go to a pod: inside r, not the network
// address, not the gateway, not the IPv4 broadcast address.
func usable(a netip.Addr, r netip.Prefix) bool {
	if !a.IsValid() || !r.Contains(a) || a == r.Masked().Addr() || a == Gateway(r) {
		return false
	}
	if a.Is4() && !r.Contains(a.Next()) {
		return false // broadcast
	}
	return true
}

func familyName(r netip.Prefix) string {
	if r.Addr().Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// Owned returns the addresses held by the attachment.
func (s *Store) Owned(att Attachment) ([]netip.Addr, error) {
	var out []netip.Addr
	err := s.locked(func() (err error) {
		out, err = s.owned(att)
		return err
	})
	return out, err
}

func (s *Store) owned(att Attachment) ([]netip.Addr, error) {
	all, err := s.list()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for a, who := range all {
		if who == att {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, nil
}

// list reads every reservation. Callers hold the lock.
func (s *Store) list() (map[netip.Addr]Attachment, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("address store: %w", err)
	}
	out := map[netip.Addr]Attachment{}
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue // the lock and last-address files
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("address store: %w", err)
		}
		var att Attachment
		if err := json.Unmarshal(b, &att); err != nil {
			// A torn write from a crash: the address stays taken rather
			// than risk giving it out twice; GC frees it.
			att = Attachment{ContainerID: "unreadable:" + e.Name()}
		}
		out[a] = att
	}
	return out, nil
}

// Release frees every address of the attachment and returns them. Freeing
// nothing is not an error: DEL is idempotent.
func (s *Store) Release(att Attachment) ([]netip.Addr, error) {
	var freed []netip.Addr
	err := s.locked(func() error {
		owned, err := s.owned(att)
		if err != nil {
			return err
		}
		for _, a := range owned {
			if err := os.Remove(filepath.Join(s.dir, a.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("address store: %w", err)
			}
			freed = append(freed, a)
		}
		return nil
	})
	return freed, err
}

// GC frees every address whose attachment is not in valid, and returns them.
func (s *Store) GC(valid []Attachment) ([]netip.Addr, error) {
	keep := map[Attachment]bool{}
	for _, v := range valid {
		keep[v] = true
	}
	var freed []netip.Addr
	err := s.locked(func() error {
		all, err := s.list()
		if err != nil {
			return err
		}
		for a, who := range all {
			if keep[who] {
				continue
			}
			if err := os.Remove(filepath.Join(s.dir, a.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("address store: %w", err)
			}
			freed = append(freed, a)
		}
		return nil
	})
	sort.Slice(freed, func(i, j int) bool { return freed[i].Less(freed[j]) })
	return freed, err
}

// Count is how many addresses are reserved.
func (s *Store) Count() (int, error) {
	var n int
	err := s.locked(func() error {
		all, err := s.list()
		n = len(all)
		return err
	})
	return n, err
}
