package netpol

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthnet/berth/internal/nftrules"
	"github.com/berthnet/berth/internal/sysctl"
)

// Backend applies transactions to the berth-netpol table and reads its
// named counters: nftrules.Netlink, or nftrules.Fake in tests.
type Backend interface {
	nftrules.Backend
	Counters(ctx context.Context) (map[string]uint64, error)
}

// Syncer applies compiled rulesets to the kernel. It keeps the ruleset it
// last applied in memory and sends only the difference, in one
// transaction; after a failed apply it forgets it, so the next sync
// rebuilds the whole table (also in one transaction).
type Syncer struct {
	nft Backend
	mu  sync.Mutex
	// last is what the kernel has, nil when unknown.
	last    *nftrules.Ruleset
	lastErr error

	duration           *prometheus.HistogramVec
	compileDuration    prometheus.Histogram
	objects            *prometheus.GaugeVec
	policies, lastOK   prometheus.Gauge
	failures           prometheus.Counter
	dropped, unknownDr *prometheus.Desc
}

// NewSyncer returns a syncer for the berth-netpol table behind nft.
func NewSyncer(nft Backend) *Syncer {
	return &Syncer{
		nft:     nft,
		lastErr: errors.New("first sync pending"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_agent_netpol_sync_duration_seconds", Help: "Time to compile and apply one NetworkPolicy sync, by kind (full: the whole table; incremental: the difference).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"kind"}),
		compileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "berth_agent_netpol_compile_duration_seconds", Help: "Time to compile the node's ruleset, part of the sync duration.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_agent_netpol_objects", Help: "Objects in the berth-netpol table by kind: chains, rules, sets, set_elements, map_elements.",
		}, []string{"kind"}),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_agent_netpol_policies", Help: "NetworkPolicies in the last applied sync."}),
		lastOK:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_agent_netpol_last_sync_timestamp_seconds", Help: "When the last successful sync finished."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_agent_netpol_sync_failures_total", Help: "Syncs that failed (the next one rebuilds the table)."}),
		dropped: prometheus.NewDesc("berth_agent_netpol_dropped_packets_total",
			"Packets dropped at pods of this node that the policy isolates (a drop counts on every isolating policy, up to 8).", []string{"policy"}, nil),
		unknownDr: prometheus.NewDesc("berth_agent_netpol_unknown_pod_dropped_packets_total",
			"Packets dropped because an address in the node's pod ranges was no pod the rules knew yet (a pod starting while policies exist).", nil, nil),
	}
}

// Collectors lists the syncer's metrics for registration; the drop
// counters are read from the kernel at each scrape.
func (s *Syncer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.duration, s.compileDuration, s.objects, s.policies, s.lastOK, s.failures, counterCollector{s}}
}

// Err is nil while the last sync succeeded, else why it did not.
func (s *Syncer) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Sync compiles in and makes the table match it.
func (s *Syncer) Sync(ctx context.Context, in Input) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	next := Compile(in)
	s.compileDuration.Observe(time.Since(start).Seconds())
	kind := "incremental"
	if s.last == nil {
		kind = "full"
	}
	tx := nftrules.NewTx(Table)
	nftrules.Sync(tx, s.last, next)
	if tx.Len() > 0 {
		if err := s.nft.Apply(ctx, tx); err != nil {
			s.last = nil
			s.lastErr = fmt.Errorf("apply %s sync of table %s: %w", kind, Table, err)
			s.failures.Inc()
			return s.lastErr
		}
	}
	s.last, s.lastErr = &next, nil
	st := StatsOf(next)
	for k, v := range map[string]int{"chains": st.Chains, "rules": st.Rules, "sets": st.Sets, "set_elements": st.SetElements, "map_elements": st.MapElements} {
		s.objects.WithLabelValues(k).Set(float64(v))
	}
	s.policies.Set(float64(len(in.Policies)))
	s.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	s.lastOK.SetToCurrentTime()
	return nil
}

// counterCollector reads the table's named counters at scrape time.
type counterCollector struct{ s *Syncer }

func (c counterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.s.dropped
	ch <- c.s.unknownDr
}

func (c counterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counters, err := c.s.nft.Counters(ctx)
	if err != nil {
		return // no table yet
	}
	for name, packets := range counters {
		if name == CounterUnknown {
			ch <- prometheus.MustNewConstMetric(c.s.unknownDr, prometheus.CounterValue, float64(packets))
		} else if p, ok := strings.CutPrefix(name, "drop-"); ok {
			ch <- prometheus.MustNewConstMetric(c.s.dropped, prometheus.CounterValue, float64(packets), p)
		}
	}
}

// EnableBridgeFiltering makes bridged IPv4 and IPv6 traffic go through the
// inet hooks of the node's network namespace (br_netfilter), so the forward
// chain sees two pods talking on berth0 as it sees routed traffic.
func EnableBridgeFiltering() error {
	for _, fam := range []string{"iptables", "ip6tables"} {
		path := "/proc/sys/net/bridge/bridge-nf-call-" + fam
		if err := sysctl.Ensure(path, "1"); err != nil {
			return fmt.Errorf("NetworkPolicy between pods of one node needs br_netfilter (modprobe br_netfilter): %w", err)
		}
	}
	return nil
}
