package l2announce

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// Owned reports whether this node announces addr on the interface a
// packet came in on: the address was assigned by Berth and this node owns
// it now. Nothing else is ever answered.
type Owned func(addr netip.Addr) bool

// ARPReply decides what to do with one Ethernet frame received on an
// interface whose hardware address is mac: the reply frame for an ARP
// request that asks for an owned address (probes from 0.0.0.0 included:
// answering is how a prober learns the address is taken), or nil and why
// not. The reply goes to the frame's Ethernet source, the host that sent
// it: the hardware address inside the ARP packet is the sender's word, and
// a host on the LAN could name a victim there to have every node's
// replies sent to it.
func ARPReply(frame []byte, mac net.HardwareAddr, owned Owned) ([]byte, string) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil {
		return nil, "not an Ethernet frame: " + err.Error()
	}
	if f.EtherType != ethernet.EtherTypeARP {
		return nil, "not ARP"
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, "garbled ARP: " + err.Error()
	}
	switch {
	case p.Operation != arp.OperationRequest:
		return nil, fmt.Sprintf("ARP operation %d, not a request", p.Operation)
	case !p.TargetIP.Is4():
		return nil, "target is not an IPv4 address"
	case bytes.Equal(p.SenderHardwareAddr, mac), bytes.Equal(f.Source, mac):
		return nil, "our own request"
	case f.Source[0]&1 != 0:
		return nil, "a group (multicast or broadcast) Ethernet source"
	case p.SenderIP == p.TargetIP:
		return nil, "gratuitous announcement of " + p.TargetIP.String()
	case !owned(p.TargetIP):
		return nil, p.TargetIP.String() + " is not announced by this node here"
	}
	b, err := encodeARP(f.Source, mac, arp.OperationReply, p.TargetIP, p.SenderHardwareAddr, p.SenderIP)
	if err != nil {
		return nil, "reply: " + err.Error()
	}
	return b, "answered for " + p.TargetIP.String()
}

// encodeARP is an Ethernet frame from mac to dst carrying an ARP packet of
// op from (mac, senderIP) about (targetMAC, targetIP).
func encodeARP(dst, mac net.HardwareAddr, op arp.Operation, senderIP netip.Addr, targetMAC net.HardwareAddr, targetIP netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(op, mac, senderIP, targetMAC, targetIP)
	if err != nil {
		return nil, err
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := ethernet.Frame{Destination: dst, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
	return f.MarshalBinary()
}

// GratuitousARP is the frame that tells the LAN addr is at mac: sent a
// few times when this node takes an address, and when its interface comes
// back up.
func GratuitousARP(addr netip.Addr, mac net.HardwareAddr) ([]byte, error) {
	return encodeARP(ethernet.Broadcast, mac, arp.OperationRequest, addr, ethernet.Broadcast, addr)
}

// AllNodes is where an advertisement to a duplicate-address probe goes.
var AllNodes = netip.MustParseAddr("ff02::1")

// NDPAdvert decides what to do with one ICMPv6 message from src received
// on an interface whose hardware address is mac: for a neighbour
// solicitation of an owned address, the advertisement to send and where
// (the solicitor, or all nodes when the solicitation is a duplicate
// address probe from ::); otherwise nil and why not.
func NDPAdvert(msg []byte, src netip.Addr, mac net.HardwareAddr, owned Owned) ([]byte, netip.Addr, string) {
	m, err := ndp.ParseMessage(msg)
	if err != nil {
		return nil, netip.Addr{}, "garbled NDP: " + err.Error()
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok {
		return nil, netip.Addr{}, fmt.Sprintf("%s, not a neighbour solicitation", m.Type())
	}
	t := ns.TargetAddress
	switch {
	case !t.Is6() || t.Is4In6():
		return nil, netip.Addr{}, "target is not an IPv6 address"
	case !owned(t):
		return nil, netip.Addr{}, t.String() + " is not announced by this node here"
	}
	for _, o := range ns.Options {
		if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Source && bytes.Equal(l.Addr, mac) {
			return nil, netip.Addr{}, "our own solicitation"
		}
	}
	dst, solicited := src, true
	if src.IsUnspecified() {
		// RFC 4861 7.2.4: a probe gets an unsolicited answer to all nodes.
		dst, solicited = AllNodes, false
	}
	na := &ndp.NeighborAdvertisement{Solicited: solicited, Override: true, TargetAddress: t,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}}}
	b, err := ndp.MarshalMessage(na)
	if err != nil {
		return nil, netip.Addr{}, "advertisement: " + err.Error()
	}
	return b, dst, "answered for " + t.String()
}

// UnsolicitedNA is the advertisement that tells all nodes addr is at mac.
func UnsolicitedNA(addr netip.Addr, mac net.HardwareAddr) ([]byte, error) {
	return ndp.MarshalMessage(&ndp.NeighborAdvertisement{Override: true, TargetAddress: addr,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}}})
}
