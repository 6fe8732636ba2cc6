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

// Contender is another host a conflict probe saw wanting the address.
type Contender struct {
	// MAC is its hardware address.
	MAC net.HardwareAddr
	// ProbeOnly says it only probed for the address itself (an ARP probe
	// from 0.0.0.0): it wants the address but does not use it. Otherwise
	// it claims it: it answered, announced it or sent from it.
	ProbeOnly bool
}

// ARPConflict decides whether an Ethernet frame received on an interface
// whose hardware address is mac shows another host wanting addr: an ARP
// packet whose sender is addr (a reply to our probe, or that host's own
// request or announcement: a claim), or another host's probe for addr
// (RFC 5227 2.1.1: both want it; ProbeOnly). It returns that host (its
// hardware address a copy), or nil.
func ARPConflict(frame []byte, mac net.HardwareAddr, addr netip.Addr) *Contender {
	p := parseARP(frame)
	switch {
	case p == nil || !addr.Is4() || bytes.Equal(p.SenderHardwareAddr, mac):
		return nil
	case p.SenderIP == addr:
		return &Contender{MAC: bytes.Clone(p.SenderHardwareAddr)}
	case p.Operation == arp.OperationRequest && p.SenderIP == netip.IPv4Unspecified() && p.TargetIP == addr:
		return &Contender{MAC: bytes.Clone(p.SenderHardwareAddr), ProbeOnly: true}
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
// neighbour advertisement for addr with another target link-layer address
// (a claim). It returns that host (its address a copy), or nil. An
// advertisement without the option names nobody and is not counted;
// answers to a probe carry it, since the probe goes to a multicast group
// (RFC 4861 7.2.4).
func NDPConflict(msg []byte, mac net.HardwareAddr, addr netip.Addr) *Contender {
	target, hw := ndpClaim(msg, mac)
	if hw == nil || target != addr.WithZone("") {
		return nil
	}
	return &Contender{MAC: hw}
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
	// seen takes what Serve saw (a claim or a probe), one at a time.
	seen chan *Contender
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
func (p *probes) offer(conflict func(addr netip.Addr) *Contender) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.active {
		if c := conflict(pr.addr); c != nil {
			select {
			case pr.seen <- c:
			default:
				// It has one to read already. A claim outranks a bare
				// probe waiting there (the claim ends the probe; the
				// probe would only be kept), so it takes that place;
				// anything else comes again. offer is the only sender
				// (p.mu), so the place is free after the take.
				if c.ProbeOnly {
					break
				}
				select {
				case waiting := <-pr.seen:
					if !waiting.ProbeOnly {
						c = waiting
					}
				default:
				}
				pr.seen <- c
			}
		}
	}
}

// run sends count probes for addr interval apart and waits one interval
// more. It returns the first host Serve shows claiming addr meanwhile, at
// once; else the first that only probed for it, at the end; else nil. If
// Serve has not started yet, it waits for it first (or for ctx): a caller
// may start Serve and probe at once.
func (p *probes) run(ctx context.Context, addr netip.Addr, count int, interval time.Duration, send func() error) (*Contender, error) {
	if count < 1 || interval <= 0 {
		return nil, fmt.Errorf("probe %s: count %d and interval %s must be positive", addr, count, interval)
	}
	pr := &probe{addr: addr, seen: make(chan *Contender, 1)}
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
	var prober *Contender
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
	wait:
		for {
			select {
			case c := <-pr.seen:
				if !c.ProbeOnly {
					return c, nil
				}
				if prober == nil {
					prober = c
				}
			case <-t.C:
				break wait
			case <-stopped:
				return nil, fmt.Errorf("probe %s: %w", addr, ErrNotServing)
			case <-ctx.Done():
				return nil, fmt.Errorf("probe %s: %w", addr, ctx.Err())
			}
		}
	}
	return prober, nil
}
