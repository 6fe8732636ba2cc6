package cni

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Check verifies that what ADD set up is still there: the reservation, the
// pod's interface with its addresses and default routes, and the host end
// on the bridge. The error names the first thing that is wrong.
func Check(req Request) error {
	conf, err := ParseConfig(req.Config)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad network configuration", err.Error())
	}
	if len(conf.RawPrevResult) == 0 {
		return types.NewError(types.ErrDecodingFailure, "CHECK needs prevResult", "the runtime passes the result of ADD")
	}
	generic, err := version.NewResult(conf.CNIVersion, conf.RawPrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "prevResult", err.Error())
	}
	prev, err := current.NewResultFromResult(generic)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "prevResult", err.Error())
	}
	fail := func(format string, args ...any) error {
		return types.NewError(types.ErrInternal, "CHECK failed", fmt.Sprintf(format, args...))
	}

	store, err := OpenStore(conf.DataDir, conf.Name)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "address store", err.Error())
	}
	owned, err := store.Owned(Attachment{ContainerID: req.ContainerID, IfName: req.IfName})
	if err != nil {
		return types.NewError(types.ErrIOFailure, "address store", err.Error())
	}
	for _, ipc := range prev.IPs {
		a, _ := netip.AddrFromSlice(ipc.Address.IP)
		if !containsAddr(owned, a.Unmap()) {
			return fail("address %v is not reserved for %s/%s in the address store", ipc.Address.IP, req.ContainerID, req.IfName)
		}
	}

	br, err := netlink.LinkByName(conf.Bridge)
	if err != nil {
		return fail("bridge %s is missing", conf.Bridge)
	}
	hostName := HostVethName(req.ContainerID, req.IfName)
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return fail("host interface %s is missing", hostName)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fail("host interface %s is not attached to bridge %s", hostName, conf.Bridge)
	}

	podNS, err := netns.GetFromPath(req.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, "open network namespace", err.Error())
	}
	defer podNS.Close()
	h, err := netlink.NewHandleAt(podNS, unix.NETLINK_ROUTE)
	if err != nil {
		return fail("netlink in pod namespace: %v", err)
	}
	defer h.Close()
	link, err := h.LinkByName(req.IfName)
	if err != nil {
		return fail("interface %s is missing in the pod", req.IfName)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fail("interface %s is down", req.IfName)
	}
	have, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fail("list addresses: %v", err)
	}
	for _, ipc := range prev.IPs {
		found := false
		for _, x := range have {
			if x.IPNet.String() == ipc.Address.String() {
				found = true
			}
		}
		if !found {
			return fail("address %s is missing on %s", ipc.Address.String(), req.IfName)
		}
		routes, err := h.RouteList(link, familyOf(ipc.Address.IP))
		if err != nil {
			return fail("list routes: %v", err)
		}
		ok := false
		for _, r := range routes {
			ones := 0
			if r.Dst != nil {
				ones, _ = r.Dst.Mask.Size()
			}
			if ones == 0 && r.Gw.Equal(ipc.Gateway) {
				ok = true
			}
		}
		if !ok {
			return fail("default route via %v is missing in the pod", ipc.Gateway)
		}
	}
	return nil
}

func familyOf(ip net.IP) int {
	if ip.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}
