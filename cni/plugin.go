package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Request is one runtime call: what skel.CmdArgs carries.
type Request struct {
	ContainerID string
	Netns       string // path; may be gone on DEL
	IfName      string
	Config      []byte
}

// HostVethName is the host end of a pod's veth: derived from the attachment,
// so DEL finds it even when the pod's namespace is gone.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return "bv" + hex.EncodeToString(sum[:])[:11]
}

// Status reports whether the node is ready for ADDs: a valid config and the
// bridge in place. Not ready is CNI error 50.
func Status(raw []byte) error {
	conf, err := ParseConfig(raw)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "berth pod network is not configured", err.Error())
	}
	if _, err := netlink.LinkByName(conf.Bridge); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("bridge %s does not exist", conf.Bridge), "berth-agent creates it once the node has a podCIDR")
	}
	if _, err := OpenStore(conf.DataDir, conf.Name); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "address store unavailable", err.Error())
	}
	return nil
}

// Add attaches the pod: veth pair, host end on the bridge, pod end with an
// address from each pod range and default routes via the bridge.
func Add(req Request) (*current.Result, error) {
	conf, err := ParseConfig(req.Config)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "bad network configuration", err.Error())
	}
	if req.Netns == "" {
		return nil, types.NewError(types.ErrInvalidNetNS, "no network namespace given", "CNI_NETNS must name the pod's namespace")
	}
	if !ifNameRE.MatchString(req.IfName) {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("interface name %q is not valid", req.IfName), "")
	}
	br, err := netlink.LinkByName(conf.Bridge)
	if err != nil {
		return nil, types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("bridge %s does not exist", conf.Bridge), "berth-agent has not configured this node yet")
	}
	mtu := conf.MTU
	if mtu == 0 {
		mtu = br.Attrs().MTU
	}
	podNS, err := netns.GetFromPath(req.Netns)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("open network namespace %s", req.Netns), err.Error())
	}
	defer podNS.Close()

	store, err := OpenStore(conf.DataDir, conf.Name)
	if err != nil {
		return nil, types.NewError(types.ErrIOFailure, "address store", err.Error())
	}
	att := Attachment{ContainerID: req.ContainerID, IfName: req.IfName}
	addrs, err := store.Reserve(att, conf.Ranges)
	if err != nil {
		code := uint(types.ErrIOFailure)
		if errors.Is(err, ErrExhausted) {
			code = types.ErrTryAgainLater
		}
		return nil, types.NewError(code, "no pod address", err.Error())
	}
	res, err := attach(conf, req, br, mtu, podNS, addrs)
	if err != nil {
		_, _ = store.Release(att)
		_ = removeVeth(req)
		return nil, types.NewError(types.ErrInternal, "attach pod", err.Error())
	}
	return res, nil
}

func attach(conf *NetConf, req Request, br netlink.Link, mtu int, podNS netns.NsHandle, addrs []netip.Addr) (*current.Result, error) {
	pod, err := netlink.NewHandleAt(podNS, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer pod.Close()
	hostNS, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer hostNS.Close()

	hostName := HostVethName(req.ContainerID, req.IfName)
	if old, err := pod.LinkByName(req.IfName); err == nil {
		// A repeated ADD: start again from a clean interface.
		if err := pod.LinkDel(old); err != nil {
			return nil, fmt.Errorf("remove old %s: %w", req.IfName, err)
		}
	}
	if old, err := netlink.LinkByName(hostName); err == nil {
		_ = netlink.LinkDel(old)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: req.IfName, MTU: mtu},
		PeerName:      hostName,
		PeerMTU:       uint32(mtu),
		PeerNamespace: netlink.NsFd(hostNS),
	}
	if err := pod.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s/%s: %w", req.IfName, hostName, err)
	}
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetMaster(host, br); err != nil {
		return nil, fmt.Errorf("attach %s to %s: %w", hostName, conf.Bridge, err)
	}
	// Hairpin: a pod that reaches itself through a Service gets its own
	// (masqueraded) packets back through the port they came in on.
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return nil, fmt.Errorf("hairpin on %s: %w", hostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, err
	}
	podLink, err := pod.LinkByName(req.IfName)
	if err != nil {
		return nil, err
	}
	if lo, err := pod.LinkByName("lo"); err == nil {
		_ = pod.LinkSetUp(lo)
	}
	result := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostName, Mac: host.Attrs().HardwareAddr.String()},
			{Name: req.IfName, Mac: podLink.Attrs().HardwareAddr.String(), Sandbox: req.Netns},
		},
		DNS: types.DNS{Nameservers: conf.DNS.Nameservers, Domain: conf.DNS.Domain, Search: conf.DNS.Search, Options: conf.DNS.Options},
	}
	for _, a := range addrs {
		r := rangeOf(conf.Ranges, a)
		ipnet := net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(r.Bits(), a.BitLen())}
		addr := &netlink.Addr{IPNet: &ipnet}
		if a.Is6() {
			addr.Flags = 0x02 // IFA_F_NODAD: the store already made it unique
		}
		if err := pod.AddrAdd(podLink, addr); err != nil {
			return nil, fmt.Errorf("add %v to %s: %w", ipnet.String(), req.IfName, err)
		}
		gw := Gateway(r)
		result.IPs = append(result.IPs, &current.IPConfig{Interface: current.Int(1), Address: ipnet, Gateway: net.IP(gw.AsSlice())})
	}
	if err := pod.LinkSetUp(podLink); err != nil {
		return nil, err
	}
	for _, ipc := range result.IPs {
		dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if ipc.Address.IP.To4() == nil {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		route := &netlink.Route{LinkIndex: podLink.Attrs().Index, Dst: dst, Gw: ipc.Gateway}
		if err := pod.RouteAdd(route); err != nil {
			return nil, fmt.Errorf("default route via %v: %w", ipc.Gateway, err)
		}
		result.Routes = append(result.Routes, &types.Route{Dst: *dst, GW: ipc.Gateway})
	}
	return result, nil
}

func rangeOf(ranges []netip.Prefix, a netip.Addr) netip.Prefix {
	for _, r := range ranges {
		if r.Contains(a) {
			return r
		}
	}
	return netip.Prefix{}
}

// Del detaches the pod and frees its addresses. It succeeds when there is
// nothing left to do, and frees the addresses even when the pod's namespace
// is already gone.
func Del(req Request) error {
	conf, err := ParseConfig(req.Config)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad network configuration", err.Error())
	}
	store, err := OpenStore(conf.DataDir, conf.Name)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "address store", err.Error())
	}
	if _, err := store.Release(Attachment{ContainerID: req.ContainerID, IfName: req.IfName}); err != nil {
		return types.NewError(types.ErrIOFailure, "free pod address", err.Error())
	}
	if err := removeVeth(req); err != nil {
		return types.NewError(types.ErrInternal, "remove pod interface", err.Error())
	}
	return nil
}

// removeVeth deletes the pod's interface (its host end goes with it), or the
// host end alone when the namespace is gone.
func removeVeth(req Request) error {
	if req.Netns != "" {
		if podNS, err := netns.GetFromPath(req.Netns); err == nil {
			defer podNS.Close()
			if h, err := netlink.NewHandleAt(podNS, unix.NETLINK_ROUTE); err == nil {
				defer h.Close()
				if l, err := h.LinkByName(req.IfName); err == nil {
					if err := h.LinkDel(l); err != nil && !gone(err) {
						return err
					}
				}
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// With the namespace just deleted, the kernel may still be taking the
	// host end down: it can vanish between the lookup and the delete.
	if l, err := netlink.LinkByName(HostVethName(req.ContainerID, req.IfName)); err == nil {
		if err := netlink.LinkDel(l); err != nil && !gone(err) {
			return err
		}
	}
	return nil
}

// gone reports whether a link operation failed because the link no longer
// exists, which is what DEL wants anyway.
func gone(err error) bool {
	var notFound netlink.LinkNotFoundError
	return errors.As(err, &notFound) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// GC frees every address whose attachment the runtime no longer lists.
func GC(raw []byte) error {
	conf, err := ParseConfig(raw)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad network configuration", err.Error())
	}
	store, err := OpenStore(conf.DataDir, conf.Name)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "address store", err.Error())
	}
	if _, err := store.GC(conf.ValidAttachments); err != nil {
		return types.NewError(types.ErrIOFailure, "garbage-collect addresses", err.Error())
	}
	return nil
}
