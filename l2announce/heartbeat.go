package l2announce

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Heartbeats carries Members' heartbeats over UDP: it sends this agent's
// to every peer each Interval and feeds what arrives to Members. It sends
// and listens on the node's own InternalIPs only (one socket per family,
// HeartbeatAddrs), so its peers see the source address the Node lists,
// and it drops a datagram from an address that is no peer's InternalIP
// before looking at it further.
type Heartbeats struct {
	Members  *Members
	Interval time.Duration
	// Peers lists the other agents; it is read before every round and for
	// every datagram, so it can follow the Node objects.
	Peers func() *PeerSet
	// Groups lists the groups this agent is ready for (nil: none); read
	// before every heartbeat.
	Groups func() []uint64
	conns  []*net.UDPConn
	once   sync.Once
	kick   chan struct{}
}

// Kick sends a heartbeat now rather than at the next tick: the groups
// changed, and peers should know before this agent acts on it.
func (h *Heartbeats) Kick() {
	select {
	case h.kicks() <- struct{}{}:
	default:
	}
}

func (h *Heartbeats) kicks() chan struct{} {
	h.once.Do(func() { h.kick = make(chan struct{}, 1) })
	return h.kick
}

// ListenHeartbeats binds the UDP socket heartbeats arrive on and leave
// from: one per address of HeartbeatAddrs(the node's InternalIPs).
func ListenHeartbeats(addr netip.AddrPort) (*net.UDPConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
}

// Run sends and receives on conns until ctx ends; then it sends one
// leaving heartbeat, so the peers move this node's addresses at once.
func (h *Heartbeats) Run(ctx context.Context, conns []*net.UDPConn, refused func(error)) error {
	h.conns = conns
	var recv sync.WaitGroup
	for _, conn := range conns {
		recv.Add(1)
		go func() {
			defer recv.Done()
			h.receive(conn, refused)
		}()
	}
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	kick := h.kicks()
	for {
		h.send(false)
		select {
		case <-ctx.Done():
			h.send(true)
			for _, c := range conns {
				c.Close()
			}
			recv.Wait()
			return nil
		case <-t.C:
		case <-kick:
		}
	}
}

func (h *Heartbeats) receive(conn *net.UDPConn, refused func(error)) {
	// One byte more than the largest heartbeat: a datagram that fills
	// the buffer was cut, and is refused as such rather than as a bad
	// signature (a node ready for many groups would be dead to its
	// peers while it thinks itself alive).
	buf := make([]byte, MaxHeartbeatSize+1)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		// The source is checked before anything else: a datagram from
		// an address no Node lists costs no HMAC.
		from := h.peers().Name(src.Addr())
		if from == "" {
			err = refuse(RefusedNotPeer, "from %s, which is no peer's InternalIP", src.Addr().Unmap())
		} else if n > MaxHeartbeatSize {
			err = refuse(RefusedMalformed, "more than %d bytes, the largest a heartbeat can be", MaxHeartbeatSize)
		} else {
			err = h.Members.Receive(from, buf[:n])
		}
		if err != nil && refused != nil {
			refused(err)
		}
	}
}

func (h *Heartbeats) peers() *PeerSet {
	if h.Peers == nil {
		return nil
	}
	return h.Peers()
}

// send sends one heartbeat to each peer, from the first socket whose
// family one of the peer's addresses has, to that address; a version-1
// copy too while the peer has not been heard in version 2.
func (h *Heartbeats) send(leaving bool) {
	var groups []uint64
	if h.Groups != nil && !leaving {
		groups = h.Groups()
	}
	v2, v1 := h.Members.Heartbeats(leaving, groups)
	for _, p := range h.peers().Peers() {
		conn, to, ok := h.route(p)
		if !ok {
			continue
		}
		_, _ = conn.WriteToUDPAddrPort(v2, to)
		if v1 != nil && !h.Members.SpeaksV2(p.Name) {
			_, _ = conn.WriteToUDPAddrPort(v1, to)
		}
	}
}

// route picks the socket and the peer's address a heartbeat goes by (a
// peer is sent one copy: a second, to its other family's address, would
// be refused as a replay).
func (h *Heartbeats) route(p Peer) (*net.UDPConn, netip.AddrPort, bool) {
	for _, conn := range h.conns {
		local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
		for _, a := range HeartbeatAddrs(p.Addrs) {
			if a.Is4() == local.Addr().Unmap().Is4() {
				return conn, netip.AddrPortFrom(a, p.Port), true
			}
		}
	}
	return nil, netip.AddrPort{}, false
}
