package bgp

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Speaker runs a Plan on an embedded GoBGP server. Apply changes only what
// differs from the plan it applied last: a peer whose session settings
// did not change keeps its session whatever else changes, and what each
// peer is sent is chosen by one export policy (prefix and neighbour sets),
// re-evaluated with a soft reset that never drops a session.
//
// The server is started once and kept: every peer carries its own local
// AS, so the server's global AS is never changed, and a node going
// through zero peers keeps a server with none. Only a new router ID (the
// node's IPv4 address changed) needs another server: GoBGP's StopBgp ends
// a server for good, so a new instance takes the old one's place.
type Speaker struct {
	log *slog.Logger

	mu sync.Mutex
	// srv is the running server instance (nil before the first peer).
	srv      *server.BgpServer
	routerID netip.Addr // the one srv started with
	// stopWatch ends srv's event watches when it is replaced.
	stopWatch context.CancelFunc
	// failed are the plan's peers the server refused, by name.
	failed map[string]PeerState
	// closed: Shutdown ran, and no Apply may start a server again.
	closed   bool
	peers    map[string]*Peer
	paths    map[netip.Prefix]uuid.UUID
	shape    string // the applied export policy's shape (policyShape)
	sets     []map[netip.Prefix]bool
	gen      int
	nextHop4 netip.Addr
	nextHop6 netip.Addr
	// plan is the plan running (the peers the server took), which
	// Shutdown narrows to withdraw from the peers without graceful
	// restart only.
	plan Plan
	// restarting: no server has started yet in this process, so the
	// first one's graceful-restart peers are told the node is restarting
	// (the R bit, and the F bit for each family: the node's kernel kept
	// forwarding while the agent was away); see apiPeer.
	started    bool
	restarting bool
	// The import policy's generation and shape (importShape), and the
	// pod ranges it holds, indexed (never changed: States takes it
	// under mu and reads it after).
	importGen   int
	importShape string
	podRanges   *rangeIndex
	// lastErr is why each peer's session last went down, from the
	// server's peer events (its peer list does not keep it). Guarded by
	// errMu, not mu: events come while Apply holds mu and waits on the
	// server.
	errMu   sync.Mutex
	lastErr map[netip.Addr]string
	// lastState is each session's state at its last event, to see one
	// leave Established (guarded by errMu).
	lastState map[netip.Addr]bgp.FSMState
	// passwordChanged: the peer's TCP MD5 password changed while its
	// session was Established (guarded by errMu; see States).
	passwordChanged map[netip.Addr]bool
	// conns are the Established sessions' local ends, from their state
	// events, and acks the last reading of each one's send queue (both
	// guarded by errMu; see ack.go).
	conns    map[netip.Addr]netip.AddrPort
	acks     map[netip.Addr]ackSample
	watchCtx context.Context
	changed  chan struct{}
	routes   *Routes
}

// LearnInto makes the speaker hand the best paths its peers send to
// routes (the pod network in mode bgp); set it before Apply.
func (s *Speaker) LearnInto(routes *Routes) { s.routes = routes }

// Changed receives a value when a session changes state.
func (s *Speaker) Changed() <-chan struct{} { return s.changed }

func (s *Speaker) onPeer(srv *server.BgpServer, ev *apiutil.WatchEventMessage_PeerEvent) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	s.errMu.Lock()
	if s.lastState[st.NeighborAddress] == bgp.BGP_FSM_ESTABLISHED && st.SessionState != bgp.BGP_FSM_ESTABLISHED {
		go s.sessionLost(srv, st)
	}
	s.lastState[st.NeighborAddress] = st.SessionState
	// The FSM's idle timer is its own step, not a cause. An invalid-message
	// reason is how GoBGP reports a NOTIFICATION received in OpenConfirm,
	// its code dropped (one sent or received elsewhere, notified has from
	// the log with its code).
	delete(s.acks, st.NeighborAddress)
	delete(s.conns, st.NeighborAddress)
	if st.SessionState == bgp.BGP_FSM_ESTABLISHED {
		s.conns[st.NeighborAddress] = netip.AddrPortFrom(ev.Peer.Transport.LocalAddress, uint16(ev.Peer.Transport.LocalPort))
		delete(s.lastErr, st.NeighborAddress)
		delete(s.passwordChanged, st.NeighborAddress)
	} else if st.DisconnectReason == api.PeerState_DISCONNECT_REASON_INVALID_MSG {
		s.lastErr[st.NeighborAddress] = "the peer refused the session (a NOTIFICATION answering our OPEN; check the local ASN and the peer's configuration for this node)"
	} else if st.DisconnectReason != api.PeerState_DISCONNECT_REASON_UNSPECIFIED &&
		st.DisconnectReason != api.PeerState_DISCONNECT_REASON_IDLE_TIMER_EXPIRED &&
		// Berth removed the peer (its settings changed): the old
		// session's end is not the new one's error.
		st.DisconnectReason != api.PeerState_DISCONNECT_REASON_DECONFIGURED {
		why := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(st.DisconnectReason.String(), "DISCONNECT_REASON_")), "_", " ")
		if st.DisconnectMessage != "" {
			why += ": " + st.DisconnectMessage
		}
		s.lastErr[st.NeighborAddress] = why
	}
	s.errMu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// NewSpeaker makes a speaker; Serve runs it.
func NewSpeaker(log *slog.Logger) *Speaker {
	return &Speaker{
		log:       log,
		peers:     map[string]*Peer{},
		paths:     map[netip.Prefix]uuid.UUID{},
		lastErr:   map[netip.Addr]string{},
		lastState: map[netip.Addr]bgp.FSMState{},

		passwordChanged: map[netip.Addr]bool{},
		conns:           map[netip.Addr]netip.AddrPort{},
		acks:            map[netip.Addr]ackSample{},
		changed:         make(chan struct{}, 1),
	}
}

// newServer makes a GoBGP server instance and runs its loop, which ends
// when StopBgp is called on it.
func (s *Speaker) newServer() *server.BgpServer {
	// GoBGP logs at Info the NOTIFICATIONs it sends and receives; the
	// handler keeps them as the sessions' last errors and passes on what
	// log itself would print.
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelInfo)
	srv := server.NewBgpServer(server.LoggerOption(slog.New(&notifyHandler{next: s.log.Handler(), on: s.notified}), lvl))
	go srv.Serve()
	return srv
}

// notified records a NOTIFICATION as the peer's last error.
func (s *Speaker) notified(neighbor netip.Addr, why string) {
	s.errMu.Lock()
	s.lastErr[neighbor] = why
	s.errMu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Serve runs the speaker until ctx ends; then it stops (see Shutdown).
func (s *Speaker) Serve(ctx context.Context) error {
	s.mu.Lock()
	s.watchCtx = ctx
	s.mu.Unlock()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Shutdown(sctx)
	return nil
}

// Shutdown stops the speaker. Peers without graceful restart are sent
// withdrawals of every path first, and the sessions close once they were
// sent (or ctx ends): routers move the traffic before the node goes.
// Peers with graceful restart are sent nothing: their sessions close
// without a NOTIFICATION, so a router that is a graceful-restart helper
// keeps the node's routes (stale) while the agent restarts, and the
// restarted agent's speaker says it kept forwarding (R and F bits) and
// sends them again.
func (s *Speaker) Shutdown(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.srv == nil {
		return
	}
	keep := map[string]bool{}
	for name, p := range s.peers {
		if p.GracefulRestart {
			keep[name] = true
		}
	}
	switch {
	case len(s.paths) == 0:
	case len(keep) == 0:
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{DeleteAll: true}); err != nil {
			s.log.Warn("withdraw all", "error", err)
		}
		s.paths = map[netip.Prefix]uuid.UUID{}
		s.waitOutQueues(ctx, nil)
	default:
		// The same paths, sent on to the graceful-restart peers only:
		// the others are sent withdrawals by the export policy.
		narrow := Plan{Peers: s.plan.Peers, Exports: map[string][]Export{}, NextHop4: s.plan.NextHop4,
			NextHop6: s.plan.NextHop6, PodRanges: s.plan.PodRanges}
		for name, ex := range s.plan.Exports {
			if keep[name] {
				narrow.Exports[name] = ex
			}
		}
		if err := s.apply(ctx, narrow); err != nil {
			s.log.Warn("withdraw from the peers without graceful restart", "error", err)
		}
		s.waitOutQueues(ctx, keep)
	}
	s.stopServer(ctx, true)
}

// stopServer stops the server instance (closing every session, with a
// NOTIFICATION unless graceful says to leave graceful-restart peers
// without one) and forgets what it ran; the next Apply starts another.
// Called with mu held.
func (s *Speaker) stopServer(ctx context.Context, graceful bool) {
	if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{AllowGracefulRestart: graceful}); err != nil {
		s.log.Warn("stop BGP", "error", err)
	}
	if s.stopWatch != nil {
		// After the stop, so the learned routes' withdrawals reach
		// Routes; the closed sessions' own ends are ignored (de-configured)
		// and their errors cleared below.
		s.stopWatch()
	}
	s.srv, s.stopWatch, s.failed = nil, nil, nil
	s.peers, s.paths, s.shape, s.sets = map[string]*Peer{}, map[netip.Prefix]uuid.UUID{}, "", nil
	s.importGen, s.importShape, s.podRanges = 0, "", nil
	s.errMu.Lock()
	s.lastErr, s.lastState, s.passwordChanged = map[netip.Addr]string{}, map[netip.Addr]bgp.FSMState{}, map[netip.Addr]bool{}
	s.conns, s.acks = map[netip.Addr]netip.AddrPort{}, map[netip.Addr]ackSample{}
	s.errMu.Unlock()
}

// waitOutQueues waits until no established peer, but those named in
// skip, has paths advertised.
func (s *Speaker) waitOutQueues(ctx context.Context, skip map[string]bool) {
	skipAddr := map[string]bool{}
	for name := range skip {
		if p := s.peers[name]; p != nil {
			skipAddr[p.Address.String()] = true
		}
	}
	for {
		pending := false
		_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			if p.State == nil || p.State.SessionState != api.PeerState_SESSION_STATE_ESTABLISHED ||
				p.Conf != nil && skipAddr[p.Conf.NeighborAddress] {
				return
			}
			for _, af := range p.AfiSafis {
				if af.State != nil && af.State.Advertised > 0 {
					pending = true
				}
			}
		})
		if !pending {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Apply makes the server run plan. A peer the speaker cannot run (see
// Peer.Check) fails the apply before anything changes; a peer the server
// refuses is left out, its reason in States, and the rest is applied.
func (s *Speaker) Apply(ctx context.Context, plan Plan) error {
	for _, p := range plan.Peers {
		if err := p.Check(); err != nil {
			return fmt.Errorf("peer %s: %w", p.Name, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("the BGP speaker is shut down")
	}
	return s.apply(ctx, plan)
}

// apply is Apply with mu held.
func (s *Speaker) apply(ctx context.Context, plan Plan) error {
	if s.srv == nil && len(plan.Peers) == 0 {
		return nil
	}
	if len(plan.Peers) > 0 {
		rid := routerID(plan)
		if s.srv != nil && rid != s.routerID {
			// The router ID is the server's own: a new instance.
			s.log.Info("BGP router ID changes: restarting the sessions", "from", s.routerID, "to", rid)
			s.stopServer(ctx, false)
		}
		if s.srv == nil {
			if err := s.startServer(ctx, rid, plan.Peers[0].LocalASN); err != nil {
				return err
			}
			// The process's first server: its first peers may be a
			// restart's (see restarting); peers added later are not.
			s.restarting = !s.started
			s.started = true
			defer func() { s.restarting = false }()
		}
	}

	// What may come in, before a new peer sends anything.
	if err := s.applyImports(ctx, plan.PodRanges); err != nil {
		return err
	}

	// Peers: delete the gone and the changed, add the new and the changed.
	want := map[string]*Peer{}
	for _, p := range plan.Peers {
		want[p.Name] = p
	}
	for name, p := range s.peers {
		if w := want[name]; w == nil || w.Key() != p.Key() {
			// Read before the removal's own state event.
			s.errMu.Lock()
			wasUp := s.lastState[p.Address] == bgp.BGP_FSM_ESTABLISHED
			s.errMu.Unlock()
			if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
				return fmt.Errorf("peer %s: remove: %w", name, err)
			}
			delete(s.peers, name)
			// A new configuration: what went wrong with the old one is no
			// longer news. Only the password changing on a session that
			// was up is kept, to name it if the new one gets no answer.
			s.errMu.Lock()
			delete(s.lastErr, p.Address)
			delete(s.passwordChanged, p.Address)
			if w := want[name]; w != nil && w.Password != p.Password && wasUp {
				s.passwordChanged[p.Address] = true
			}
			s.errMu.Unlock()
		}
	}
	// A peer the server refuses is left out, the reason kept as its
	// state, and tried again on the next Apply; the others go on.
	failed := map[string]PeerState{}
	for _, p := range plan.Peers {
		if _, ok := s.peers[p.Name]; ok {
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, s.restarting)}); err != nil {
			failed[p.Name] = PeerState{Name: p.Name, UID: p.UID, Address: p.Address, State: "Idle",
				LastError: fmt.Sprintf("the speaker refused the peer's settings: %v", err)}
			s.log.Warn("BGP peer refused", "peer", p.Name, "address", p.Address, "error", err)
			continue
		}
		s.peers[p.Name] = p
	}
	s.failed = failed
	plan = running(plan, s.peers)
	s.plan = plan

	// What each peer is sent (new prefixes into the sets before their
	// paths), then the paths, then prefixes out of the sets.
	sts := exportStatements(plan)
	incremental := s.gen > 0 && policyShape(sts) == s.shape
	if !incremental {
		if err := s.replacePolicy(ctx, sts); err != nil {
			return err
		}
	} else if err := s.growSets(ctx, sts); err != nil {
		return err
	}
	s.nextHop4, s.nextHop6 = plan.NextHop4, plan.NextHop6
	wantPaths := map[netip.Prefix]bool{}
	var add []*apiutil.Path
	var added []netip.Prefix
	for _, pf := range plan.Prefixes() {
		wantPaths[pf] = true
		if _, ok := s.paths[pf]; ok {
			continue
		}
		path, err := s.path(pf)
		if err != nil {
			return err
		}
		add, added = append(add, path), append(added, pf)
	}
	if len(add) > 0 {
		res, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: add})
		if err != nil {
			return fmt.Errorf("advertise %d prefixes: %w", len(add), err)
		}
		for i, r := range res {
			if r.Error != nil {
				return fmt.Errorf("advertise %s: %w", added[i], r.Error)
			}
			s.paths[added[i]] = r.UUID
		}
	}
	var gone []uuid.UUID
	for pf, id := range s.paths {
		if !wantPaths[pf] {
			gone = append(gone, id)
			delete(s.paths, pf)
		}
	}
	if len(gone) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{UUIDs: gone}); err != nil {
			return fmt.Errorf("withdraw %d prefixes: %w", len(gone), err)
		}
	}
	reset := map[netip.Addr]bool{}
	if incremental {
		// A prefix still advertised but no longer to some peer: that peer
		// is judged again.
		var err error
		if reset, err = s.shrinkSets(ctx, sts, wantPaths); err != nil {
			return err
		}
	} else {
		for _, p := range s.peers {
			reset[p.Address] = true
		}
	}
	// Paths already sent are judged again by the policy, without
	// resetting any session.
	for a := range reset {
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: a.String(), Soft: true,
			Direction: api.ResetPeerRequest_DIRECTION_OUT}); err != nil {
			s.log.Debug("soft reset", "peer", a, "error", err)
		}
	}
	return nil
}

// startServer starts a server instance with the router ID. asn is the
// server's global AS, which only stands in for peers that set none; every
// peer sets its own, so it never has to change.
func (s *Speaker) startServer(ctx context.Context, rid netip.Addr, asn uint32) error {
	srv := s.newServer()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: asn, RouterId: rid.String(), ListenPort: -1,
	}}); err != nil {
		_ = srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return fmt.Errorf("start BGP (router ID %s): %w", rid, err)
	}
	wctx := s.watchCtx
	if wctx == nil {
		wctx = context.Background()
	}
	wctx, stop := context.WithCancel(wctx)
	onPeer := func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) { s.onPeer(srv, ev) }
	if err := srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: onPeer}, server.WatchPeer()); err != nil {
		s.log.Warn("watch peer events", "error", err)
	}
	if s.routes != nil {
		if err := srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnBestPath: s.routes.onBestPath}, server.WatchBestPath(true)); err != nil {
			s.log.Warn("watch best paths", "error", err)
		}
	}
	s.srv, s.routerID, s.stopWatch = srv, rid, stop
	// A new instance has no policy yet: the next one is made whole.
	s.peers, s.paths, s.shape, s.sets, s.gen = map[string]*Peer{}, map[netip.Prefix]uuid.UUID{}, "", nil, 0
	s.importGen, s.importShape, s.podRanges = 0, "", nil
	return nil
}

// running is plan without the peers the server does not run: what they
// would be sent is not sent to any other peer.
func running(plan Plan, peers map[string]*Peer) Plan {
	out := Plan{Exports: map[string][]Export{}, NextHop4: plan.NextHop4, NextHop6: plan.NextHop6, PodRanges: plan.PodRanges}
	for _, p := range plan.Peers {
		if peers[p.Name] != nil {
			out.Peers = append(out.Peers, p)
			if ex, ok := plan.Exports[p.Name]; ok {
				out.Exports[p.Name] = ex
			}
		}
	}
	return out
}

// grDeferral is how long a restarting speaker waits for its peers'
// End-of-RIB markers before it sends its own routes (RFC 4724's
// selection deferral): a router that is down does not hold the others
// back for long.
const grDeferral = 10 * time.Second

func routerID(plan Plan) netip.Addr {
	if plan.NextHop4.IsValid() {
		return plan.NextHop4
	}
	// An IPv6-only node: a router ID derived from its address.
	h := fnv.New32a()
	h.Write(plan.NextHop6.AsSlice())
	v := h.Sum32()
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (s *Speaker) path(pf netip.Prefix) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(pf)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", pf, err)
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if pf.Addr().Is4() {
		if !s.nextHop4.IsValid() {
			return nil, fmt.Errorf("prefix %s: the node has no IPv4 address for a next hop", pf)
		}
		nh, err := bgp.NewPathAttributeNextHop(s.nextHop4)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		if !s.nextHop6.IsValid() {
			return nil, fmt.Errorf("prefix %s: the node has no IPv6 address for a next hop", pf)
		}
		mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, []bgp.PathNLRI{{NLRI: nlri}}, s.nextHop6)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, mp)
	}
	fam := bgp.RF_IPv4_UC
	if pf.Addr().Is6() {
		fam = bgp.RF_IPv6_UC
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}

// apiPeer is the peer as GoBGP takes it. restarting marks a
// graceful-restart peer as one the node restarts with (see Speaker).
func apiPeer(p *Peer, restarting bool) *api.Peer {
	out := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.PeerASN, LocalAsn: p.LocalASN,
			AuthPassword: p.Password, Description: "berth: " + p.Name},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: uint64(p.Retry() / time.Second)}},
	}
	if p.Source.IsValid() {
		out.Transport.LocalAddress = p.Source.String()
	}
	// Always both timers: left at 0, GoBGP takes its own defaults.
	hold, ka := p.Timers()
	out.Timers.Config.HoldTime = uint64(hold / time.Second)
	out.Timers.Config.KeepaliveInterval = uint64(ka / time.Second)
	if p.AllowOwnAS {
		// Routes of other nodes of the same AS, relayed by the router.
		out.Conf.AllowOwnAsn = 1
	}
	switch ttl, min := p.TTL(); {
	case min > 0:
		out.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: uint32(min)}
	case ttl > 0:
		out.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(ttl)}
	}
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if p.Address.Is6() {
		fam = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}
	if p.MaxPrefixes > 0 {
		af.PrefixLimits = &api.PrefixLimit{Family: fam, MaxPrefixes: p.MaxPrefixes}
	}
	if p.GracefulRestart {
		// DeferralTime bounds how long a restarting speaker waits for the
		// peers' End-of-RIB before it sends its routes (GoBGP's default
		// is 360 s); the router keeps the stale ones meanwhile.
		out.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(p.RestartTime / time.Second),
			LocalRestarting: restarting, DeferralTime: uint32(grDeferral / time.Second)}
		af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	out.AfiSafis = []*api.AfiSafi{af}
	return out
}
