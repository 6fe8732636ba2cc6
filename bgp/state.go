package bgp

import (
	"context"
	"net/netip"
	"sort"

	"github.com/osrg/gobgp/v4/api"
	"github.com/prometheus/client_golang/prometheus"
)

// PeerState is what the speaker knows of one session right now.
type PeerState struct {
	Name    string
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
	byAddr := map[string]string{}
	for name, p := range s.peers {
		byAddr[p.Address.String()] = name
	}
	srv := s.srv
	var out []PeerState
	for _, st := range s.failed {
		out = append(out, st)
	}
	s.mu.Unlock()
	lastErr := map[string]string{}
	s.errMu.Lock()
	for a, e := range s.lastErr {
		lastErr[a.String()] = e
	}
	s.errMu.Unlock()
	if srv == nil {
		return out
	}
	_ = srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.Conf == nil || p.State == nil {
			return
		}
		name, ok := byAddr[p.Conf.NeighborAddress]
		if !ok {
			return
		}
		st := PeerState{Name: name, State: sessionStates[p.State.SessionState], LastError: lastErr[p.Conf.NeighborAddress]}
		if st.State == "" {
			st.State = "Idle"
		}
		if st.State != "Established" && st.LastError == "" {
			// No NOTIFICATION either way: no BGP exchange to speak of.
			st.LastError = "no session: the peer does not answer or refuses the connection (check its address and port, that it peers with this node's address and AS, and the TCP MD5 password)"
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
		out = append(out, st)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
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
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descAdvertised, descAccepted, descSent, descReceived} {
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
	}
}
