package l2announce

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Responders are one link's ARP and NDP servers, the announcer's hands on
// that link. NDP is left out where the link has no IPv6 (then only
// IPv4 addresses are announced there).
type Responders struct {
	link   string
	arp    *ARPServer
	ndp    *NDPServer
	ndpErr error
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

// OpenResponders opens the ARP and NDP sockets of ifi in the calling
// thread's network namespace.
func OpenResponders(ifi *net.Interface) (*Responders, error) {
	arp, err := ListenARP(ifi)
	if err != nil {
		return nil, err
	}
	r := &Responders{link: ifi.Name, arp: arp}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if r.ndp, r.ndpErr = ListenNDP(ifi); r.ndpErr != nil {
		r.ndp = nil
	}
	return r, nil
}

// Serve answers on both sockets until ctx ends, Close is called or one of
// them fails.
func (r *Responders) Serve(ctx context.Context, owned Owned, log func(reason string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.ctx.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	errs := make(chan error, 2)
	n := 1
	go func() { errs <- r.arp.Serve(ctx, owned, log) }()
	if r.ndp != nil {
		n++
		go func() { errs <- r.ndp.Serve(ctx, owned, log) }()
	}
	var first error
	for i := 0; i < n; i++ {
		err := <-errs
		cancel()
		if first == nil {
			first = err
		}
	}
	return first
}

// Announce tells the LAN that addr is here: a gratuitous ARP for IPv4, an
// unsolicited neighbour advertisement for IPv6.
func (r *Responders) Announce(addr netip.Addr) error {
	if addr.Is4() {
		return r.arp.Announce(addr)
	}
	if r.ndp == nil {
		return fmt.Errorf("no NDP on %s: %w", r.link, r.ndpErr)
	}
	return r.ndp.Announce(addr)
}

// Probe asks the LAN whether another host holds addr; see ARPServer.Probe.
func (r *Responders) Probe(ctx context.Context, addr netip.Addr, count int, interval time.Duration) (net.HardwareAddr, error) {
	if addr.Is4() {
		return r.arp.Probe(ctx, addr, count, interval)
	}
	if r.ndp == nil {
		return nil, fmt.Errorf("no NDP on %s: %w", r.link, r.ndpErr)
	}
	return r.ndp.Probe(ctx, addr, count, interval)
}

// Joined follows the addresses the link answers for: an IPv6 address
// needs its solicited-node multicast group joined, or a real NIC filters
// the solicitations out.
func (r *Responders) Joined(addr netip.Addr, join bool) error {
	if addr.Is4() || r.ndp == nil {
		return nil
	}
	if join {
		return r.ndp.Join(addr)
	}
	return r.ndp.Leave(addr)
}

// Close stops Serve and releases the sockets.
func (r *Responders) Close() {
	r.once.Do(r.cancel)
}
