package l2announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// ReadLinks lists this network namespace's interfaces and addresses. A
// dump that links changing meanwhile interrupted is read again.
func ReadLinks() ([]Link, error) {
	var (
		ls    []netlink.Link
		addrs []netlink.Addr
		err   error
	)
	for range 10 {
		if ls, err = netlink.LinkList(); err == nil {
			addrs, err = netlink.AddrList(nil, netlink.FAMILY_ALL)
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list links and addresses: %w", err)
	}
	byIndex := map[int][]netip.Prefix{}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ones, _ := a.Mask.Size()
		byIndex[a.LinkIndex] = append(byIndex[a.LinkIndex], netip.PrefixFrom(ip.Unmap(), ones))
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		at := l.Attrs()
		out = append(out, Link{
			Name:     at.Name,
			Index:    at.Index,
			MAC:      at.HardwareAddr,
			Up:       at.Flags&net.FlagUp != 0 && at.RawFlags&(1<<6) != 0, // IFF_RUNNING
			Virtual:  virtual(l.Type()) || at.Flags&net.FlagLoopback != 0,
			Enslaved: at.MasterIndex != 0,
			Prefixes: byIndex[at.Index],
		})
	}
	return out, nil
}

// virtual: software devices. Physical ports ("device"), bonds, teams and
// VLANs carry a node's uplink.
func virtual(kind string) bool {
	switch kind {
	case "device", "bond", "team", "vlan", "macvlan", "ipvlan":
		return false
	}
	return true
}

// WatchLinks calls changed on every link or address change in this
// network namespace until ctx ends (a full re-read is cheap; the events
// only say when).
func WatchLinks(ctx context.Context, changed func()) error {
	linkCh := make(chan netlink.LinkUpdate, 64)
	addrCh := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	errs := make(chan error, 2)
	onErr := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	if err := netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("watch links: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("watch addresses: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return fmt.Errorf("watch links: %w", err)
		case _, ok := <-linkCh:
			if !ok {
				return fmt.Errorf("watch links: the netlink subscription closed")
			}
			changed()
		case _, ok := <-addrCh:
			if !ok {
				return fmt.Errorf("watch addresses: the netlink subscription closed")
			}
			changed()
		}
	}
}
