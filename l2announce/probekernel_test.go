package l2announce

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"

	"github.com/berthnet/berth/lab/netns"
)

// startProber makes a host in ns probe for addr as RFC 5227 says (ARP
// requests from 0.0.0.0, broadcast) every 20 ms until the test ends. The
// frames are built here with the arp package, not by the code under test.
func startProber(t *testing.T, ns *netns.Namespace, link string, addr netip.Addr) {
	t.Helper()
	var conn *packet.Conn
	var ifi *net.Interface
	if err := ns.Do(func() (err error) {
		if ifi, err = net.InterfaceByName(link); err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, netip.IPv4Unspecified(), net.HardwareAddr{0, 0, 0, 0, 0, 0}, addr)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	frame, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			_, _ = conn.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
	})
}

// In the kernel: a host on the link that probes for an address (and
// does not hold it) is seen by the node's conflict probe as probing only;
// once it holds the address, its kernel answers and the probe sees a
// claim, though the host keeps probing too.
func TestARPProbeSeesAProber(t *testing.T) {
	client, _, srv := arpPair(t)
	clientMAC := linkMAC(t, client, "eth0")
	wanted := netip.MustParseAddr("198.18.9.62")
	serve(t, srv.Serve, func(netip.Addr) bool { return false })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	startProber(t, client, "eth0", wanted)

	c, err := srv.Probe(ctx, wanted, ProbeCount, ProbeInterval)
	if err != nil || c == nil || !c.ProbeOnly || !bytes.Equal(c.MAC, clientMAC) {
		t.Fatalf("probe while the client probes: %+v, %v; want probe only by %s", c, err, clientMAC)
	}
	if c, err := srv.Probe(ctx, netip.MustParseAddr("198.18.9.63"), ProbeCount, ProbeInterval); c != nil || err != nil {
		t.Fatalf("probe for another address: %+v, %v; want nobody", c, err)
	}
	if err := client.AddAddress("eth0", wanted.String()+"/32"); err != nil {
		t.Fatal(err)
	}
	c, err = srv.Probe(ctx, wanted, ProbeCount, ProbeInterval)
	if err != nil || c == nil || c.ProbeOnly || !bytes.Equal(c.MAC, clientMAC) {
		t.Fatalf("probe once the client holds the address: %+v, %v; want a claim by %s", c, err, clientMAC)
	}
}
