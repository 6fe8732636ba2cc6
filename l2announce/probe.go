package l2announce

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// Conflict probes ask the LAN whether another host already uses an address
// before this node announces it (RFC 5227 for ARP, RFC 4862 duplicate
// address detection for NDP).
//
// The RFC timers are sized for hosts booting on slow links: RFC 5227 sends
// three probes 1-2 s apart after a random wait of up to 1 s and then waits
// 2 s (PROBE_WAIT, PROBE_NUM, PROBE_MIN/MAX, ANNOUNCE_WAIT); RFC 4862 sends
// one solicitation and waits 1 s. Berth probes when an address moves to
// this node, which should finish well under a second (Members notices a
// dead node in 400 ms), and a host's kernel on the same LAN answers within
// milliseconds. So ProbeCount probes ProbeInterval apart and one interval
// more: 300 ms in all, still three chances for a frame to be lost. There is no random initial wait: RFC 5227's spreads
// hosts that boot together, while here one node, the owner, probes each
// address.
const (
	ProbeCount    = 3
	ProbeInterval = 100 * time.Millisecond
)

// ConflictReason starts the reason Serve logs for a frame in which another
// hardware address claims an address this node announces, so the agent can
// count them.
const ConflictReason = "conflict: "

// ErrNotServing is returned by a probe on a server whose Serve has
// returned: Serve is the socket's only reader, so nobody would see an
// answer.
var ErrNotServing = errors.New("the server's Serve has stopped: nothing reads the answers")

// ARPConflict decides whether an Ethernet frame received on an interface
// whose hardware address is mac shows another host using addr: an ARP
// packet whose sender is addr (a reply to our probe, or that host's own
// request or announcement), or another host's probe for addr (RFC 5227
// 2.1.1: both want it, so neither may take it). It returns that host's
// hardware address (a copy), or nil.
func ARPConflict(frame []byte, mac net.HardwareAddr, addr netip.Addr) net.HardwareAddr {
	p := parseARP(frame)
	switch {
	case p == nil || !addr.Is4() || bytes.Equal(p.SenderHardwareAddr, mac):
		return nil
	case p.SenderIP == addr,
		p.Operation == arp.OperationRequest && p.SenderIP == netip.IPv4Unspecified() && p.TargetIP == addr:
		return bytes.Clone(p.SenderHardwareAddr)
	}
	return nil
}

// arpClaim is the address and hardware address an ARP frame's sender
// claims, unless the sender is this node (mac) or claims nothing (a probe,
// from 0.0.0.0).
func arpClaim(frame []byte, mac net.HardwareAddr) (netip.Addr, net.HardwareAddr) {
	p := parseARP(frame)
	if p == nil || !p.SenderIP.Is4() || p.SenderIP.IsUnspecified() || bytes.Equal(p.SenderHardwareAddr, mac) {
		return netip.Addr{}, nil
	}
	return p.SenderIP, bytes.Clone(p.SenderHardwareAddr)
}

func parseARP(frame []byte) *arp.Packet {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeARP {
		return nil
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil
	}
	return &p
}

// arpProbe is the RFC 5227 probe for addr from mac: a broadcast request
// from 0.0.0.0, so that no neighbour cache learns anything from it.
func arpProbe(addr netip.Addr, mac net.HardwareAddr) ([]byte, error) {
	return encodeARP(ethernet.Broadcast, mac, arp.OperationRequest, netip.IPv4Unspecified(), make(net.HardwareAddr, len(mac)), addr)
}

// NDPConflict decides whether an ICMPv6 message received on an interface
// whose hardware address is mac shows another host using addr: a
// neighbour advertisement for addr with another target link-layer address.
// It returns that address (a copy), or nil. An advertisement without the
// option names nobody and is not counted; answers to a probe carry it,
// since the probe goes to a multicast group (RFC 4861 7.2.4).
func NDPConflict(msg []byte, mac net.HardwareAddr, addr netip.Addr) net.HardwareAddr {
	target, hw := ndpClaim(msg, mac)
	if hw == nil || target != addr.WithZone("") {
		return nil
	}
	return hw
}

// ndpClaim is the address a neighbour advertisement claims and the
// hardware address it claims it for, unless that is this node (mac) or the
// message is no advertisement naming one.
func ndpClaim(msg []byte, mac net.HardwareAddr) (netip.Addr, net.HardwareAddr) {
	m, err := ndp.ParseMessage(msg)
	if err != nil {
		return netip.Addr{}, nil
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok || !na.TargetAddress.Is6() || na.TargetAddress.Is4In6() {
		return netip.Addr{}, nil
	}
	for _, o := range na.Options {
		if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
			if bytes.Equal(l.Addr, mac) {
				return netip.Addr{}, nil
			}
			return na.TargetAddress, bytes.Clone(l.Addr)
		}
	}
	return netip.Addr{}, nil
}

// conflictReason is what Serve logs for a frame in which hw claims addr,
// an address this node announces; why is what the responder made of it.
func conflictReason(addr netip.Addr, hw net.HardwareAddr, why string) string {
	return fmt.Sprintf("%s%s claims %s, which this node announces (%s)", ConflictReason, hw, addr, why)
}

// probes hands what Serve reads to the conflict probes running beside it:
// Serve is the socket's only reader.
type probes struct {
	mu sync.Mutex
	// started and stopped are closed when Serve starts and returns; made
	// on first use.
	started, stopped chan struct{}
	active           map[*probe]struct{}
}

type probe struct {
	addr netip.Addr
	// conflict takes the first conflicting hardware address.
	conflict chan net.HardwareAddr
}

// states returns the started and stopped channels; p.mu must be held.
func (p *probes) states() (started, stopped chan struct{}) {
	if p.started == nil {
		p.started, p.stopped = make(chan struct{}), make(chan struct{})
	}
	return p.started, p.stopped
}

// serve marks Serve as running until the returned function is called. It
// runs once: when it returns, its socket is closed or failing.
func (p *probes) serve() (stop func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	started, stopped := p.states()
	select {
	case <-started:
		return nil, errors.New("already served: Serve runs only once")
	default:
	}
	close(started)
	return func() { close(stopped) }, nil
}

// offer shows one received frame to every active probe: conflict says what
// the frame shows about an address.
func (p *probes) offer(conflict func(addr netip.Addr) net.HardwareAddr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.active {
		if hw := conflict(pr.addr); hw != nil {
			select {
			case pr.conflict <- hw:
			default: // it has one already
			}
		}
	}
}

// run sends count probes for addr interval apart and waits one interval
// more, and returns the first conflict Serve hands over meanwhile, or nil.
// If Serve has not started yet, it waits for it first (or for ctx): a
// caller may start Serve and probe at once.
func (p *probes) run(ctx context.Context, addr netip.Addr, count int, interval time.Duration, send func() error) (net.HardwareAddr, error) {
	if count < 1 || interval <= 0 {
		return nil, fmt.Errorf("probe %s: count %d and interval %s must be positive", addr, count, interval)
	}
	pr := &probe{addr: addr, conflict: make(chan net.HardwareAddr, 1)}
	p.mu.Lock()
	started, stopped := p.states()
	if p.active == nil {
		p.active = map[*probe]struct{}{}
	}
	p.active[pr] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.active, pr)
		p.mu.Unlock()
	}()
	select {
	case <-started:
	case <-ctx.Done():
		return nil, fmt.Errorf("probe %s: waiting for Serve: %w", addr, ctx.Err())
	}
	t := time.NewTimer(interval)
	defer t.Stop()
	for i := range count {
		select {
		case <-stopped:
			return nil, fmt.Errorf("probe %s: %w", addr, ErrNotServing)
		default:
		}
		if err := send(); err != nil {
			return nil, fmt.Errorf("probe %s: send %d of %d: %w", addr, i+1, count, err)
		}
		t.Reset(interval)
		select {
		case hw := <-pr.conflict:
			return hw, nil
		case <-t.C:
		case <-stopped:
			return nil, fmt.Errorf("probe %s: %w", addr, ErrNotServing)
		case <-ctx.Done():
			return nil, fmt.Errorf("probe %s: %w", addr, ctx.Err())
		}
	}
	return nil, nil
}
