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
		nft: nft,
		ct:  ct,
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

// Sync makes the table match st.
func (s *Syncer) Sync(ctx context.Context, st State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	next := Build(st)
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
