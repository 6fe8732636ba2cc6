package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthnet/berth/internal/nftrules"
)

// ColdStartBatch is how many Service ports one transaction of a cold start
// adds at most.
const ColdStartBatch = 1000

// Syncer applies states to the kernel. It keeps what it applied in memory,
// per Service port, and sends only what changed: a sync where one Service
// changed touches that Service's chains and elements and nothing else, and
// costs work in proportion to the change (plus one comparison per Service
// port). After a failed apply it forgets everything, so the next sync
// rebuilds the whole table in one transaction.
type Syncer struct {
	be Backend
	ct ConntrackCleaner
	mu sync.Mutex

	// synced is true while the fields below match the kernel.
	synced bool
	fixed  nftrules.Ruleset
	frags  map[PortKey]*appliedPort
	// claims lists, per shared map element ("map key"), the Service ports
	// that want it; the first one owns it. refs counts, per shared set
	// member ("set key"), the Service ports that want it.
	claims map[string][]PortKey
	refs   map[netip.Addr]int
	// blocks are the Service ports' key ranges in the endpoint maps.
	blocks *blocks
	// udp counts, per address, the UDP ports that have it as an endpoint;
	// udpSvc, the UDP ports with usable endpoints that answer on it (see
	// conntrack.go). udpGone and udpNew are the addresses whose flows the
	// last applied change asks to forget.
	udp, udpSvc     map[netip.Addr]int
	udpGone, udpNew []netip.Addr
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

// appliedPort is one Service port as last applied: its input (its part is
// built again from it when needed) and how big its part is.
type appliedPort struct {
	sp               ServicePort
	eps              []Endpoint
	chains, elements int
}

func (a *appliedPort) count(f fragment) {
	a.chains, a.elements = len(f.chains), len(f.elems)+len(f.own)
}

// NewSyncer returns a syncer for the berth-proxy table behind be; ct (may
// be nil) forgets UDP flows to endpoints that went away.
func NewSyncer(be Backend, ct ConntrackCleaner) *Syncer {
	return &Syncer{
		be:    be,
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

// Healthy reports whether the last sync succeeded.
func (s *Syncer) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy
}

// Sync makes the table match st.
func (s *Syncer) Sync(ctx context.Context, st State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	s.healthy = false
	var err error
	if s.synced {
		seen := make(map[PortKey]bool, len(st.Services))
		for _, sp := range st.Services {
			seen[sp.Key] = true
		}
		var gone []PortKey
		for k := range s.frags {
			if !seen[k] {
				gone = append(gone, k)
			}
		}
		err = s.incremental(ctx, st, st.Services, gone)
	} else {
		err = s.full(ctx, st)
	}
	return s.finish(start, err)
}

// Delta is a change to some Service ports: those in Upsert are new or
// replace the ones of the same key (with their endpoints in Endpoints),
// those in Remove are gone, and the pod and node-port ranges are as given.
type Delta struct {
	Upsert                      []ServicePort
	Endpoints                   map[PortKey][]Endpoint
	Remove                      []PortKey
	ClusterCIDRs, NodePortCIDRs []netip.Prefix
}

// Synced reports whether the table matches a state the syncer knows, so
// that Update can apply a delta to it; if not, call Sync with a full state.
func (s *Syncer) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// Update applies a delta to a synced table, at a cost in proportion to the
// delta rather than to the cluster.
func (s *Syncer) Update(ctx context.Context, d Delta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.synced {
		return fmt.Errorf("service proxy: a delta needs a synced table; sync the full state first")
	}
	start := time.Now()
	s.healthy = false
	st := State{Endpoints: d.Endpoints, ClusterCIDRs: d.ClusterCIDRs, NodePortCIDRs: d.NodePortCIDRs}
	return s.finish(start, s.incremental(ctx, st, d.Upsert, d.Remove))
}

// finish records a sync's outcome: metrics, health, and, once the rules no
// longer send new packets to an endpoint, the forgetting of its UDP flows,
// so the next packet of each flow is balanced anew.
func (s *Syncer) finish(start time.Time, err error) error {
	if err != nil {
		s.synced = false
		s.failures.Inc()
		return err
	}
	s.healthy = true
	if s.ct != nil {
		for _, a := range s.udpGone {
			if _, err := s.ct.ForgetUDPTo(a); err != nil {
				s.failures.Inc()
			}
		}
		for _, a := range s.udpNew {
			if _, err := s.ct.ForgetUDPToService(a); err != nil {
				s.failures.Inc()
			}
		}
	}
	s.udpGone, s.udpNew = nil, nil
	chains, elements := len(s.fixed.Chains)+len(baseChains()), 0
	for _, a := range s.frags {
		chains += a.chains
		elements += a.elements
	}
	s.chains.Set(float64(chains))
	s.elements.Set(float64(elements))
	s.duration.Observe(time.Since(start).Seconds())
	s.lastOK.SetToCurrentTime()
	return nil
}

// full rebuilds the table. A table that exists (the agent restarted, or a
// sync failed) is replaced in one transaction: its rules keep working until
// the new ones take over, with no gap. A table that does not exist yet is
// filled in bounded transactions (see coldStart).
func (s *Syncer) full(ctx context.Context, st State) error {
	s.reset()
	fixed := Build(State{ClusterCIDRs: st.ClusterCIDRs, NodePortCIDRs: st.NodePortCIDRs})
	if len(st.Services) > s.batch {
		exists, err := s.be.TableExists(ctx)
		if err != nil {
			return err
		}
		if !exists {
			return s.coldStart(ctx, st, fixed)
		}
	}
	next := build(st, s.blocks)
	tx := nftrules.NewTx(Table)
	nftrules.Sync(tx, nil, next)
	if err := s.be.Apply(ctx, tx); err != nil {
		return fmt.Errorf("apply %d nftables operations: %w", tx.Len(), err)
	}
	s.fixed, s.synced = fixed, true
	for _, sp := range st.Services {
		if s.frags[sp.Key] == nil {
			s.record(sp, st.Endpoints[sp.Key], buildFragment(sp, st.Endpoints[sp.Key], s.blocks))
		}
	}
	s.recountUDP()
	return nil
}

// recountUDP counts the UDP addresses of everything applied after a full
// rebuild, against the counts from before it.
func (s *Syncer) recountUDP() {
	prevEP, prevSvc := s.udp, s.udpSvc
	s.udp, s.udpSvc = nil, nil
	all := make([]*appliedPort, 0, len(s.frags))
	for _, a := range s.frags {
		all = append(all, a)
	}
	s.countUDP(nil, all)
	s.udpGone, s.udpNew = nil, nil
	for a := range prevEP {
		if s.udp[a] == 0 {
			s.udpGone = append(s.udpGone, a)
		}
	}
	for a := range s.udpSvc {
		if prevSvc[a] == 0 {
			s.udpNew = append(s.udpNew, a)
		}
	}
}

// coldStart fills a new table: one transaction makes the table with its
// hooks, maps and fixed chains; then the Service ports' chains and rules go
// in, a batch at a time, while no map points at them yet; then their map
// elements, a batch at a time, each batch of Services working as soon as
// it lands. Rules before elements: adding a rule that looks up a map makes
// the kernel walk the map's elements, so rules added to full maps would
// cost a walk each.
func (s *Syncer) coldStart(ctx context.Context, st State, fixed nftrules.Ruleset) error {
	tx := nftrules.NewTx(Table)
	nftrules.Sync(tx, nil, fixed)
	if err := s.be.Apply(ctx, tx); err != nil {
		return fmt.Errorf("create table %s: %w", Table, err)
	}
	// Parts are built a batch at a time, twice (once for the chains, once
	// for the elements), rather than all kept: less memory at the peak.
	var ports []ServicePort
	for _, sp := range st.Services {
		if s.frags[sp.Key] == nil {
			s.frags[sp.Key] = &appliedPort{} // placeholder: seen
			ports = append(ports, sp)
		}
	}
	batches := func(emit func(tx *nftrules.Tx, sp ServicePort, f fragment)) error {
		for i := 0; i < len(ports); i += s.batch {
			tx := nftrules.NewTx(Table)
			for _, sp := range ports[i:min(i+s.batch, len(ports))] {
				emit(tx, sp, buildFragment(sp, st.Endpoints[sp.Key], s.blocks))
			}
			if len(tx.Ops) > 0 && tx.Ops[0].Obj == nftrules.ObjElement {
				// Elements of one set go together, many to a message.
				sort.SliceStable(tx.Ops, func(i, j int) bool { return tx.Ops[i].Name < tx.Ops[j].Name })
			}
			if err := s.be.Apply(ctx, tx); err != nil {
				return fmt.Errorf("cold start, Service ports %d to %d: apply %d nftables operations: %w", i, min(i+s.batch, len(ports)), tx.Len(), err)
			}
		}
		return nil
	}
	err := batches(func(tx *nftrules.Tx, sp ServicePort, f fragment) {
		s.record(sp, st.Endpoints[sp.Key], f)
		for _, name := range sortedKeys(f.sets) {
			set := f.sets[name]
			tx.AddSet(name, nftrules.SetDef{Type: set.Type, TimeoutSeconds: set.TimeoutSeconds})
		}
		names := sortedKeys(f.chains)
		for _, name := range names {
			tx.AddChain(name, nil)
		}
		sort.SliceStable(names, func(i, j int) bool { return chainRank(names[i]) > chainRank(names[j]) })
		for _, name := range names {
			for _, r := range f.chains[name] {
				tx.AddRule(name, r)
			}
		}
	})
	if err != nil {
		return err
	}
	added := map[netip.Addr]bool{}
	err = batches(func(tx *nftrules.Tx, sp ServicePort, f fragment) {
		for _, e := range f.elems {
			if s.claims[e.set+" "+e.key][0] == sp.Key {
				tx.AddElement(e.set, e.key, e.value)
			}
		}
		for _, e := range f.own {
			tx.AddElement(e.set, e.key, e.value)
		}
		for _, m := range f.members {
			if !added[m] {
				added[m] = true
				e := hairpinMember(m)
				tx.AddElement(e.set, e.key, "")
			}
		}
	})
	if err != nil {
		return err
	}
	s.fixed, s.synced = fixed, true
	s.recountUDP()
	return nil
}

func (s *Syncer) reset() {
	s.synced = false
	s.fixed = nftrules.Ruleset{}
	s.frags = map[PortKey]*appliedPort{}
	s.claims = map[string][]PortKey{}
	s.refs = map[netip.Addr]int{}
	s.blocks = newBlocks()
}

// record notes a Service port's part as applied: its claims on shared map
// elements (in order, so the first keeps a contested element, as Build
// does) and its references to shared set members.
func (s *Syncer) record(sp ServicePort, eps []Endpoint, f fragment) {
	a := &appliedPort{sp: sp, eps: eps}
	a.count(f)
	s.frags[sp.Key] = a
	for _, e := range f.elems {
		k := e.set + " " + e.key
		s.claims[k] = append(s.claims[k], sp.Key)
	}
	for _, m := range f.members {
		s.refs[m]++
	}
}
