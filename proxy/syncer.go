package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/knftables"
)

// Syncer applies rulesets to the kernel. It keeps the last ruleset it
// applied in memory and sends only the difference; after a failed apply it
// forgets it, so the next sync rebuilds the whole table in one transaction.
type Syncer struct {
	nft  knftables.Interface
	ct   ConntrackCleaner
	mu   sync.Mutex
	prev *Ruleset
	// udp holds the UDP endpoints of the last applied state, to find
	// the ones that went away; udpSvc the UDP Service addresses that had
	// endpoints, to find those that just got some.
	udp    map[netip.Addr]bool
	udpSvc map[netip.Addr]bool
	// healthy is true while the last sync succeeded.
	healthy bool
	// batch bounds a cold start: at most this many Service ports per
	// transaction when the table does not exist yet.
	batch int

	duration prometheus.Histogram
	chains   prometheus.Gauge
	elements prometheus.Gauge
	lastOK   prometheus.Gauge
	failures prometheus.Counter
}

// NewSyncer returns a syncer for the berth-proxy table behind nft; ct (may
// be nil) forgets UDP flows to endpoints that went away.
func NewSyncer(nft knftables.Interface, ct ConntrackCleaner) *Syncer {
	return &Syncer{
		nft:   nft,
		ct:    ct,
		batch: ColdStartBatch,
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "berth_agent_proxy_sync_duration_seconds", Help: "Time to compute and apply one service proxy sync.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		chains:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_agent_proxy_chains", Help: "Chains in the berth-proxy table."}),
		elements: prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_agent_proxy_map_elements", Help: "Verdict map elements in the berth-proxy table."}),
		lastOK:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_agent_proxy_last_sync_timestamp_seconds", Help: "When the last successful sync finished."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_agent_proxy_sync_failures_total", Help: "Syncs whose transaction the kernel refused."}),
	}
}

// Collectors lists the syncer's metrics for registration.
func (s *Syncer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.duration, s.chains, s.elements, s.lastOK, s.failures}
}

// ColdStartBatch is how many Service ports one transaction of a cold start
// adds at most.
const ColdStartBatch = 1000

// Healthy reports whether the last sync succeeded.
func (s *Syncer) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy
}

// coldStart fills a table that does not exist yet in bounded transactions:
// first the table with its hooks, maps and fixed chains, then the Services
// a batch at a time, each batch usable as soon as it lands. It leaves
// s.prev at what it applied. A table that exists (the agent restarted) is
// left to the one atomic rebuild of the caller instead: its rules keep
// working until the new ones replace them, with no gap.
func (s *Syncer) coldStart(ctx context.Context, st State) error {
	if _, err := s.nft.List(ctx, "chains"); err == nil || !knftables.IsNotFound(err) {
		return nil
	}
	applied := Build(State{ClusterCIDRs: st.ClusterCIDRs})
	tx := s.nft.NewTransaction()
	Sync(tx, nil, applied)
	if err := s.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("create table %s: %w", Table, err)
	}
	s.prev = &applied
	for i := 0; i < len(st.Services); i += s.batch {
		part := Build(State{Services: st.Services[i:min(i+s.batch, len(st.Services))], Endpoints: st.Endpoints, ClusterCIDRs: st.ClusterCIDRs})
		next := merge(applied, part)
		tx := s.nft.NewTransaction()
		Sync(tx, &applied, next)
		if err := s.nft.Run(ctx, tx); err != nil {
			return fmt.Errorf("cold start, Service ports %d to %d: apply %d nftables operations: %w", i, i+s.batch, tx.NumOperations(), err)
		}
		applied = next
		s.prev = &applied
	}
	return nil
}

// merge returns a ruleset holding both; b wins where they differ. Neither
// is changed.
func merge(a, b Ruleset) Ruleset {
	out := Ruleset{Chains: map[string][]string{}, Maps: map[string]Map{}, Sets: map[string]Set{}}
	for _, rs := range []Ruleset{a, b} {
		for k, v := range rs.Chains {
			out.Chains[k] = v
		}
		for k, v := range rs.Sets {
			out.Sets[k] = v
		}
		for k, m := range rs.Maps {
			om, ok := out.Maps[k]
			if !ok {
				om = Map{Type: m.Type, Elements: map[string]string{}}
			}
			for ek, ev := range m.Elements {
				om.Elements[ek] = ev
			}
			out.Maps[k] = om
		}
	}
	return out
}

// Sync makes the table match st.
func (s *Syncer) Sync(ctx context.Context, st State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	s.healthy = false
	next := Build(st)
	if s.prev == nil && len(st.Services) > s.batch {
		if err := s.coldStart(ctx, st); err != nil {
			s.prev = nil
			s.failures.Inc()
			return err
		}
	}
	tx := s.nft.NewTransaction()
	Sync(tx, s.prev, next)
	if tx.NumOperations() > 0 {
		if err := s.nft.Run(ctx, tx); err != nil {
			s.prev = nil
			s.failures.Inc()
			return fmt.Errorf("apply %d nftables operations: %w", tx.NumOperations(), err)
		}
	}
	s.prev = &next
	s.healthy = true
	// Only after the rules no longer send new packets to an endpoint are
	// its flows forgotten, so the next packet of each flow is balanced anew.
	udp, udpSvc := udpEndpoints(st), udpServiceAddrs(st)
	if s.ct != nil {
		for a := range s.udp {
			if !udp[a] {
				if _, err := s.ct.ForgetUDPTo(a); err != nil {
					s.failures.Inc()
				}
			}
		}
		for a := range udpSvc {
			if !s.udpSvc[a] {
				if _, err := s.ct.ForgetUDPToService(a); err != nil {
					s.failures.Inc()
				}
			}
		}
	}
	s.udp, s.udpSvc = udp, udpSvc
	elements := 0
	for _, m := range next.Maps {
		elements += len(m.Elements)
	}
	s.chains.Set(float64(len(next.Chains)))
	s.elements.Set(float64(elements))
	s.duration.Observe(time.Since(start).Seconds())
	s.lastOK.SetToCurrentTime()
	return nil
}
