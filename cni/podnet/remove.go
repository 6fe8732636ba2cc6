package podnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/internal/nftrules"
)

// Removed lists what Remove took away, for the agent's log.
type Removed struct {
	Files  []string
	Links  []string
	Routes int
	Table  bool
}

// Remove takes the pod network off the node in the calling thread's
// network namespace, for an uninstall: the CNI config first (the runtime
// stops choosing Berth for new pods), then the plugin binary, the routes to
// other nodes' pod ranges (RouteProtocol), the VXLAN device and the bridge
// (their own routes, neighbours and FDB entries go with them), and the
// masquerade table. The pods' own veths stay until their pods go; the
// plugin's address store (DataDir) is the plugin's, on the host, and
// stays. Every step runs even when one fails, and each is idempotent: a
// second Remove finds nothing and returns no error.
//
// With keepCNIFiles the CNI config and plugin stay: the runtime needs both
// to tear down a pod still on the pod network (a pod whose DEL fails stays
// Terminating for ever), see PodsAttached.
func Remove(ctx context.Context, opts AgentOptions, keepCNIFiles bool) (Removed, error) {
	var out Removed
	var errs []error
	files := []string{filepath.Join(opts.ConfDir, cni.ConflistName), filepath.Join(opts.BinDir, cni.PluginType)}
	if keepCNIFiles {
		files = nil
	}
	for _, p := range files {
		// Looked up first: unlink on a read-only file system (the agent's
		// own, where the folders are not mounted) fails even for a file
		// that is not there.
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		switch err := os.Remove(p); {
		case err == nil:
			out.Files = append(out.Files, p)
		case !errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	n, err := removeRoutes(RouteProtocol)
	out.Routes = n
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range []string{VXLANDevice, Bridge} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				errs = append(errs, fmt.Errorf("link %s: %w", name, err))
			}
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
			continue
		}
		out.Links = append(out.Links, name)
	}
	if out.Table, err = nftrules.RemoveTable(ctx, NFTable); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// removeRoutes deletes every route of protocol proto, in both families,
// from the main table, and returns how many it deleted.
func removeRoutes(proto netlink.RouteProtocol) (int, error) {
	n := 0
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := netlink.RouteListFiltered(fam, &netlink.Route{Protocol: proto}, netlink.RT_FILTER_PROTOCOL)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			errs = append(errs, fmt.Errorf("list routes: %w", err))
			continue
		}
		for _, h := range have {
			if err := netlink.RouteDel(&h); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete route %v: %w", h.Dst, err))
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

// PodsAttached counts the links attached to the pod bridge in the calling
// thread's network namespace: the host ends of pods still on the pod
// network (0 when there is no bridge).
func PodsAttached() (int, error) {
	br, err := netlink.LinkByName(Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return 0, nil
		}
		return 0, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			n++
		}
	}
	return n, nil
}
