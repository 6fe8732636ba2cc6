package l2announce

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// ReportState says what a Report is about.
type ReportState string

const (
	// Announcing: this node answers for the address on Interfaces.
	Announcing ReportState = "Announcing"
	// Conflict: another host on the LAN answered the probe for the
	// address; this node does not announce it and probes again later.
	Conflict ReportState = "Conflict"
	// NoAnnouncer: no node may announce the address.
	NoAnnouncer ReportState = "NoAnnouncer"
)

// Report is one node's word on one address.
type Report struct {
	Addr       netip.Addr
	Services   []string
	State      ReportState
	Node       string
	Interfaces []string
	// ConflictMAC is who holds the address, for Conflict.
	ConflictMAC net.HardwareAddr
}

func (r Report) key() string {
	return fmt.Sprint(r.State, r.Services, r.Interfaces, r.ConflictMAC.String())
}

// Says reports whether o says the same of the address as r: state, node,
// interfaces and conflicting MAC (the Services it is written on aside).
func (r Report) Says(o *Report) bool {
	return o != nil && o.Addr == r.Addr && o.State == r.State && o.Node == r.Node &&
		slices.Equal(o.Interfaces, r.Interfaces) && o.ConflictMAC.String() == r.ConflictMAC.String()
}

// Describe says in one line what a report means, for people: events,
// logs and condition messages. No decision reads it.
func (r Report) Describe() string {
	switch r.State {
	case Announcing:
		return fmt.Sprintf("%s announced by %s on %s", r.Addr, r.Node, strings.Join(r.Interfaces, ", "))
	case Conflict:
		return fmt.Sprintf("%s is in use by %s on the LAN (%s probed on %s), so it is not announced", r.Addr, r.ConflictMAC, r.Node, strings.Join(r.Interfaces, ", "))
	default:
		return fmt.Sprintf("%s: no node may announce it (no live node is selected, ready with an interface up and, for policy Local, holding a ready endpoint)", r.Addr)
	}
}
