package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/berthnet/berth/internal/kmod"
	"github.com/berthnet/berth/internal/sysctl"
)

// The kernel parameters the agent needs and cannot set itself: /proc/sys
// is read-only in a container that is not privileged. The agent checks
// them (sysctl.Ensure writes only what differs) and reports one that
// drifted.
const (
	ipv4Forwarding     = "/proc/sys/net/ipv4/ip_forward"
	ipv6Forwarding     = "/proc/sys/net/ipv6/conf/all/forwarding"
	bridgeCallIPTables = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	bridgeCallIP6      = "/proc/sys/net/bridge/bridge-nf-call-ip6tables"
)

// runInit is `berth-agent init`, the privileged init container: it loads
// br_netfilter and sets the parameters for the parts that are on, then
// exits, so the agent itself runs with NET_ADMIN and NET_RAW only.
func runInit(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("berth-agent init", flag.ContinueOnError)
	podNetwork := fs.Bool("pod-network", true, "set what the pod network needs: IPv4 and IPv6 forwarding")
	netPol := fs.Bool("network-policy", true, "set what NetworkPolicy needs: br_netfilter, bridged traffic through the inet hooks")
	modules := fs.String("modules-dir", "/lib/modules", "the host's kernel modules (mounted read-only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *netPol {
		if _, err := os.Stat(bridgeCallIPTables); errors.Is(err, os.ErrNotExist) {
			l, err := kmod.NewLoader(*modules)
			if err != nil {
				return err
			}
			if err := l.Load("br_netfilter"); err != nil {
				return fmt.Errorf("NetworkPolicy between pods of one node needs br_netfilter: %w", err)
			}
			fmt.Fprintln(out, "loaded br_netfilter")
		}
		for _, p := range []string{bridgeCallIPTables, bridgeCallIP6} {
			if err := ensure(out, p, "1"); err != nil {
				return err
			}
		}
	}
	if *podNetwork {
		if err := ensure(out, ipv4Forwarding, "1"); err != nil {
			return err
		}
		// IPv6 may be off on the node; then there is nothing to forward.
		if err := ensure(out, ipv6Forwarding, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func ensure(out io.Writer, path, value string) error {
	if err := sysctl.Ensure(path, value); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s = %s\n", path, value)
	return nil
}
