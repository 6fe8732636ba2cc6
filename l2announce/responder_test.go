package l2announce

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var (
	ourMAC   = net.HardwareAddr{0x0e, 0xbe, 0, 0, 0, 1}
	theirMAC = net.HardwareAddr{0x0e, 0xbe, 0, 0, 0, 2}
	lbIP     = netip.MustParseAddr("198.51.100.10")
	lbIP6    = netip.MustParseAddr("2001:db8::10")
	client   = netip.MustParseAddr("198.18.0.250")
)

func owned(a netip.Addr) bool { return a == lbIP || a == lbIP6 }

func arpFrame(t testing.TB, op arp.Operation, srcMAC net.HardwareAddr, src, target netip.Addr) []byte {
	t.Helper()
	p, err := arp.NewPacket(op, srcMAC, src, ethernet.Broadcast, target)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: srcMAC, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestARPReply(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame []byte
		want  string // "" for an answer; else part of the reason
	}{
		{"request for our address", arpFrame(t, arp.OperationRequest, theirMAC, client, lbIP), ""},
		{"RFC 5227 probe for our address", arpFrame(t, arp.OperationRequest, theirMAC, netip.IPv4Unspecified(), lbIP), ""},
		{"request for another address", arpFrame(t, arp.OperationRequest, theirMAC, client, netip.MustParseAddr("198.51.100.11")), "not announced"},
		{"a reply", arpFrame(t, arp.OperationReply, theirMAC, client, lbIP), "not a request"},
		{"our own request", arpFrame(t, arp.OperationRequest, ourMAC, client, lbIP), "our own"},
		{"gratuitous", arpFrame(t, arp.OperationRequest, theirMAC, lbIP, lbIP), "gratuitous"},
		{"truncated", arpFrame(t, arp.OperationRequest, theirMAC, client, lbIP)[:20], "garbled"},
		{"not ARP", append(append(append([]byte{}, ethernet.Broadcast...), theirMAC...), 0x08, 0x00, 0x45), "not ARP"},
		{"runt", []byte{1, 2, 3}, "not an Ethernet frame"},
		{"broadcast Ethernet source", withEthernetSource(arpFrame(t, arp.OperationRequest, theirMAC, client, lbIP), ethernet.Broadcast), "group"},
	} {
		reply, why := ARPReply(c.frame, ourMAC, owned)
		if c.want == "" {
			if reply == nil {
				t.Errorf("%s: no answer (%s)", c.name, why)
				continue
			}
			var f ethernet.Frame
			var p arp.Packet
			if err := f.UnmarshalBinary(reply); err != nil {
				t.Fatal(err)
			}
			if err := p.UnmarshalBinary(f.Payload); err != nil {
				t.Fatal(err)
			}
			if p.Operation != arp.OperationReply || p.SenderIP != lbIP || !bytes.Equal(p.SenderHardwareAddr, ourMAC) ||
				!bytes.Equal(f.Destination, theirMAC) || !bytes.Equal(p.TargetHardwareAddr, theirMAC) {
				t.Errorf("%s: reply %+v in %+v", c.name, p, f)
			}
			continue
		}
		if reply != nil || !strings.Contains(why, c.want) {
			t.Errorf("%s: reply %v, reason %q; want none, %q", c.name, reply != nil, why, c.want)
		}
	}
}

func TestNDPAdvert(t *testing.T) {
	ns := func(target netip.Addr, from net.HardwareAddr) []byte {
		b, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: target,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: from}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	solicitor := netip.MustParseAddr("2001:db8::250")
	b, dst, why := NDPAdvert(ns(lbIP6, theirMAC), solicitor, ourMAC, owned)
	if b == nil || dst != solicitor {
		t.Fatalf("solicitation for our address: %v to %s (%s)", b != nil, dst, why)
	}
	m, err := ndp.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok || na.TargetAddress != lbIP6 || !na.Solicited || !na.Override {
		t.Fatalf("advertisement %+v", m)
	}
	if l, ok := na.Options[0].(*ndp.LinkLayerAddress); !ok || !bytes.Equal(l.Addr, ourMAC) || l.Direction != ndp.Target {
		t.Errorf("advertisement options %+v", na.Options)
	}
	// A duplicate-address probe is answered to all nodes, unsolicited.
	if b, dst, _ := NDPAdvert(ns(lbIP6, theirMAC), netip.IPv6Unspecified(), ourMAC, owned); b == nil || dst != AllNodes {
		t.Errorf("probe: answered %v to %s", b != nil, dst)
	}
	for _, c := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"another address", ns(netip.MustParseAddr("2001:db8::11"), theirMAC), "not announced"},
		{"our own solicitation", ns(lbIP6, ourMAC), "our own"},
		{"garbled", []byte{135, 0, 0}, "garbled"},
	} {
		if b, _, why := NDPAdvert(c.msg, solicitor, ourMAC, owned); b != nil || !strings.Contains(why, c.want) {
			t.Errorf("%s: answered %v, reason %q; want %q", c.name, b != nil, why, c.want)
		}
	}
	if g, err := GratuitousARP(lbIP, ourMAC); err != nil || len(g) < 42 {
		t.Errorf("gratuitous ARP: %v", err)
	}
	if u, err := UnsolicitedNA(lbIP6, ourMAC); err != nil || len(u) == 0 {
		t.Errorf("unsolicited NA: %v", err)
	}
}

// FuzzARPReply: no frame makes the responder panic, and it only ever
// answers for an owned address, from this node's hardware address.
func FuzzARPReply(f *testing.F) {
	f.Add(arpFrame(f, arp.OperationRequest, theirMAC, client, lbIP))
	f.Add(arpFrame(f, arp.OperationRequest, theirMAC, client, netip.MustParseAddr("198.51.100.11")))
	f.Add(arpFrame(f, arp.OperationReply, theirMAC, client, lbIP))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		reply, _ := ARPReply(frame, ourMAC, owned)
		if reply == nil {
			return
		}
		var fr ethernet.Frame
		var p arp.Packet
		if err := fr.UnmarshalBinary(reply); err != nil {
			t.Fatalf("reply frame: %v", err)
		}
		if err := p.UnmarshalBinary(fr.Payload); err != nil {
			t.Fatalf("reply packet: %v", err)
		}
		if !owned(p.SenderIP) || !bytes.Equal(p.SenderHardwareAddr, ourMAC) || p.Operation != arp.OperationReply {
			t.Fatalf("answered %+v", p)
		}
		// Only ever to the unicast host that sent the request.
		if !bytes.Equal(fr.Destination, frame[6:12]) || fr.Destination[0]&1 != 0 {
			t.Fatalf("reply to %s for a frame from %x", fr.Destination, frame[6:12])
		}
	})
}

// FuzzNDPAdvert: no message makes the responder panic, and it only ever
// advertises an owned address.
func FuzzNDPAdvert(f *testing.F) {
	seed, _ := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: lbIP6,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: theirMAC}}})
	f.Add(seed)
	f.Add([]byte{135, 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		b, _, _ := NDPAdvert(msg, netip.MustParseAddr("2001:db8::250"), ourMAC, owned)
		if b == nil {
			return
		}
		m, err := ndp.ParseMessage(b)
		if err != nil {
			t.Fatalf("advertisement: %v", err)
		}
		if na, ok := m.(*ndp.NeighborAdvertisement); !ok || !owned(na.TargetAddress) {
			t.Fatalf("advertised %+v", m)
		}
	})
}

// withEthernetSource is frame with another Ethernet source address.
func withEthernetSource(frame []byte, src net.HardwareAddr) []byte {
	out := append([]byte(nil), frame...)
	copy(out[6:12], src)
	return out
}

// A request whose ARP sender hardware address names another host (a
// victim) than the frame's Ethernet source is answered to the Ethernet
// source: nodes cannot be made to send their replies at a third host.
func TestARPReplyGoesToEthernetSource(t *testing.T) {
	victim := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	frame := withEthernetSource(arpFrame(t, arp.OperationRequest, victim, client, lbIP), theirMAC)
	reply, why := ARPReply(frame, ourMAC, owned)
	if reply == nil {
		t.Fatalf("no answer: %s", why)
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(reply); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Destination, theirMAC) {
		t.Errorf("reply sent to %s, want the frame's source %s (not the claimed %s)", f.Destination, theirMAC, victim)
	}
}
