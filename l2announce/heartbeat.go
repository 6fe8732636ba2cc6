package l2announce

import (
	"context"
	"errors"
	"net"
	"net/netip"
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
	conn  *net.UDPConn
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
		buf := make([]byte, 512)
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
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
	for {
		h.send(false)
		select {
		case <-ctx.Done():
			h.send(true)
			conn.Close()
			<-recvDone
			return nil
		case <-t.C:
		}
	}
}

func (h *Heartbeats) send(leaving bool) {
	b := h.Members.Heartbeat(leaving)
	for _, p := range h.Peers() {
		_, _ = h.conn.WriteToUDPAddrPort(b, p)
	}
}
