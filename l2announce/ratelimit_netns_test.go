package l2announce

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
)

// In the kernel: a host floods the node with ARP requests for an address
// it announces; with a limit of 5 replies (and next to no refill) it gets
// 5 answers and the rest are dropped, counted as limited, while another
// host on the same LAN still resolves the address with its own kernel's
// ARP.
func TestARPReplyLimitPerSource(t *testing.T) {
	spaces := bridgedHosts(t, "198.18.29.1/24", "198.18.29.2/24", "198.18.29.3/24")
	node, flooder, client := spaces[0], spaces[1], spaces[2]
	announced := netip.MustParseAddr("198.18.29.50")
	var srv *ARPServer
	var nodeMAC net.HardwareAddr
	if err := node.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		nodeMAC = ifi.HardwareAddr
		srv, err = ListenARP(ifi)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv.LimitReplies(ReplyLimit{Rate: 0.001, Burst: 5})
	m := NewMetrics()
	seen := serve(t, func(ctx context.Context, owned Owned, log func(string)) error {
		return srv.Serve(ctx, owned, func(r string) {
			log(r)
			m.frame(r)
		})
	}, func(a netip.Addr) bool { return a == announced })

	// The flooder: 50 requests from its own packet socket.
	var conn *packet.Conn
	var fifi *net.Interface
	if err := flooder.Do(func() (err error) {
		if fifi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		conn, err = packet.Listen(fifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p, err := arp.NewPacket(arp.OperationRequest, fifi.HardwareAddr, netip.MustParseAddr("198.18.29.2"), ethernet.Broadcast, announced)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	frame, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: fifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	const flood = 50
	for range flood {
		if _, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			t.Fatal(err)
		}
	}
	count := seen.count
	waitFor(t, "the server to see the whole flood", func() bool { return count("answered")+count(LimitedReason) == flood })
	if a, l := count("answered"), count(LimitedReason); a != 5 || l != flood-5 {
		t.Errorf("flood of %d: %d answered, %d limited; want 5 and %d", flood, a, l, flood-5)
	}
	if v, _ := series(t, m, "berth_agent_l2_frames_total", "outcome", "limited"); v != flood-5 {
		t.Errorf("frames_total{outcome=limited} %v; want %d", v, flood-5)
	}
	// What reached the flooder: the five replies, from the node.
	replies := 0
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	for replies < 5 {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("the flooder got %d replies: %v", replies, err)
		}
		var f ethernet.Frame
		var r arp.Packet
		if f.UnmarshalBinary(buf[:n]) == nil && r.UnmarshalBinary(f.Payload) == nil &&
			r.Operation == arp.OperationReply && r.SenderIP == announced && r.SenderHardwareAddr.String() == nodeMAC.String() {
			replies++
		}
	}

	// Another host is answered: its kernel resolves the address.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, "the client to resolve "+announced.String(), func() bool {
		_ = client.Do(func() error {
			c, err := net.Dial("udp", net.JoinHostPort(announced.String(), "9"))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("who has"))
			return err
		})
		out, err := client.Command(ctx, "ip", "neigh", "show", announced.String(), "dev", "eth0").CombinedOutput()
		return err == nil && strings.Contains(string(out), "lladdr "+nodeMAC.String())
	})
}

// The same for NDP, where the source is the solicitor's IPv6 address: a
// flood of solicitations from the client's link-local address gets 3
// advertisements, and the client's kernel, soliciting from its global
// address, is still answered.
func TestNDPReplyLimitPerSource(t *testing.T) {
	l := ndpLink(t, "ndpl")
	announced := netip.MustParseAddr("2001:db8:9::52")
	l.srv.LimitReplies(ReplyLimit{Rate: 0.001, Burst: 3})
	seen := serve(t, l.srv.Serve, func(a netip.Addr) bool { return a == announced })
	if err := l.srv.Join(announced); err != nil {
		t.Fatal(err)
	}
	group, err := solicitedNode(announced)
	if err != nil {
		t.Fatal(err)
	}
	const flood = 20
	// ndpLink waited for the node's link-local address; the client's may
	// still be coming up (the link's carrier).
	waitFor(t, "the client's link-local address", func() bool {
		return l.client.Do(func() error {
			ifi, err := net.InterfaceByName(l.clientIf)
			if err != nil {
				return err
			}
			c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
			if err != nil {
				return err
			}
			return c.Close()
		}) == nil
	})
	var from netip.Addr
	if err := l.client.Do(func() error {
		ifi, err := net.InterfaceByName(l.clientIf)
		if err != nil {
			return err
		}
		c, ll, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			return err
		}
		defer c.Close()
		from = ll
		ns := &ndp.NeighborSolicitation{TargetAddress: announced,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
		for range flood {
			if err := c.WriteTo(ns, nil, group); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	count := seen.count
	waitFor(t, "the server to see the whole flood", func() bool { return count(LimitedReason) == flood-3 })
	if a := count("answered"); a != 3 {
		t.Errorf("flood of %d from %s: %d answered; want 3", flood, from, a)
	}
	var got string
	waitFor(t, "the client's kernel to resolve "+announced.String(), func() bool {
		got = l.neigh(t, announced)
		return strings.Contains(got, "lladdr "+l.nodeMAC.String())
	})
}
