package l2announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

// ARPServer answers ARP requests on one interface, in user space: the
// addresses are on no interface (the service proxy catches their traffic),
// so the kernel would not answer for them.
type ARPServer struct {
	ifi     *net.Interface
	conn    *packet.Conn
	probes  probes
	limiter *replyLimiter
}

// ListenARP opens a packet socket for ARP on ifi, in the network namespace
// of the calling thread.
func ListenARP(ifi *net.Interface) (*ARPServer, error) {
	c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		return nil, fmt.Errorf("ARP socket on %s: %w", ifi.Name, err)
	}
	return &ARPServer{ifi: ifi, conn: c, limiter: newReplyLimiter(DefaultReplyLimit)}, nil
}

// LimitReplies sets the replies one requester (by Ethernet source) gets;
// DefaultReplyLimit until set. Call it before Serve.
func (s *ARPServer) LimitReplies(l ReplyLimit) { s.limiter = newReplyLimiter(l) }

// Serve answers until ctx ends or the socket fails; every frame's outcome
// goes to log (nil: none), for debugging and metrics. A frame in which
// another hardware address claims an owned address (as its sender) is
// logged with a reason that starts with ConflictReason. Serve also hands
// every frame to the probes running meanwhile. It runs once.
func (s *ARPServer) Serve(ctx context.Context, owned Owned, log func(reason string)) error {
	stop, err := s.probes.serve()
	if err != nil {
		return fmt.Errorf("ARP on %s: %w", s.ifi.Name, err)
	}
	defer stop()
	go func() {
		<-ctx.Done()
		s.conn.Close()
	}()
	buf := make([]byte, s.ifi.MTU+14)
	for {
		n, _, err := s.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("ARP on %s: %w", s.ifi.Name, err)
		}
		frame, mac := buf[:n], s.ifi.HardwareAddr
		s.probes.offer(func(addr netip.Addr) *Contender { return ARPConflict(frame, mac, addr) })
		reply, why := ARPReply(frame, mac, owned)
		// The reply goes to the request's Ethernet source (its first six
		// bytes): the requester, whose allowance it draws on.
		if reply != nil && !s.limiter.allow(string(reply[:6])) {
			why, reply = limitedReason(why, net.HardwareAddr(reply[:6]).String()), nil
		}
		if addr, hw := arpClaim(frame, mac); hw != nil && owned(addr) {
			why = conflictReason(addr, hw, why)
		}
		if log != nil {
			log(why)
		}
		if reply == nil {
			continue
		}
		if err := s.send(reply); err != nil && log != nil {
			log("send: " + err.Error())
		}
	}
}

// send writes a whole frame (its first six bytes are the destination).
func (s *ARPServer) send(frame []byte) error {
	_, err := s.conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[:6])})
	return err
}

// Announce sends a gratuitous ARP for addr from this interface.
func (s *ARPServer) Announce(addr netip.Addr) error {
	if !addr.Is4() {
		return fmt.Errorf("announce: %s is not an IPv4 address", addr)
	}
	f, err := GratuitousARP(addr, s.ifi.HardwareAddr)
	if err != nil {
		return err
	}
	return s.send(f)
}

// Probe asks whether another host uses addr before this node announces
// it: count RFC 5227 probes interval apart (see ProbeCount), then one
// interval more for late answers. It returns a host that answered or
// announced addr (a claim, at once), else one that only probed for it too
// (ProbeOnly), or nil when nobody did. Serve reads the answers: Probe
// waits for it to start, and fails with ErrNotServing once it has
// returned.
func (s *ARPServer) Probe(ctx context.Context, addr netip.Addr, count int, interval time.Duration) (*Contender, error) {
	if !addr.Is4() {
		return nil, fmt.Errorf("probe: %s is not an IPv4 address", addr)
	}
	f, err := arpProbe(addr, s.ifi.HardwareAddr)
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w", addr, err)
	}
	return s.probes.run(ctx, addr, count, interval, func() error { return s.send(f) })
}
