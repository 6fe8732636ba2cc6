package podnet

import (
	"fmt"
	"net/netip"
)

// The smallest MTU a pod interface may have: IPv4's minimum reassembly
// size, and IPv6's minimum link MTU (the kernel turns IPv6 off on a link
// below it, so IPv6 pods would get no address).
const (
	MinMTU  = 576
	MinMTU6 = 1280
	MaxMTU  = 65535
)

// ValidateMTU checks an --mtu value before anything is applied: 0 (derive
// it) or a size a Linux link can have.
func ValidateMTU(mtu int) error {
	if mtu != 0 && (mtu < MinMTU || mtu > MaxMTU) {
		return fmt.Errorf("--mtu %d: use %d to %d (%d or more with IPv6 pods), or 0 to derive it from the uplink and the mode", mtu, MinMTU, MaxMTU, MinMTU6)
	}
	return nil
}

// checkMTU refuses an override that the node cannot carry: above what the
// uplink leaves after the mode's encapsulation (pods would send packets
// the uplink drops, or the VXLAN device could not be made), or below
// IPv6's minimum when the node has an IPv6 pod range.
func checkMTU(mtu, derived int, mode Mode, up Uplink, podCIDRs []netip.Prefix) error {
	if err := ValidateMTU(mtu); err != nil {
		return err
	}
	if mtu > derived {
		return fmt.Errorf("--mtu %d is above what uplink %s (MTU %d) carries in %s mode (at most %d): lower --mtu or set it to 0 to derive it", mtu, up.Name, up.MTU, mode, derived)
	}
	for _, p := range podCIDRs {
		if p.Addr().Is6() && mtu < MinMTU6 {
			return fmt.Errorf("--mtu %d is below IPv6's minimum of %d and the node has the IPv6 pod range %s: raise --mtu or set it to 0", mtu, MinMTU6, p)
		}
	}
	return nil
}
