package l2announce

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var (
	unspecified4 = netip.IPv4Unspecified()
	otherIP      = netip.MustParseAddr("198.51.100.11")
	otherIP6     = netip.MustParseAddr("2001:db8::11")
)

func TestARPConflict(t *testing.T) {
	probeFrame, err := arpProbe(lbIP, theirMAC)
	if err != nil {
		t.Fatal(err)
	}
	const (
		none  = "none"
		claim = "claim"
		probe = "probe only"
	)
	for _, c := range []struct {
		name  string
		frame []byte
		want  string // for lbIP, with theirMAC
	}{
		{"their reply from the address", arpFrame(t, arp.OperationReply, theirMAC, lbIP, client), claim},
		{"their gratuitous announcement", arpFrame(t, arp.OperationRequest, theirMAC, lbIP, lbIP), claim},
		{"their request from the address", arpFrame(t, arp.OperationRequest, theirMAC, lbIP, client), claim},
		{"their probe for the address", probeFrame, probe},
		{"a request for the address from elsewhere", arpFrame(t, arp.OperationRequest, theirMAC, client, lbIP), none},
		{"a reply from another address", arpFrame(t, arp.OperationReply, theirMAC, otherIP, client), none},
		{"their probe for another address", arpFrame(t, arp.OperationRequest, theirMAC, unspecified4, otherIP), none},
		{"a reply to a probe is no probe", arpFrame(t, arp.OperationReply, theirMAC, unspecified4, lbIP), none},
		{"our own announcement", arpFrame(t, arp.OperationRequest, ourMAC, lbIP, lbIP), none},
		{"our own probe", arpFrame(t, arp.OperationRequest, ourMAC, unspecified4, lbIP), none},
		{"truncated", arpFrame(t, arp.OperationReply, theirMAC, lbIP, client)[:20], none},
		{"not ARP", append(append(append([]byte{}, ethernet.Broadcast...), theirMAC...), 0x08, 0x00, 0x45), none},
		{"runt", []byte{1, 2, 3}, none},
	} {
		got := ARPConflict(c.frame, ourMAC, lbIP)
		kind := none
		switch {
		case got != nil && got.ProbeOnly:
			kind = probe
		case got != nil:
			kind = claim
		}
		if kind != c.want || got != nil && !bytes.Equal(got.MAC, theirMAC) {
			t.Errorf("%s: %s %+v; want %s by %s", c.name, kind, got, c.want, theirMAC)
		}
	}
	if got := ARPConflict(arpFrame(t, arp.OperationReply, theirMAC, lbIP, client), ourMAC, lbIP6); got != nil {
		t.Errorf("an IPv6 address conflicts with an ARP reply: %v", got)
	}
	// The hardware address is a copy: Serve reuses its buffer.
	frame := arpFrame(t, arp.OperationReply, theirMAC, lbIP, client)
	got := ARPConflict(frame, ourMAC, lbIP)
	clear(frame)
	if !bytes.Equal(got.MAC, theirMAC) {
		t.Errorf("conflict %v changed with the frame", got)
	}
}

// What Serve logs as a conflict: another hardware address claiming an
// address as its sender. A probe claims nothing.
func TestARPClaim(t *testing.T) {
	probe, err := arpProbe(lbIP, theirMAC)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		frame []byte
		addr  netip.Addr
	}{
		{"their reply", arpFrame(t, arp.OperationReply, theirMAC, lbIP, client), lbIP},
		{"their announcement", arpFrame(t, arp.OperationRequest, theirMAC, lbIP, lbIP), lbIP},
		{"their request", arpFrame(t, arp.OperationRequest, theirMAC, client, lbIP), client},
		{"their probe", probe, netip.Addr{}},
		{"our own announcement", arpFrame(t, arp.OperationRequest, ourMAC, lbIP, lbIP), netip.Addr{}},
		{"runt", []byte{1}, netip.Addr{}},
	} {
		addr, hw := arpClaim(c.frame, ourMAC)
		if addr != c.addr || c.addr.IsValid() != bytes.Equal(hw, theirMAC) {
			t.Errorf("%s: %s claims %s; want %s", c.name, hw, addr, c.addr)
		}
	}
}

func TestARPProbeFrame(t *testing.T) {
	b, err := arpProbe(lbIP, ourMAC)
	if err != nil {
		t.Fatal(err)
	}
	var f ethernet.Frame
	var p arp.Packet
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatal(err)
	}
	zero := make(net.HardwareAddr, 6)
	if !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(f.Source, ourMAC) ||
		p.Operation != arp.OperationRequest || !bytes.Equal(p.SenderHardwareAddr, ourMAC) || p.SenderIP != unspecified4 ||
		!bytes.Equal(p.TargetHardwareAddr, zero) || p.TargetIP != lbIP {
		t.Errorf("probe %+v in %+v", p, f)
	}
	// The responder answers such a probe for an address this node owns:
	// that is how the other prober learns of it.
	if reply, why := ARPReply(b, theirMAC, owned); reply == nil {
		t.Errorf("a probe for an owned address is not answered: %s", why)
	}
}

func ndpAdvert(t testing.TB, target netip.Addr, opts ...ndp.Option) []byte {
	t.Helper()
	b, err := ndp.MarshalMessage(&ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: target, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNDPConflict(t *testing.T) {
	tlla := func(mac net.HardwareAddr) ndp.Option { return &ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac} }
	slla := func(mac net.HardwareAddr) ndp.Option { return &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac} }
	ns, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: lbIP6, Options: []ndp.Option{slla(theirMAC)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		msg      []byte
		conflict bool // for lbIP6, with theirMAC
	}{
		{"their advertisement", ndpAdvert(t, lbIP6, tlla(theirMAC)), true},
		{"their unsolicited advertisement", func() []byte { b, _ := UnsolicitedNA(lbIP6, theirMAC); return b }(), true},
		{"their advertisement of another address", ndpAdvert(t, otherIP6, tlla(theirMAC)), false},
		{"our own advertisement", ndpAdvert(t, lbIP6, tlla(ourMAC)), false},
		{"an advertisement naming no hardware address", ndpAdvert(t, lbIP6), false},
		{"a source option is no target option", ndpAdvert(t, lbIP6, slla(theirMAC)), false},
		{"their solicitation", ns, false},
		{"garbled", []byte{136, 0, 0}, false},
	} {
		got := NDPConflict(c.msg, ourMAC, lbIP6)
		if c.conflict != (got != nil) || got != nil && (!bytes.Equal(got.MAC, theirMAC) || got.ProbeOnly) {
			t.Errorf("%s: conflict %+v; want a claim: %v", c.name, got, c.conflict)
		}
	}
	if got := NDPConflict(ndpAdvert(t, lbIP6, tlla(theirMAC)), ourMAC, lbIP6.WithZone("eth0")); got == nil || !bytes.Equal(got.MAC, theirMAC) {
		t.Errorf("a zone hides the conflict: %v", got)
	}
}

// The probe registry, as a sequence on one value: Serve hands frames to
// the probes running at the time.
func TestProbes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	never := func() error { return nil }
	var p probes
	conflictFor := func(addr netip.Addr) func(netip.Addr) *Contender {
		return func(a netip.Addr) *Contender {
			if a == addr {
				return &Contender{MAC: theirMAC}
			}
			return nil
		}
	}
	proberFor := func(addr netip.Addr, mac net.HardwareAddr) func(netip.Addr) *Contender {
		return func(a netip.Addr) *Contender {
			if a == addr {
				return &Contender{MAC: mac, ProbeOnly: true}
			}
			return nil
		}
	}

	if _, err := p.run(ctx, lbIP, 0, time.Millisecond, never); err == nil {
		t.Error("no probes: no error")
	}

	// Before Serve starts, a probe waits for it (here, until its ctx ends).
	early, cancelEarly := context.WithCancel(ctx)
	cancelEarly()
	if _, err := p.run(early, lbIP, 1, time.Millisecond, never); !errors.Is(err, context.Canceled) {
		t.Errorf("probe before Serve: %v; want it to wait for Serve until canceled", err)
	}

	stop, err := p.serve()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.serve(); err == nil {
		t.Error("Serve twice: no error")
	}

	// Nobody answers: every probe goes out, and the address is clear.
	sent := 0
	if hw, err := p.run(ctx, lbIP, 3, time.Millisecond, func() error { sent++; return nil }); hw != nil || err != nil || sent != 3 {
		t.Errorf("clear: conflict %v, err %v after %d probes; want none after 3", hw, err, sent)
	}

	// A frame for another address does not count; one for ours ends the
	// probe at once (the interval would outlast the test).
	sent = 0
	hw, err := p.run(ctx, lbIP, 3, time.Hour, func() error {
		sent++
		p.offer(conflictFor(otherIP))
		p.offer(conflictFor(lbIP))
		p.offer(conflictFor(lbIP)) // a second answer is dropped, not blocked on
		return nil
	})
	if hw == nil || !bytes.Equal(hw.MAC, theirMAC) || hw.ProbeOnly || err != nil || sent != 1 {
		t.Errorf("answered: conflict %+v, err %v after %d probes; want a claim by %v after 1", hw, err, sent, theirMAC)
	}

	// A host that only probes too does not end the probe: it is the
	// answer when nobody claims the address by the end.
	sent = 0
	hw, err = p.run(ctx, lbIP, 3, time.Millisecond, func() error {
		sent++
		p.offer(proberFor(lbIP, theirMAC))
		return nil
	})
	if hw == nil || !bytes.Equal(hw.MAC, theirMAC) || !hw.ProbeOnly || err != nil || sent != 3 {
		t.Errorf("a prober: %+v, err %v after %d probes; want probe only by %v after 3", hw, err, sent, theirMAC)
	}
	// A claim after a prober ends the probe, and is the answer.
	sent = 0
	hw, err = p.run(ctx, lbIP, 3, time.Hour, func() error {
		sent++
		p.offer(proberFor(lbIP, ourMAC))
		go p.offer(conflictFor(lbIP))
		return nil
	})
	if hw == nil || !bytes.Equal(hw.MAC, theirMAC) || hw.ProbeOnly || err != nil || sent != 1 {
		t.Errorf("a prober, then a claim: %+v, err %v after %d probes; want a claim by %v after 1", hw, err, sent, theirMAC)
	}

	// Probes for different addresses run side by side.
	other := make(chan *Contender, 1)
	go func() {
		hw, _ := p.run(ctx, otherIP, 1, time.Hour, never)
		other <- hw
	}()
	for {
		p.mu.Lock()
		n := len(p.active)
		p.mu.Unlock()
		if n == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the other probe never started")
		}
		time.Sleep(time.Millisecond)
	}
	if hw, _ := p.run(ctx, lbIP, 1, time.Hour, func() error { p.offer(conflictFor(lbIP)); return nil }); hw == nil || !bytes.Equal(hw.MAC, theirMAC) {
		t.Errorf("conflict %+v", hw)
	}
	p.offer(conflictFor(otherIP))
	if hw := <-other; hw == nil || !bytes.Equal(hw.MAC, theirMAC) {
		t.Errorf("the other probe: conflict %+v", hw)
	}

	// A send error ends the probe.
	if _, err := p.run(ctx, lbIP, 3, time.Hour, func() error { return errors.New("link down") }); err == nil || !strings.Contains(err.Error(), "link down") {
		t.Errorf("send error: %v", err)
	}

	// Serve stops during a probe: no answer can come, so no verdict.
	if _, err := p.run(ctx, lbIP, 3, time.Hour, func() error { stop(); return nil }); !errors.Is(err, ErrNotServing) {
		t.Errorf("Serve stopped during the probe: %v; want ErrNotServing", err)
	}
	if _, err := p.run(ctx, lbIP, 3, time.Hour, never); !errors.Is(err, ErrNotServing) {
		t.Errorf("Serve stopped before the probe: %v; want ErrNotServing", err)
	}
	if len(p.active) != 0 {
		t.Errorf("%d probes left registered", len(p.active))
	}
}

// FuzzARPConflict: no frame makes the decision panic, and a conflict is
// only ever another hardware address that sent addr as its own or probed
// for it.
func FuzzARPConflict(f *testing.F) {
	probe, err := arpProbe(lbIP, theirMAC)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(arpFrame(f, arp.OperationReply, theirMAC, lbIP, client))
	f.Add(arpFrame(f, arp.OperationRequest, theirMAC, lbIP, lbIP))
	f.Add(arpFrame(f, arp.OperationRequest, ourMAC, lbIP, lbIP))
	f.Add(arpFrame(f, arp.OperationRequest, theirMAC, client, lbIP))
	f.Add(probe)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		c := ARPConflict(frame, ourMAC, lbIP)
		if addr, claimed := arpClaim(frame, ourMAC); claimed != nil && (!addr.Is4() || addr.IsUnspecified() || bytes.Equal(claimed, ourMAC)) {
			t.Fatalf("%s claims %s", claimed, addr)
		}
		if c == nil {
			return
		}
		hw := c.MAC
		var fr ethernet.Frame
		var p arp.Packet
		if err := fr.UnmarshalBinary(frame); err != nil || fr.EtherType != ethernet.EtherTypeARP {
			t.Fatalf("conflict %v from a frame that is no ARP: %v", hw, err)
		}
		if err := p.UnmarshalBinary(fr.Payload); err != nil {
			t.Fatalf("conflict %v from garbled ARP: %v", hw, err)
		}
		probing := p.Operation == arp.OperationRequest && p.SenderIP == unspecified4 && p.TargetIP == lbIP
		if bytes.Equal(hw, ourMAC) || !bytes.Equal(hw, p.SenderHardwareAddr) || p.SenderIP != lbIP && !probing {
			t.Fatalf("conflict %v from %+v", hw, p)
		}
		if c.ProbeOnly != (p.SenderIP != lbIP) {
			t.Fatalf("%+v from %+v: a claim is a frame sent from the address, a probe one from 0.0.0.0", c, p)
		}
	})
}

// FuzzNDPConflict: no message makes the decision panic, and a conflict is
// only ever another hardware address advertised for addr.
func FuzzNDPConflict(f *testing.F) {
	f.Add(ndpAdvert(f, lbIP6, &ndp.LinkLayerAddress{Direction: ndp.Target, Addr: theirMAC}))
	f.Add(ndpAdvert(f, lbIP6, &ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ourMAC}))
	f.Add(ndpAdvert(f, lbIP6))
	f.Add([]byte{136, 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		c := NDPConflict(msg, ourMAC, lbIP6)
		if c == nil {
			return
		}
		if c.ProbeOnly {
			t.Fatalf("an advertisement taken for a probe: %+v", c)
		}
		hw := c.MAC
		m, err := ndp.ParseMessage(msg)
		if err != nil {
			t.Fatalf("conflict %v from garbled NDP: %v", hw, err)
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != lbIP6 || bytes.Equal(hw, ourMAC) {
			t.Fatalf("conflict %v from %+v", hw, m)
		}
		for _, o := range na.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target && bytes.Equal(l.Addr, hw) {
				return
			}
		}
		t.Fatalf("conflict %v not advertised in %+v", hw, na)
	})
}
