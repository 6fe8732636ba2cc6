package l2announce

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
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
	Report  func(Report)
	Metrics *Metrics
	Log     logr.Logger
	// Open opens the responders of a link (OpenResponders when nil).
	Open func(ifi *net.Interface) (*Responders, error)

	mu      sync.Mutex
	desired desiredState
	wake    chan struct{}

	// held is what the responders answer for: link name -> addresses.
	held atomic.Pointer[map[string]map[netip.Addr]bool]
}

type desiredState struct {
	gen    uint64
	addrs  []*Address
	nodes  []NodeInfo
	groups []*Group
}

// ReportState says what a Report is about.
type ReportState string

const (
	// Announcing: this node answers for the address on Interfaces.
	Announcing ReportState = "Announcing"
	// Conflict: another host on the LAN answered the probe for the
	// address; this node does not announce it and probes again later.
	Conflict ReportState = "Conflict"
	// NoAnnouncer: no node may announce the address.
	NoAnnouncer ReportState = "NoAnnouncer"
)

// Report is one node's word on one address.
type Report struct {
	Addr       netip.Addr
	Services   []string
	State      ReportState
	Node       string
	Interfaces []string
	// ConflictMAC is who holds the address, for Conflict.
	ConflictMAC net.HardwareAddr
}

func (r Report) key() string {
	return fmt.Sprint(r.State, r.Services, r.Interfaces, r.ConflictMAC.String())
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

// Owned reports whether this node answers for addr on link.
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
func (a *Announcer) Run(ctx context.Context, hbConn *net.UDPConn) error {
	l := &loop{a: a, started: time.Now(), upSince: map[string]time.Time{}, advertised: map[uint64]time.Time{},
		holding: map[netip.Addr]*holding{}, probes: map[netip.Addr]*probeState{}, reported: map[netip.Addr]string{}, sentAt: map[netip.Addr]time.Time{},
		responders: map[string]*Responders{}, results: make(chan probeResult, 16), served: make(chan string, 16)}
	a.Heartbeats.Groups = l.groupsForHeartbeat
	hbCtx, stopHB := context.WithCancel(context.Background())
	hbDone := make(chan error, 1)
	go func() {
		hbDone <- a.Heartbeats.Run(hbCtx, hbConn, func(err error) {
			a.Metrics.heartbeatRefused()
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
			err := WatchLinks(watchCtx, func() {
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
			case <-time.After(time.Second):
			}
		}
	}()
	err := l.run(ctx, linksChanged, watchDone)
	stopWatch()
	l.releaseAll()
	stopHB()
	<-hbDone
	return err
}

// holding is an address this node announces.
type holding struct {
	links    []string
	services []string
}

type probeState struct {
	running  bool
	clear    bool
	conflict net.HardwareAddr
	retryAt  time.Time
}

type probeResult struct {
	addr     netip.Addr
	link     string
	conflict net.HardwareAddr
	err      error
}

// loop is the announcer's state, owned by its one goroutine.
type loop struct {
	a          *Announcer
	started    time.Time
	links      []Link
	upSince    map[string]time.Time
	advertised map[uint64]time.Time
	adMu       sync.Mutex
	adList     []uint64
	holding    map[netip.Addr]*holding
	probes     map[netip.Addr]*probeState
	reported   map[netip.Addr]string
	responders map[string]*Responders
	// gen counts changes of links and probes; with the desired state's
	// generation and the view it tells a step that changes nothing, which
	// is skipped (most steps are: Tick is short, so deaths are seen soon).
	gen      uint64
	lastStep [sha256.Size]byte
	// disturbed is when a link last came up or went down.
	disturbed time.Time
	// sentAt is when each address's report was last handed over.
	sentAt  map[netip.Addr]time.Time
	results chan probeResult
	served  chan string
	ctx     context.Context
}

func (l *loop) groupsForHeartbeat() []uint64 {
	l.adMu.Lock()
	defer l.adMu.Unlock()
	return l.adList
}

func (l *loop) run(ctx context.Context, linksChanged chan struct{}, watchDone chan error) error {
	l.ctx = ctx
	a := l.a
	for {
		err := l.readLinks()
		if err == nil {
			break
		}
		a.Log.Error(err, "read links; trying again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	tick := time.NewTicker(a.Tick)
	defer tick.Stop()
	wake := a.wakeCh()
	for {
		l.step(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case err := <-watchDone:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-linksChanged:
			if err := l.readLinks(); err != nil {
				a.Log.Error(err, "read links")
			}
		case r := <-l.results:
			l.probed(r)
		case link := <-l.served:
			// A responder stopped (its link went away or failed): the
			// next step opens it again if it is still needed.
			if rs := l.responders[link]; rs != nil {
				rs.Close()
				delete(l.responders, link)
			}
		case <-wake:
		case <-tick.C:
		}
	}
}

func (l *loop) readLinks() error {
	links, err := ReadLinks()
	if err != nil {
		return err
	}
	now := time.Now()
	was := l.upSince
	l.upSince = make(map[string]time.Time, len(links))
	for _, ln := range links {
		if !ln.Up {
			if _, wasUp := was[ln.Name]; wasUp {
				l.disturbed = now
			}
			continue
		}
		if t, ok := was[ln.Name]; ok {
			l.upSince[ln.Name] = t
			continue
		}
		l.upSince[ln.Name] = now
		l.disturbed = now
		// Carrier is back: tell the LAN again where this node's
		// addresses are (they may have moved while the link was down).
		for addr, h := range l.holding {
			if slices.Contains(h.links, ln.Name) {
				l.burst(addr, ln.Name)
			}
		}
	}
	l.links = links
	l.gen++
	return nil
}

func (l *loop) step(now time.Time) {
	a := l.a
	a.mu.Lock()
	d := a.desired
	a.mu.Unlock()

	var selfLabels map[string]string
	for _, n := range d.nodes {
		if n.Name == a.Node {
			selfLabels = n.Labels
		}
	}
	ready := ReadyGroups(d.groups, selfLabels, l.links, Readiness{Started: l.started, UpSince: l.upSince, Settle: a.Settle}, now)
	changed := len(ready) != len(l.advertised)
	next := make(map[uint64]time.Time, len(ready))
	for _, g := range ready {
		since, ok := l.advertised[g]
		if !ok {
			since, changed = now, true
		}
		next[g] = since
	}
	l.advertised = next
	if changed {
		l.adMu.Lock()
		l.adList = ready
		l.adMu.Unlock()
		a.Heartbeats.Kick()
	}
	// This node counts itself ready for a group only once it has said so
	// for Hold, so a peer that must let go has heard it first.
	self := map[uint64]bool{}
	for g, since := range l.advertised {
		if now.Sub(since) >= a.Hold {
			self[g] = true
		}
	}
	view := a.Members.ReadyPeers()
	view[a.Node] = self
	speaks := l.speaksForCluster(now, len(view), len(d.nodes))
	local := l.gen << 1
	if speaks {
		local |= 1
	}
	fp := fingerprint(d.gen, local, view)
	if fp == l.lastStep && !l.retrying() {
		return
	}
	l.lastStep = fp
	decisions := Decide(d.addrs, d.nodes, view)

	byAddr := make(map[netip.Addr]*Address, len(d.addrs))
	for _, ad := range d.addrs {
		byAddr[ad.Addr] = ad
	}
	// Let go first, then take: never answer for what this node no
	// longer owns, even for a moment.
	for addr := range l.holding {
		ad := byAddr[addr]
		if ad == nil || decisions[addr].Owner != a.Node || len(l.linksFor(ad, self)) == 0 {
			delete(l.holding, addr)
			delete(l.probes, addr)
			a.Metrics.released()
		}
	}
	l.publish()
	takenAny := false
	for _, ad := range d.addrs {
		dec := decisions[ad.Addr]
		switch {
		case dec.Owner == a.Node:
			links := l.linksFor(ad, self)
			if len(links) == 0 {
				continue
			}
			if !ad.Announced && !l.probeClear(ad, links[0], now) {
				continue
			}
			h := l.holding[ad.Addr]
			if h == nil {
				h = &holding{}
				l.holding[ad.Addr] = h
				takenAny = true
				a.Metrics.taken()
			}
			added := newIn(links, h.links)
			h.links, h.services = links, ad.Services
			if len(added) > 0 {
				l.publish()
				for _, ln := range added {
					l.burst(ad.Addr, ln)
				}
			}
			l.report(Report{Addr: ad.Addr, Services: ad.Services, State: Announcing, Node: a.Node, Interfaces: links}, ad.Reported, now)
		case dec.Owner == "" && dec.Reporter == a.Node && speaks:
			l.report(Report{Addr: ad.Addr, Services: ad.Services, State: NoAnnouncer, Node: a.Node}, ad.Reported, now)
		default:
			// Another node speaks for this address now; if it comes back
			// here, report (and probe, if still new) again.
			delete(l.reported, ad.Addr)
			if p := l.probes[ad.Addr]; p != nil && !p.running {
				delete(l.probes, ad.Addr)
			}
		}
	}
	for addr := range l.reported {
		if byAddr[addr] == nil {
			delete(l.reported, addr)
			delete(l.sentAt, addr)
		}
	}
	for addr := range l.probes {
		if byAddr[addr] == nil {
			delete(l.probes, addr)
		}
	}
	if takenAny {
		l.publish()
	}
	a.Metrics.set(len(l.holding), len(view))
}

// retrying reports whether a conflict probe waits to run again, which
// only time brings.
func (l *loop) retrying() bool {
	for _, p := range l.probes {
		if !p.clear && !p.running {
			return true
		}
	}
	return false
}

// fingerprint sums up what a step decides from.
func fingerprint(desired, local uint64, view map[string]map[uint64]bool) [sha256.Size]byte {
	names := make([]string, 0, len(view))
	for n := range view {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	var b [8]byte
	put := func(v uint64) {
		binary.BigEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	put(desired)
	put(local)
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
		groups := make([]uint64, 0, len(view[n]))
		for g, ok := range view[n] {
			if ok {
				groups = append(groups, g)
			}
		}
		slices.Sort(groups)
		put(uint64(len(groups)))
		for _, g := range groups {
			put(g)
		}
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
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

// probeClear reports whether ad may be announced: a probe on link found
// nobody else holding it. It starts the probe when none ran yet.
func (l *loop) probeClear(ad *Address, link string, now time.Time) bool {
	p := l.probes[ad.Addr]
	if p == nil {
		p = &probeState{}
		l.probes[ad.Addr] = p
	}
	if p.clear {
		return true
	}
	if p.running || now.Before(p.retryAt) {
		return false
	}
	rs, err := l.respondersFor(link)
	if err != nil {
		l.a.Log.Error(err, "conflict probe", "address", ad.Addr.String(), "interface", link)
		p.retryAt = now.Add(l.a.ProbeRetry)
		return false
	}
	p.running = true
	addr, count, interval := ad.Addr, l.a.ProbeCount, l.a.ProbeInterval
	go func() {
		mac, err := rs.Probe(l.ctx, addr, count, interval)
		select {
		case l.results <- probeResult{addr: addr, link: link, conflict: mac, err: err}:
		case <-l.ctx.Done():
		}
	}()
	return false
}

func (l *loop) probed(r probeResult) {
	p := l.probes[r.addr]
	if p == nil {
		return
	}
	p.running = false
	l.gen++
	switch {
	case r.err != nil:
		l.a.Log.Error(r.err, "conflict probe", "address", r.addr.String(), "interface", r.link)
		p.retryAt = time.Now().Add(l.a.ProbeRetry)
	case r.conflict != nil:
		p.conflict, p.retryAt = r.conflict, time.Now().Add(l.a.ProbeRetry)
		l.a.Metrics.conflict()
		l.a.mu.Lock()
		var services []string
		for _, ad := range l.a.desired.addrs {
			if ad.Addr == r.addr {
				services = ad.Services
			}
		}
		l.a.mu.Unlock()
		l.report(Report{Addr: r.addr, Services: services, State: Conflict, Node: l.a.Node, Interfaces: []string{r.link}, ConflictMAC: r.conflict}, "", time.Now())
	default:
		p.clear = true
	}
}

// report hands r over when it is news, or when what the Services say
// (current) is not what this node has to say and a second has passed since
// it last said it: a write of another node's stale view, or one lost, is
// corrected.
func (l *loop) report(r Report, current string, now time.Time) {
	k := r.key()
	if l.reported[r.Addr] == k && (current == r.Describe() || now.Sub(l.sentAt[r.Addr]) < time.Second) {
		return
	}
	l.reported[r.Addr] = k
	l.sentAt[r.Addr] = now
	if l.a.Report != nil {
		l.a.Report(r)
	}
}

// speaksForCluster: only an agent that has been up, with its links steady,
// for Settle and Hold, and that hears a peer (when it has any), says that
// no node may announce an address. One that has just started, or whose
// link has just come back, has not heard its peers yet; one that hears
// none is cut off, and its view is its own.
func (l *loop) speaksForCluster(now time.Time, live, nodes int) bool {
	steady := l.a.Settle + l.a.Hold
	return now.Sub(l.started) >= steady && now.Sub(l.disturbed) >= steady && (live > 1 || nodes <= 1)
}

// publish makes the responders answer for exactly what is held, opening
// the responders of links that need one.
func (l *loop) publish() {
	m := map[string]map[netip.Addr]bool{}
	for addr, h := range l.holding {
		for _, ln := range h.links {
			if m[ln] == nil {
				m[ln] = map[netip.Addr]bool{}
			}
			m[ln][addr] = true
		}
	}
	prev := l.a.held.Swap(&m)
	for ln, as := range m {
		rs, err := l.respondersFor(ln)
		if err != nil {
			l.a.Log.Error(err, "open responders", "interface", ln)
			continue
		}
		for addr := range as {
			if prev == nil || !(*prev)[ln][addr] {
				if err := rs.Joined(addr, true); err != nil {
					l.a.Log.Error(err, "join the solicited-node group", "address", addr.String(), "interface", ln)
				}
			}
		}
	}
	if prev != nil {
		for ln, as := range *prev {
			rs := l.responders[ln]
			if rs == nil {
				continue
			}
			for addr := range as {
				if !m[ln][addr] {
					if err := rs.Joined(addr, false); err != nil {
						l.a.Log.Error(err, "leave the solicited-node group", "address", addr.String(), "interface", ln)
					}
				}
			}
		}
	}
}

func (l *loop) respondersFor(link string) (*Responders, error) {
	if rs := l.responders[link]; rs != nil {
		return rs, nil
	}
	ifi, err := net.InterfaceByName(link)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", link, err)
	}
	open := l.a.Open
	if open == nil {
		open = OpenResponders
	}
	rs, err := open(ifi)
	if err != nil {
		return nil, err
	}
	l.responders[link] = rs
	go func() {
		err := rs.Serve(l.ctx, l.a.owned(link), l.a.Metrics.frame)
		if err != nil && l.ctx.Err() == nil {
			l.a.Log.Error(err, "responder stopped; reopening", "interface", link)
		}
		select {
		case l.served <- link:
		case <-l.ctx.Done():
		}
	}()
	return rs, nil
}

// burst sends Burst gratuitous announcements of addr on link, stopping
// early if the node lets the address go.
func (l *loop) burst(addr netip.Addr, link string) {
	rs, err := l.respondersFor(link)
	if err != nil {
		l.a.Log.Error(err, "announce", "address", addr.String(), "interface", link)
		return
	}
	owned := l.a.owned(link)
	n, every := l.a.Burst, l.a.BurstInterval
	go func() {
		t := time.NewTimer(0)
		defer t.Stop()
		for i := 0; i < n; i++ {
			select {
			case <-l.ctx.Done():
				return
			case <-t.C:
			}
			if !owned(addr) {
				return
			}
			if err := rs.Announce(addr); err != nil {
				l.a.Log.Error(err, "announce", "address", addr.String(), "interface", link)
			}
			t.Reset(every)
		}
	}()
}

// releaseAll stops answering for everything and closes the responders.
func (l *loop) releaseAll() {
	empty := map[string]map[netip.Addr]bool{}
	l.a.held.Store(&empty)
	for _, rs := range l.responders {
		rs.Close()
	}
	l.holding = map[netip.Addr]*holding{}
	l.a.Metrics.set(0, 0)
}

// Describe says in one line what a report means, for events and logs.
func (r Report) Describe() string {
	switch r.State {
	case Announcing:
		return fmt.Sprintf("%s announced by %s on %s", r.Addr, r.Node, strings.Join(r.Interfaces, ", "))
	case Conflict:
		return fmt.Sprintf("%s is in use by %s on the LAN (%s probed on %s), so it is not announced", r.Addr, r.ConflictMAC, r.Node, strings.Join(r.Interfaces, ", "))
	default:
		return fmt.Sprintf("%s: no node may announce it (no live node is selected, ready with an interface up and, for policy Local, holding a ready endpoint)", r.Addr)
	}
}
