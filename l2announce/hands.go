package l2announce

import (
	"net/netip"
	"time"
)

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
	p.link = link
	rs, err := l.respondersFor(link)
	if err != nil {
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

// probed takes a probe's result: clear, a conflict (reported, probed again
// after ProbeRetry), or a failure (probed again after ProbeRetry).
func (l *loop) probed(r probeResult) {
	p := l.probes[r.addr]
	if p == nil {
		return
	}
	now := l.a.Clock.Now()
	p.running = false
	l.gen++
	switch {
	case r.err != nil:
		l.a.Log.Error(r.err, "conflict probe", "address", r.addr.String(), "interface", r.link)
		p.retryAt = now.Add(l.a.ProbeRetry)
	case r.conflict != nil:
		p.conflict, p.retryAt = r.conflict, now.Add(l.a.ProbeRetry)
		l.a.Metrics.conflict()
		l.a.mu.Lock()
		var (
			services []string
			reported *Report
		)
		for _, ad := range l.a.desired.addrs {
			if ad.Addr == r.addr {
				services, reported = ad.Services, ad.Reported
			}
		}
		l.a.mu.Unlock()
		l.report(Report{Addr: r.addr, Services: services, State: Conflict, Node: l.a.Node, Interfaces: []string{r.link}, ConflictMAC: r.conflict}, reported, now)
	default:
		p.clear = true
	}
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
	// Responders that open only now, after failing, tell the LAN what
	// they answer for: nobody did when it was taken.
	for ln := range l.reopened {
		delete(l.reopened, ln)
		for addr := range m[ln] {
			l.burst(addr, ln)
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
	// A link no longer needed (nothing held or waiting for a probe
	// there) is no longer a problem.
	probing := map[string]bool{}
	for _, p := range l.probes {
		if !p.clear {
			probing[p.link] = true
		}
	}
	for src := range l.problems {
		if src != "" && m[src] == nil && !probing[src] {
			delete(l.openFailed, src)
			l.problem(src, "")
		}
	}
}

// respondersFor returns the link's responders, opening them (and starting
// to serve) when they are not open. A failed open is logged, shows in Err,
// and is tried again a second later, not at every step.
func (l *loop) respondersFor(link string) (LinkIO, error) {
	if rs := l.responders[link]; rs != nil {
		return rs, nil
	}
	now := l.a.Clock.Now()
	if f, ok := l.openFailed[link]; ok && now.Sub(f.at) < time.Second {
		return nil, f.err
	}
	rs, err := l.a.Network.Open(link)
	if err != nil {
		l.openFailed[link] = openFailure{at: now, err: err}
		l.a.Log.Error(err, "open the ARP/NDP responders", "interface", link)
		l.problem(link, "open the ARP/NDP responders of "+link+": "+err.Error())
		return nil, err
	}
	if _, failed := l.openFailed[link]; failed {
		delete(l.openFailed, link)
		l.reopened[link] = true
	}
	l.problem(link, "")
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

// burst sends Burst gratuitous announcements of addr on link, the first at
// once, stopping early if the node lets the address go.
func (l *loop) burst(addr netip.Addr, link string) {
	rs, err := l.respondersFor(link)
	if err != nil {
		return
	}
	owned := l.a.owned(link)
	announce := func() bool {
		if !owned(addr) {
			return false
		}
		if err := rs.Announce(addr); err != nil {
			l.a.Log.Error(err, "announce", "address", addr.String(), "interface", link)
		}
		return true
	}
	if l.a.Burst <= 0 || !announce() {
		return
	}
	n, every, clk := l.a.Burst, l.a.BurstInterval, l.a.Clock
	go func() {
		for i := 1; i < n; i++ {
			select {
			case <-l.ctx.Done():
				return
			case <-clk.After(every):
			}
			if !announce() {
				return
			}
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
	l.responders = map[string]LinkIO{}
	l.holding = map[netip.Addr]*holding{}
	l.a.Metrics.set(0, 0)
}

var _ LinkIO = (*Responders)(nil)
