package l2announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Heartbeats carries Members' heartbeats over UDP: it sends this agent's
// to every peer each Interval and feeds what arrives to Members.
type Heartbeats struct {
	Members  *Members
	Interval time.Duration
	// Peers lists where the other agents listen; it is read before every
	// round, so it can follow the Node objects.
	Peers func() []netip.AddrPort
	// Groups lists the groups this agent is ready for (nil: none); read
	// before every heartbeat.
	Groups func() []uint64
	conn   *net.UDPConn
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

// ListenHeartbeats binds the UDP socket heartbeats arrive on.
func ListenHeartbeats(addr netip.AddrPort) (*net.UDPConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
}

// Run sends and receives until ctx ends; then it sends one leaving
// heartbeat, so the peers move this node's addresses at once.
func (h *Heartbeats) Run(ctx context.Context, conn *net.UDPConn, refused func(error)) error {
	h.conn = conn
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		// One byte more than the largest heartbeat: a datagram that fills
		// the buffer was cut, and is refused as such rather than as a bad
		// signature (a node ready for many groups would be dead to its
		// peers while it thinks itself alive).
		buf := make([]byte, MaxHeartbeatSize+1)
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if n > MaxHeartbeatSize {
				if refused != nil {
					refused(fmt.Errorf("%w: more than %d bytes, the largest a heartbeat can be", ErrBadHeartbeat, MaxHeartbeatSize))
				}
				continue
			}
			if err := h.Members.Receive(buf[:n]); err != nil && refused != nil {
				refused(err)
			}
		}
	}()
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	kick := h.kicks()
	for {
		h.send(false)
		select {
		case <-ctx.Done():
			h.send(true)
			conn.Close()
			<-recvDone
			return nil
		case <-t.C:
		case <-kick:
		}
	}
}

func (h *Heartbeats) send(leaving bool) {
	var groups []uint64
	if h.Groups != nil && !leaving {
		groups = h.Groups()
	}
	b := h.Members.Heartbeat(leaving, groups)
	for _, p := range h.Peers() {
		_, _ = h.conn.WriteToUDPAddrPort(b, p)
	}
}
