package l2announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// NDPServer answers neighbour solicitations on one interface, in user
// space: the IPv6 counterpart of ARPServer.
//
// It sends from the interface's link-local address, the one its socket is
// bound to, with hop limit 255, and drops what arrives with another hop
// limit: RFC 4861 requires both, so that nothing off the link can take
// part. What it receives is limited to what the kernel delivers to a raw
// ICMPv6 socket: solicitations to the solicited-node group of an address
// (see Join) and anything to all nodes or to the link-local address. A
// unicast solicitation to an announced address (a neighbour confirming a
// cached entry) is not delivered, since the address is on no interface;
// the neighbour then solicits by multicast again.
//
// ndp.Conn names the interface (as the IPv6 zone) in every send, and Go
// turns the name into an index through process-wide caches, refilled on a
// miss or once a minute from the network namespace of whichever thread
// asks: the name must mean this interface, or nothing, in every namespace
// the process's threads are in, or sends fail (EINVAL). The agent's
// threads all stay in the host namespace; tests give the interface a name
// of its own.
type NDPServer struct {
	ifi     *net.Interface
	conn    *ndp.Conn
	probes  probes
	limiter *replyLimiter

	mu     sync.Mutex
	groups groups
}

// ListenNDP opens an ICMPv6 socket for neighbour discovery on ifi, in the
// network namespace of the calling thread. The interface needs its
// link-local address, which appears once the link is up and is usable once
// duplicate address detection has passed; until then ListenNDP fails, and
// the caller should retry.
func ListenNDP(ifi *net.Interface) (*NDPServer, error) {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("NDP socket on %s (needs a usable link-local address): %w", ifi.Name, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("NDP socket on %s: ICMPv6 filter: %w", ifi.Name, err)
	}
	if err := c.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
		c.Close()
		return nil, fmt.Errorf("NDP socket on %s: hop limit control message: %w", ifi.Name, err)
	}
	return &NDPServer{ifi: ifi, conn: c, groups: groups{}, limiter: newReplyLimiter(DefaultReplyLimit)}, nil
}

// LimitReplies sets the advertisements one solicitor (by IPv6 source
// address) gets; DefaultReplyLimit until set. Call it before Serve.
func (s *NDPServer) LimitReplies(l ReplyLimit) { s.limiter = newReplyLimiter(l) }

// Serve answers until ctx ends (then it closes the socket) or the socket
// fails; every message's outcome goes to log (nil: none), for debugging
// and metrics. An advertisement in which another hardware address claims
// an owned address is logged with a reason that starts with
// ConflictReason. Serve also hands every message to the probes running
// meanwhile. It runs once.
func (s *NDPServer) Serve(ctx context.Context, owned Owned, log func(reason string)) error {
	stop, err := s.probes.serve()
	if err != nil {
		return fmt.Errorf("NDP on %s: %w", s.ifi.Name, err)
	}
	defer stop()
	context.AfterFunc(ctx, func() { s.conn.Close() })
	if log == nil {
		log = func(string) {}
	}
	mac := s.ifi.HardwareAddr
	buf := make([]byte, s.ifi.MTU)
	for {
		n, cm, src, err := s.conn.ReadRaw(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("NDP on %s: %w", s.ifi.Name, err)
		}
		if cm == nil || cm.HopLimit != ndp.HopLimit {
			hl := -1
			if cm != nil {
				hl = cm.HopLimit
			}
			log(fmt.Sprintf("hop limit %d, not %d: may come from off the link", hl, ndp.HopLimit))
			continue
		}
		msg := buf[:n]
		s.probes.offer(func(addr netip.Addr) *Contender { return NDPConflict(msg, mac, addr) })
		advert, dst, why := NDPAdvert(msg, src, mac, owned)
		if advert != nil && !s.limiter.allow(src.String()) {
			why, advert = limitedReason(why, src.String()), nil
		}
		if addr, hw := ndpClaim(msg, mac); hw != nil && owned(addr) {
			why = conflictReason(addr, hw, why)
		}
		log(why)
		if advert == nil {
			continue
		}
		if err := s.send(advert, dst); err != nil {
			log("send: " + err.Error())
		}
	}
}

// send writes an ICMPv6 message from the link-local address (ndp.Conn
// takes a parsed message, so the responder's bytes are parsed back).
func (s *NDPServer) send(msg []byte, dst netip.Addr) error {
	m, err := ndp.ParseMessage(msg)
	if err != nil {
		return err
	}
	return s.conn.WriteTo(m, nil, dst)
}

// Announce sends an unsolicited neighbour advertisement for addr to all
// nodes from this interface.
func (s *NDPServer) Announce(addr netip.Addr) error {
	if !addr.Is6() || addr.Is4In6() {
		return fmt.Errorf("announce: %s is not an IPv6 address", addr)
	}
	b, err := UnsolicitedNA(addr.WithZone(""), s.ifi.HardwareAddr)
	if err != nil {
		return err
	}
	if err := s.send(b, AllNodes); err != nil {
		return fmt.Errorf("announce %s on %s: %w", addr, s.ifi.Name, err)
	}
	return nil
}

// Join makes the interface receive solicitations for addr, which go to
// its solicited-node multicast group: a NIC filters the group out, and
// the kernel drops it, unless the interface is in it. Joining also makes
// the kernel report the group (MLD), so that snooping switches forward
// it. Call it when this node starts announcing addr; joining an address
// twice is a no-op.
func (s *NDPServer) Join(addr netip.Addr) error {
	group, err := solicitedNode(addr)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	addr = addr.WithZone("")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.groups.add(group, addr) {
		return nil
	}
	if err := s.conn.JoinGroup(group); err != nil {
		s.groups.remove(group, addr)
		return fmt.Errorf("join %s for %s on %s: %w", group, addr, s.ifi.Name, err)
	}
	return nil
}

// Leave undoes Join when this node stops announcing addr. The interface
// stays in a group while another joined address shares it (addresses that
// end in the same 24 bits do).
func (s *NDPServer) Leave(addr netip.Addr) error {
	group, err := solicitedNode(addr)
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	addr = addr.WithZone("")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.groups.remove(group, addr) {
		return nil
	}
	if err := s.conn.LeaveGroup(group); err != nil {
		s.groups.add(group, addr)
		return fmt.Errorf("leave %s for %s on %s: %w", group, addr, s.ifi.Name, err)
	}
	return nil
}

// Probe asks whether another host uses addr before this node announces
// it: count neighbour solicitations for addr interval apart (see
// ProbeCount), then one interval more for late answers. It returns the host
// that advertised addr (a claim), or nil when nobody did.
//
// RFC 4862 sends duplicate address detection from the unspecified
// address; this socket cannot: it is bound to the link-local address, and
// the kernel replaces a source of :: by it. So the solicitations come from
// the link-local address with this node's hardware address as the source
// option, which a holder of addr answers directly with an advertisement.
// A host in the middle of its own duplicate address detection for addr
// does not answer and is not seen. Serve reads the answers: Probe waits
// for it to start, and fails with ErrNotServing once it has returned.
func (s *NDPServer) Probe(ctx context.Context, addr netip.Addr, count int, interval time.Duration) (*Contender, error) {
	group, err := solicitedNode(addr)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	addr = addr.WithZone("")
	ns := &ndp.NeighborSolicitation{TargetAddress: addr,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: s.ifi.HardwareAddr}}}
	return s.probes.run(ctx, addr, count, interval, func() error { return s.conn.WriteTo(ns, nil, group) })
}

// solicitedNode is the group solicitations for addr go to.
func solicitedNode(addr netip.Addr) (netip.Addr, error) {
	if !addr.Is6() || addr.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%s is not an IPv6 address", addr)
	}
	return ndp.SolicitedNodeMulticast(addr.WithZone(""))
}

// groups records, per solicited-node group, the addresses the interface
// is in it for: addresses that end in the same 24 bits share a group, and
// the socket joins it once and leaves it with the last of them.
type groups map[netip.Addr]map[netip.Addr]bool

// add records addr and reports whether its group is new (to join).
func (g groups) add(group, addr netip.Addr) bool {
	if g[group][addr] {
		return false
	}
	if g[group] == nil {
		g[group] = map[netip.Addr]bool{}
	}
	g[group][addr] = true
	return len(g[group]) == 1
}

// remove forgets addr and reports whether its group is now unused (to
// leave).
func (g groups) remove(group, addr netip.Addr) bool {
	if !g[group][addr] {
		return false
	}
	delete(g[group], addr)
	if len(g[group]) > 0 {
		return false
	}
	delete(g, group)
	return true
}
