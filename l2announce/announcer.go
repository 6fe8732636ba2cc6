package l2announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Announcer runs layer-2 announcement on one node: it decides with Decide
// which addresses this node announces and on which links, answers ARP and
// neighbour solicitations for exactly those, announces each address it
// takes (after a conflict probe when the address is new), and reports
// what it holds through Report.
type Announcer struct {
	Node       string
	Members    *Members
	Heartbeats *Heartbeats
	// Readiness timers: Settle (see Readiness) and Hold, how long this
	// node says it is ready for a group before acting on it, so that a
	// peer that must let an address go hears it first (a heartbeat
	// interval or two).
	Settle, Hold time.Duration
	// Tick bounds how late a peer's death is noticed after DeadAfter.
	Tick time.Duration
	// Probe: count probes interval apart before announcing a new
	// address; after a conflict, probe again every Retry.
	ProbeCount    int
	ProbeInterval time.Duration
	ProbeRetry    time.Duration
	// Burst: gratuitous announcements sent when taking an address or when
	// its link comes back, BurstInterval apart.
	Burst         int
	BurstInterval time.Duration
	// Report receives what this node has to say about an address; it is
	// called from the announcer's loop and must not block for long.
	Report func(Report)
	// HealthChanged, if set, is called from the announcer's loop when
	// what Err says changes; it must not block.
	HealthChanged func()
	Metrics       *Metrics
	Log           logr.Logger
	// Clock is the announcer's time (clock.RealClock{} in the agent).
	Clock clock.WithTicker
	// Network is its I/O: the links and their responders (KernelNetwork
	// in the agent).
	Network Network

	mu      sync.Mutex
	desired desiredState
	wake    chan struct{}
	problem string

	// held is what the responders answer for: link name -> addresses.
	held atomic.Pointer[map[string]map[netip.Addr]bool]
}

type desiredState struct {
	gen    uint64
	addrs  []*Address
	nodes  []NodeInfo
	groups []*Group
}

// SetDesired gives the announcer the addresses to announce, the nodes and
// the groups, as the API server has them; it acts on them at once.
func (a *Announcer) SetDesired(addrs []*Address, nodes []NodeInfo, groups []*Group) {
	a.mu.Lock()
	a.desired = desiredState{gen: a.desired.gen + 1, addrs: addrs, nodes: nodes, groups: groups}
	a.mu.Unlock()
	a.poke()
}

func (a *Announcer) poke() {
	select {
	case a.wakeCh() <- struct{}{}:
	default:
	}
}

func (a *Announcer) wakeCh() chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.wake == nil {
		a.wake = make(chan struct{}, 1)
	}
	return a.wake
}

// Err says what keeps this node from announcing as it should (links it
// cannot read, responders it cannot open), or nil.
func (a *Announcer) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.problem == "" {
		return nil
	}
	return errors.New(a.problem)
}

// setProblem records what Err says, telling HealthChanged when it changes.
func (a *Announcer) setProblem(p string) {
	a.mu.Lock()
	changed := a.problem != p
	a.problem = p
	a.mu.Unlock()
	if changed && a.HealthChanged != nil {
		a.HealthChanged()
	}
}

// owned reports whether this node answers for addr on link.
func (a *Announcer) owned(link string) Owned {
	return func(addr netip.Addr) bool {
		m := a.held.Load()
		return m != nil && (*m)[link][addr]
	}
}

// Held lists what this node announces now, link -> addresses, sorted.
func (a *Announcer) Held() map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	if m := a.held.Load(); m != nil {
		for l, as := range *m {
			for ad := range as {
				out[l] = append(out[l], ad)
			}
			slices.SortFunc(out[l], netip.Addr.Compare)
		}
	}
	return out
}

// Run announces until ctx ends. On the way out it stops answering first
// and only then lets the heartbeats send their leaving message, so the
// next owner never answers while this node still does.
func (a *Announcer) Run(ctx context.Context, hbConns []*net.UDPConn) error {
	if a.Clock == nil || a.Network == nil {
		return fmt.Errorf("layer-2 announcer of %s: set Clock (clock.RealClock{}) and Network (KernelNetwork{})", a.Node)
	}
	l := newLoop(ctx, a)
	a.Heartbeats.Groups = l.groupsForHeartbeat
	hbCtx, stopHB := context.WithCancel(context.Background())
	hbDone := make(chan error, 1)
	go func() {
		hbDone <- a.Heartbeats.Run(hbCtx, hbConns, func(err error) {
			a.Metrics.heartbeatRefused(err)
			a.Log.V(1).Info("heartbeat refused", "error", err.Error())
		})
	}()
	linksChanged := make(chan struct{}, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		// A failed subscription is made again; the re-read after it
		// catches what happened meanwhile.
		for {
			err := a.Network.WatchLinks(watchCtx, func() {
				select {
				case linksChanged <- struct{}{}:
				default:
				}
			})
			if watchCtx.Err() != nil {
				watchDone <- nil
				return
			}
			a.Log.Error(err, "watch links; subscribing again")
			select {
			case linksChanged <- struct{}{}:
			default:
			}
			select {
			case <-watchCtx.Done():
			case <-a.Clock.After(time.Second):
			}
		}
	}()
	err := l.run(linksChanged, watchDone)
	stopWatch()
	l.releaseAll()
	stopHB()
	<-hbDone
	return err
}

// linksFor lists the links with carrier this node announces ad on: those
// of the groups it is ready for.
func (l *loop) linksFor(ad *Address, self map[uint64]bool) []string {
	var out []string
	for _, g := range ad.Groups {
		if !self[g.Key] {
			continue
		}
		for _, name := range Interfaces(g.Interfaces, g.Samples, l.links) {
			if _, up := l.upSince[name]; up && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func newIn(now, before []string) []string {
	var out []string
	for _, n := range now {
		if !slices.Contains(before, n) {
			out = append(out, n)
		}
	}
	return out
}
