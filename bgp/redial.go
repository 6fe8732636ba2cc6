package bgp

import (
	"context"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// GoBGP keeps a peer whose session went down Idle for a fixed 5 s, then
// waits a connect retry before its first attempt: a router whose BGP
// daemon restarted got its routes back after 6.4 to 7 s. The speaker runs
// the idle hold itself instead: it holds the peer down (DisablePeer) for
// the peer's IdleHold and then makes it again, which starts GoBGP's FSM
// afresh, with no idle time of its own.

// redialAfter says whether a session that left Established (st is its new
// state) is to be made again, and after how long. Not when Berth removed
// the peer itself, when the peer closed the session on maxPrefixes (it
// stays down until the limit changes), or when the router restarts
// gracefully with this node as its helper: GoBGP keeps its routes, stale,
// only as long as the peer is not made again, and reconnects after its
// own idle hold.
func redialAfter(p *Peer, st apiutil.PeerState) (time.Duration, bool) {
	switch {
	case st.SessionState == bgp.BGP_FSM_ESTABLISHED:
		return 0, false
	case st.DisconnectReason == api.PeerState_DISCONNECT_REASON_DECONFIGURED,
		st.DisconnectReason == api.PeerState_DISCONNECT_REASON_ADMIN_DOWN,
		st.AdminState == api.PeerState_ADMIN_STATE_PFX_CT,
		st.AdminState == api.PeerState_ADMIN_STATE_DOWN:
		return 0, false
	case p.GracefulRestart && helping(st):
		return 0, false
	}
	return p.IdleHold, true
}

// helping: the router negotiated graceful restart and closed the session
// without a NOTIFICATION, so GoBGP, its helper, keeps its routes stale.
func helping(st apiutil.PeerState) bool {
	if st.DisconnectReason == api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED ||
		st.DisconnectReason == api.PeerState_DISCONNECT_REASON_NOTIFICATION_SENT {
		return false
	}
	for _, c := range st.RemoteCap {
		if c.Code() == bgp.BGP_CAP_GRACEFUL_RESTART {
			return true
		}
	}
	return false
}

// sessionLost runs on the server's peer event of a session that left
// Established: it holds the peer Idle for its IdleHold and makes it
// again (see redialAfter). Its own goroutine: it waits for mu, which an
// Apply may hold while it waits on the server.
func (s *Speaker) sessionLost(srv *server.BgpServer, st apiutil.PeerState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.srv != srv {
		return
	}
	var peer *Peer
	for _, p := range s.peers {
		if p.Address == st.NeighborAddress {
			peer = p
		}
	}
	if peer == nil {
		return
	}
	wait, ok := redialAfter(peer, st)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if wait > 0 {
		// Held down, GoBGP's own idle timer stopped, until the remake.
		if err := srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: peer.Address.String()}); err != nil {
			s.log.Debug("hold the peer idle", "peer", peer.Name, "error", err)
		}
		key := peer.Key()
		time.AfterFunc(wait, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			cur := s.peers[peer.Name]
			if s.closed || s.srv != srv || cur == nil || cur.Key() != key {
				return // stopped, or Apply made it again since
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.remake(ctx, cur)
		})
		return
	}
	s.remake(ctx, peer)
}

// remake deletes the peer from the server and adds it again: a new FSM,
// which connects at once. Called with mu held; a failure leaves the peer
// to the next Apply, which adds it.
func (s *Speaker) remake(ctx context.Context, p *Peer) {
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
		s.log.Warn("BGP peer remake: remove", "peer", p.Name, "error", err)
		return
	}
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, false)}); err != nil {
		s.log.Warn("BGP peer remake: add", "peer", p.Name, "error", err)
		delete(s.peers, p.Name)
		return
	}
	// The export policy names the peer: what it is sent is the same.
	if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: p.Address.String(), Soft: true,
		Direction: api.ResetPeerRequest_DIRECTION_OUT}); err != nil {
		s.log.Debug("soft reset", "peer", p.Name, "error", err)
	}
}
