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
// that link. NDP opens once the link has a usable link-local address
// (right after the link comes up it has none yet): until then only IPv4
// addresses are answered there.
type Responders struct {
	link   string
	ifi    *net.Interface
	arp    *ARPServer
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	mu     sync.Mutex
	ndp    *NDPServer
	ndpErr error
	joined map[netip.Addr]bool
	// limit, if set, is the ReplyLimit of both servers.
	limit *ReplyLimit
}

// OpenResponders opens the ARP and NDP sockets of ifi in the calling
// thread's network namespace.
func OpenResponders(ifi *net.Interface) (*Responders, error) {
	arp, err := ListenARP(ifi)
	if err != nil {
		return nil, err
	}
	r := &Responders{link: ifi.Name, ifi: ifi, arp: arp, joined: map[netip.Addr]bool{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if r.ndp, r.ndpErr = ListenNDP(ifi); r.ndpErr != nil {
		r.ndp = nil
	}
	return r, nil
}

// LimitReplies sets the ReplyLimit of both servers (DefaultReplyLimit
// until set). Call it before Serve.
func (r *Responders) LimitReplies(l ReplyLimit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limit = &l
	r.arp.LimitReplies(l)
	if r.ndp != nil {
		r.ndp.LimitReplies(l)
	}
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
	go func() { errs <- r.arp.Serve(ctx, owned, log) }()
	go func() { errs <- r.serveNDP(ctx, owned, log) }()
	var first error
	for range 2 {
		err := <-errs
		cancel()
		if first == nil {
			first = err
		}
	}
	return first
}

// serveNDP serves NDP, opening it first if it could not be opened yet
// (retried every second).
func (r *Responders) serveNDP(ctx context.Context, owned Owned, log func(reason string)) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.mu.Lock()
		s := r.ndp
		if s == nil {
			if s, r.ndpErr = ListenNDP(r.ifi); r.ndpErr == nil {
				if r.limit != nil {
					s.LimitReplies(*r.limit)
				}
				r.ndp = s
				for a := range r.joined {
					_ = s.Join(a)
				}
			}
		}
		r.mu.Unlock()
		if s != nil {
			return s.Serve(ctx, owned, log)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *Responders) ndpServer() (*NDPServer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ndp == nil {
		return nil, fmt.Errorf("no NDP on %s yet: %w", r.link, r.ndpErr)
	}
	return r.ndp, nil
}

// Announce tells the LAN that addr is here: a gratuitous ARP for IPv4, an
// unsolicited neighbour advertisement for IPv6.
func (r *Responders) Announce(addr netip.Addr) error {
	if addr.Is4() {
		return r.arp.Announce(addr)
	}
	s, err := r.ndpServer()
	if err != nil {
		return err
	}
	return s.Announce(addr)
}

// Probe asks the LAN whether another host holds addr; see ARPServer.Probe.
func (r *Responders) Probe(ctx context.Context, addr netip.Addr, count int, interval time.Duration) (*Contender, error) {
	if addr.Is4() {
		return r.arp.Probe(ctx, addr, count, interval)
	}
	s, err := r.ndpServer()
	if err != nil {
		return nil, err
	}
	return s.Probe(ctx, addr, count, interval)
}

// Joined follows the addresses the link answers for: an IPv6 address
// needs its solicited-node multicast group joined, or a real NIC filters
// the solicitations out.
func (r *Responders) Joined(addr netip.Addr, join bool) error {
	if addr.Is4() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if join {
		r.joined[addr] = true
	} else {
		delete(r.joined, addr)
	}
	if r.ndp == nil {
		return nil // joined when NDP opens
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
