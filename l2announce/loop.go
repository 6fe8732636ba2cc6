package l2announce

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"
)

// holding is an address this node announces.
type holding struct {
	links    []string
	services []string
}

type probeState struct {
	// link is where it probes.
	link    string
	running bool
	clear   bool
	// conflict is the host that last claimed the address, while it does.
	conflict net.HardwareAddr
	// proberSeen: a probe saw another host only probing for the address;
	// the next such one does not hold the address back.
	proberSeen bool
	retryAt    time.Time
}

type openFailure struct {
	at  time.Time
	err error
}

type probeResult struct {
	addr      netip.Addr
	link      string
	contender *Contender
	err       error
}

// loop is the announcer's state, owned by its one goroutine. Its step
// decides from the desired state, the peers' view, the links and the
// time it is given; what it does goes through the Network.
type loop struct {
	a          *Announcer
	ctx        context.Context
	started    time.Time
	links      []Link
	upSince    map[string]time.Time
	advertised map[uint64]time.Time
	adMu       sync.Mutex
	adList     []uint64
	holding    map[netip.Addr]*holding
	probes     map[netip.Addr]*probeState
	reported   map[netip.Addr]string
	responders map[string]LinkIO
	// problems are what Err says, by source ("" for the links, else a
	// link's name).
	problems map[string]string
	// openFailed: links whose responders failed to open, and when.
	openFailed map[string]openFailure
	// reopened: links whose responders opened after failing to.
	reopened map[string]bool
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
}

func newLoop(ctx context.Context, a *Announcer) *loop {
	return &loop{a: a, ctx: ctx, started: a.Clock.Now(), upSince: map[string]time.Time{}, advertised: map[uint64]time.Time{},
		holding: map[netip.Addr]*holding{}, probes: map[netip.Addr]*probeState{}, reported: map[netip.Addr]string{},
		sentAt: map[netip.Addr]time.Time{}, responders: map[string]LinkIO{}, problems: map[string]string{}, openFailed: map[string]openFailure{}, reopened: map[string]bool{},
		results: make(chan probeResult, 16), served: make(chan string, 16)}
}

func (l *loop) groupsForHeartbeat() []uint64 {
	l.adMu.Lock()
	defer l.adMu.Unlock()
	return l.adList
}

func (l *loop) run(linksChanged chan struct{}, watchDone chan error) error {
	a := l.a
	for {
		err := l.readLinks()
		if err == nil {
			break
		}
		a.Log.Error(err, "read links; trying again")
		select {
		case <-l.ctx.Done():
			return nil
		case <-a.Clock.After(time.Second):
		}
	}
	tick := a.Clock.NewTicker(a.Tick)
	defer tick.Stop()
	wake := a.wakeCh()
	for {
		l.step(a.Clock.Now())
		select {
		case <-l.ctx.Done():
			return nil
		case err := <-watchDone:
			if l.ctx.Err() != nil {
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
		case <-tick.C():
		}
	}
}

// readLinks reads the links; a link whose carrier came back announces
// again what this node holds on it.
func (l *loop) readLinks() error {
	links, err := l.a.Network.Links()
	if err != nil {
		l.problem("", "read links: "+err.Error())
		return err
	}
	l.problem("", "")
	now := l.a.Clock.Now()
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

// problem records (or, with "", clears) what is wrong with a source, and
// hands the sum to the announcer's Err.
func (l *loop) problem(source, p string) {
	if p == "" {
		delete(l.problems, source)
	} else {
		l.problems[source] = p
	}
	keys := make([]string, 0, len(l.problems))
	for k := range l.problems {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sum := ""
	for _, k := range keys {
		if sum != "" {
			sum += "; "
		}
		sum += l.problems[k]
	}
	l.a.setProblem(sum)
}

// step decides what this node announces at now and makes it so.
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
	l.countConflicts()
}

// retrying reports whether a conflict probe or the opening of a link's
// responders waits to run again, which only time brings.
func (l *loop) retrying() bool {
	if len(l.openFailed) > 0 {
		return true
	}
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

// report hands r over when it is news, or when what the Services say
// (current) is not what this node has to say and a second has passed since
// it last said it: a write of another node's stale view, or one lost, is
// corrected.
func (l *loop) report(r Report, current *Report, now time.Time) {
	k := r.key()
	if l.reported[r.Addr] == k && (r.Says(current) || now.Sub(l.sentAt[r.Addr]) < time.Second) {
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
