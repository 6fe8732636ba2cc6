package l2announce

import (
	"net"
	"net/netip"
	"path/filepath"
	"sort"
)

// Link is what the announcer knows of one of this node's interfaces.
type Link struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	// Up: administratively up with carrier (IFF_UP and IFF_RUNNING).
	Up bool
	// Virtual: a bridge, veth, tunnel, dummy or other software device;
	// physical ports, bonds and VLANs are not.
	Virtual bool
	// Enslaved: a port of a bond or bridge (its master announces).
	Enslaved bool
	// Prefixes are its addresses with their prefix lengths.
	Prefixes []netip.Prefix
}

// Interfaces picks the links this node announces a group's addresses on:
// with patterns, every link whose name matches one; without, the links
// holding an address on the subnet of one of samples (an address of each
// of the pool's ranges), else every link that is not virtual, loopback
// or enslaved. Only links with an Ethernet address qualify. Down links
// are included (the caller gates on Up); sorted by name.
func Interfaces(patterns []string, samples []netip.Addr, links []Link) []string {
	var out []string
	add := func(l *Link) { out = append(out, l.Name) }
	usable := func(l *Link) bool { return len(l.MAC) == 6 }
	if len(patterns) > 0 {
		for i := range links {
			l := &links[i]
			for _, p := range patterns {
				if ok, _ := filepath.Match(p, l.Name); ok && usable(l) {
					add(l)
					break
				}
			}
		}
	} else {
		for i := range links {
			l := &links[i]
			if !usable(l) {
				continue
			}
		onLink:
			for _, p := range l.Prefixes {
				for _, s := range samples {
					if p.Contains(s) {
						add(l)
						break onLink
					}
				}
			}
		}
		if len(out) == 0 {
			for i := range links {
				l := &links[i]
				if usable(l) && !l.Virtual && !l.Enslaved {
					add(l)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
