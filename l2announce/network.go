package l2announce

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Network is the announcer's I/O on its node: the links, and the ARP and
// NDP hands on each. KernelNetwork is the real one; tests drive the
// announcer through a fake.
type Network interface {
	// Links lists the node's links with their addresses.
	Links() ([]Link, error)
	// WatchLinks calls changed on every change of links or addresses
	// until ctx ends or the subscription fails.
	WatchLinks(ctx context.Context, changed func()) error
	// Open opens the responders of the named link.
	Open(link string) (LinkIO, error)
}

// LinkIO is one link's ARP and NDP hands (a *Responders on a real link).
type LinkIO interface {
	// Serve answers for what owned says until ctx ends, Close is called
	// or the link fails.
	Serve(ctx context.Context, owned Owned, log func(reason string)) error
	// Announce sends one gratuitous ARP or unsolicited advertisement.
	Announce(addr netip.Addr) error
	// Probe asks the LAN whether another host wants addr: one that
	// claims it (answered or announced it), else one that only probed
	// for it too (ProbeOnly), else nil.
	Probe(ctx context.Context, addr netip.Addr, count int, interval time.Duration) (*Contender, error)
	// Joined follows the addresses the link answers for (IPv6 joins
	// their solicited-node groups).
	Joined(addr netip.Addr, join bool) error
	// Close stops Serve and releases the sockets.
	Close()
}

// KernelNetwork is the network namespace the agent runs in.
type KernelNetwork struct {
	// ReplyLimit bounds the replies each requester gets on each link;
	// DefaultReplyLimit when nil.
	ReplyLimit *ReplyLimit
}

// Links lists the namespace's links (ReadLinks).
func (KernelNetwork) Links() ([]Link, error) { return ReadLinks() }

// WatchLinks follows the namespace's links (see WatchLinks).
func (KernelNetwork) WatchLinks(ctx context.Context, changed func()) error {
	return WatchLinks(ctx, changed)
}

// Open opens the ARP and NDP sockets of the named link.
func (k KernelNetwork) Open(link string) (LinkIO, error) {
	ifi, err := net.InterfaceByName(link)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", link, err)
	}
	rs, err := OpenResponders(ifi)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", link, err)
	}
	if k.ReplyLimit != nil {
		rs.LimitReplies(*k.ReplyLimit)
	}
	return rs, nil
}
