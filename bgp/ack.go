package bgp

import (
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// A session Established says the two speakers agreed to talk, not that
// what this node sent arrived: a router whose kernel drops the node's
// later segments (TTL security one hop too strict, a filter) keeps the
// session up until its hold timer ends it, while the routes advertised
// never reach it. The speaker reads the session's TCP socket instead: the
// bytes the router's TCP has not acknowledged (the socket's send queue).
// Empty: every UPDATE sent reached the router. Not emptying for
// ackGrace: they did not.

// ackGrace is how long unacknowledged bytes may stay without the queue
// shrinking before the routes count as not acknowledged: far more than a
// round trip, far less than a hold time.
const ackGrace = 2 * time.Second

// Acknowledgement states of PeerState.RoutesAcknowledged.
const (
	AckUnknown = ""     // not Established, or the socket not found
	AckTrue    = "True" // the router's TCP acknowledged every byte sent
	AckPending = "Pending"
	AckFalse   = "False" // bytes sent stayed unacknowledged for ackGrace
)

// ackSample is the last reading of one session's send queue.
type ackSample struct {
	queued uint32
	// stuck is when the queue last was empty or shrank.
	stuck time.Time
}

// ackState judges a new reading of the send queue against the last one:
// the queue must empty, or at least shrink, within ackGrace.
func ackState(prev ackSample, havePrev bool, queued uint32, now time.Time) (string, ackSample) {
	next := ackSample{queued: queued, stuck: now}
	if queued == 0 {
		return AckTrue, next
	}
	if havePrev && prev.queued > 0 && queued >= prev.queued {
		next.stuck = prev.stuck
	}
	if now.Sub(next.stuck) >= ackGrace {
		return AckFalse, next
	}
	return AckPending, next
}

// sendQueue reads the bytes of the TCP connection local -> remote that the
// remote end has not acknowledged, with the kernel's socket diagnostics
// (netlink sock_diag). An invalid local address takes the kernel's route
// to remote's source.
func sendQueue(local netip.Addr, localPort uint16, remote netip.AddrPort) (uint32, error) {
	if !local.IsValid() || local.IsUnspecified() {
		routes, err := netlink.RouteGet(remote.Addr().AsSlice())
		if err != nil || len(routes) == 0 {
			return 0, err
		}
		local, _ = netip.AddrFromSlice(routes[0].Src)
		local = local.Unmap()
	}
	sock, err := netlink.SocketGet(
		&net.TCPAddr{IP: local.AsSlice(), Port: int(localPort)},
		&net.TCPAddr{IP: remote.Addr().AsSlice(), Port: int(remote.Port())})
	if err != nil {
		return 0, err
	}
	return sock.WQueue, nil
}
