package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/prometheus/client_golang/prometheus"
)

// PeerState is what the speaker knows of one session right now.
type PeerState struct {
	Name string
	// UID is the BGPPeer object's the session is of.
	UID     string
	Address netip.Addr
	// State is the session's FSM state: Idle, Connect, Active, OpenSent,
	// OpenConfirm or Established.
	State string
	// LastError is why the session last went down ("" none).
	LastError string
	// Advertised and Accepted count prefixes sent to and accepted from
	// the peer.
	Advertised, Accepted         int
	UpdatesSent, UpdatesReceived uint64
	// Refused are the routes the peer sends now that the import policy
	// refuses (Accepted does not count them).
	Refused []Refusal
	// MaxPrefixesReached: the peer sent more than MaxPrefixes, and the
	// session was closed and stays down until the limit changes.
	MaxPrefixesReached bool
	MaxPrefixes        uint32
	// RoutesAcknowledged says whether what the node sent reached the
	// router: AckTrue when the router's TCP acknowledged every byte of
	// the session's UPDATEs, AckFalse when bytes stayed unacknowledged
	// for ackGrace (the router drops the node's segments; the routes
	// advertised did not arrive), AckPending in between, AckUnknown when
	// not Established. Unacknowledged is that byte count.
	RoutesAcknowledged string
	Unacknowledged     uint32
}

var sessionStates = map[api.PeerState_SessionState]string{
	api.PeerState_SESSION_STATE_IDLE:        "Idle",
	api.PeerState_SESSION_STATE_CONNECT:     "Connect",
	api.PeerState_SESSION_STATE_ACTIVE:      "Active",
	api.PeerState_SESSION_STATE_OPENSENT:    "OpenSent",
	api.PeerState_SESSION_STATE_OPENCONFIRM: "OpenConfirm",
	api.PeerState_SESSION_STATE_ESTABLISHED: "Established",
}

// States lists the sessions of the peers the speaker runs, by name.
func (s *Speaker) States(ctx context.Context) []PeerState {
	s.mu.Lock()
	byAddr := map[string]*Peer{}
	for _, p := range s.peers {
		byAddr[p.Address.String()] = p
	}
	srv, ranges := s.srv, s.podRanges
	var out []PeerState
	for _, st := range s.failed {
		out = append(out, st)
	}
	s.mu.Unlock()
	lastErr, pwChanged := map[string]string{}, map[string]bool{}
	s.errMu.Lock()
	for a, e := range s.lastErr {
		lastErr[a.String()] = e
	}
	for a := range s.passwordChanged {
		pwChanged[a.String()] = true
	}
	s.errMu.Unlock()
	if srv == nil {
		return out
	}
	_ = srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.Conf == nil || p.State == nil {
			return
		}
		peer, ok := byAddr[p.Conf.NeighborAddress]
		if !ok {
			return
		}
		st := PeerState{Name: peer.Name, UID: peer.UID, State: sessionStates[p.State.SessionState], LastError: lastErr[p.Conf.NeighborAddress],
			MaxPrefixes: peer.MaxPrefixes}
		if st.State == "" {
			st.State = "Idle"
		}
		if p.State.AdminState == api.PeerState_ADMIN_STATE_PFX_CT {
			// GoBGP closed the session on the limit and keeps it down.
			st.MaxPrefixesReached = true
			st.LastError = fmt.Sprintf("maximum prefixes reached: the router sent more than %d prefixes (maxPrefixes); the session was closed with a Cease (maximum number of prefixes reached) and stays down until maxPrefixes changes", peer.MaxPrefixes)
		}
		if st.State != "Established" && st.LastError == "" {
			// No NOTIFICATION either way: no BGP exchange to speak of.
			st.LastError = noSession(peer, pwChanged[p.Conf.NeighborAddress])
		}
		st.Address, _ = netip.ParseAddr(p.Conf.NeighborAddress)
		for _, af := range p.AfiSafis {
			if af.State != nil {
				st.Advertised += int(af.State.Advertised)
				st.Accepted += int(af.State.Accepted)
			}
		}
		if m := p.State.Messages; m != nil {
			if m.Sent != nil {
				st.UpdatesSent = m.Sent.Update
			}
			if m.Received != nil {
				st.UpdatesReceived = m.Received.Update
			}
		}
		if st.State == "Established" {
			st.RoutesAcknowledged, st.Unacknowledged = s.acknowledged(peer)
			st.Refused = refused(srv, peer.Address, ranges)
			st.Accepted = max(st.Accepted-len(st.Refused), 0)
		}
		out = append(out, st)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// acknowledged reads the session's send queue and judges it (see ack.go).
func (s *Speaker) acknowledged(p *Peer) (string, uint32) {
	s.errMu.Lock()
	local, ok := s.conns[p.Address]
	s.errMu.Unlock()
	if !ok {
		return AckUnknown, 0
	}
	queued, err := sendQueue(local.Addr(), local.Port(), netip.AddrPortFrom(p.Address, p.Port))
	if err != nil {
		return AckUnknown, 0
	}
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if _, still := s.conns[p.Address]; !still {
		return AckUnknown, 0
	}
	prev, have := s.acks[p.Address]
	state, next := ackState(prev, have, queued, time.Now())
	s.acks[p.Address] = next
	return state, queued
}

// noSession is why a session is down that never got as far as a
// NOTIFICATION either way. With TCP MD5 the router's kernel drops every
// segment signed with another password (or unsigned): the speaker sees
// only connection attempts that get no answer, so it names the password
// as the likely cause, the more so when it changed on a session that was
// up.
func noSession(p *Peer, passwordChanged bool) string {
	switch {
	case p.Password != "" && passwordChanged:
		return "no session since the TCP MD5 password changed: the session was Established with the previous password and the router answers none of the attempts with this one, which is what a password that is not the router's looks like (its kernel drops the segments); check passwordSecret against the router's password for this node"
	case p.Password != "":
		return "no session: the router answers none of the connection attempts; with TCP MD5 on (passwordSecret), a password that is not the router's looks like this (its kernel drops the segments), as do a wrong address or port and a router that does not peer with this node's address"
	}
	return "no session: the peer does not answer or refuses the connection (check its address and port, that it peers with this node's address and AS, and whether the router expects a TCP MD5 password)"
}

// Collector exposes the sessions as metrics, read at each scrape.
func (s *Speaker) Collector() prometheus.Collector { return &collector{s: s} }

type collector struct{ s *Speaker }

var (
	descUp         = prometheus.NewDesc("berth_agent_bgp_session_up", "1 while the BGP session with the peer is Established.", []string{"peer"}, nil)
	descAdvertised = prometheus.NewDesc("berth_agent_bgp_prefixes_advertised", "Prefixes advertised to the peer.", []string{"peer"}, nil)
	descAccepted   = prometheus.NewDesc("berth_agent_bgp_prefixes_accepted", "Prefixes accepted from the peer.", []string{"peer"}, nil)
	descSent       = prometheus.NewDesc("berth_agent_bgp_updates_sent_total", "UPDATE messages sent to the peer.", []string{"peer"}, nil)
	descReceived   = prometheus.NewDesc("berth_agent_bgp_updates_received_total", "UPDATE messages received from the peer.", []string{"peer"}, nil)
	descRefused    = prometheus.NewDesc("berth_agent_bgp_prefixes_refused", "Prefixes the peer sends that the node refuses (pod network mode bgp), by reason: NextHopNotOwner (a node's pod range whose next hop is not that node), InsidePodRange.", []string{"peer", "reason"}, nil)
	descUnacked    = prometheus.NewDesc("berth_agent_bgp_unacknowledged_bytes", "Bytes the node sent on the Established session that the router's TCP has not acknowledged (its send queue); staying above 0 means the routes advertised are not arriving.", []string{"peer"}, nil)
	descMaxReached = prometheus.NewDesc("berth_agent_bgp_max_prefixes_reached", "1 while the session is down because the peer sent more than maxPrefixes.", []string{"peer"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descAdvertised, descAccepted, descSent, descReceived, descRefused, descMaxReached, descUnacked} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.s.States(context.Background()) {
		up := 0.0
		if st.State == "Established" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.Name)
		ch <- prometheus.MustNewConstMetric(descAdvertised, prometheus.GaugeValue, float64(st.Advertised), st.Name)
		ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.GaugeValue, float64(st.Accepted), st.Name)
		ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(st.UpdatesSent), st.Name)
		ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(st.UpdatesReceived), st.Name)
		byReason := map[string]int{RefusedNextHopNotOwner: 0, RefusedInsidePodRange: 0}
		for _, r := range st.Refused {
			byReason[r.Reason]++
		}
		for reason, n := range byReason {
			ch <- prometheus.MustNewConstMetric(descRefused, prometheus.GaugeValue, float64(n), st.Name, reason)
		}
		reached := 0.0
		if st.MaxPrefixesReached {
			reached = 1
		}
		ch <- prometheus.MustNewConstMetric(descMaxReached, prometheus.GaugeValue, reached, st.Name)
		ch <- prometheus.MustNewConstMetric(descUnacked, prometheus.GaugeValue, float64(st.Unacknowledged), st.Name)
	}
}
