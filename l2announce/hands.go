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
		c, err := rs.Probe(l.ctx, addr, count, interval)
		select {
		case l.results <- probeResult{addr: addr, link: link, contender: c, err: err}:
		case <-l.ctx.Done():
		}
	}()
	return false
}

// probed takes a probe's result: clear, a claim by another host (reported
// and counted, probed again after ProbeRetry), a host only probing for the
// address too, or a failure (probed again after ProbeRetry).
//
// A host that only probes (RFC 5227 2.1.1: it wants the address as well)
// holds the address back once, for ProbeRetry; after that a prober is no
// longer a reason to wait, or a host that probes for an address it never
// takes (a scanner, a misconfigured DHCP client) would keep it unannounced
// forever. A host that claims the address holds it back as long as it
// does: that is a conflict, on the Service and in the metrics.
func (l *loop) probed(r probeResult) {
	p := l.probes[r.addr]
	if p == nil {
		return
	}
	now := l.a.Clock.Now()
	p.running = false
	l.gen++
	defer l.countConflicts()
	c := r.contender
	switch {
	case r.err != nil:
		l.a.Log.Error(r.err, "conflict probe", "address", r.addr.String(), "interface", r.link)
		p.retryAt = now.Add(l.a.ProbeRetry)
	case c != nil && c.ProbeOnly && !p.proberSeen:
		p.proberSeen, p.retryAt = true, now.Add(l.a.ProbeRetry)
		l.a.Metrics.contended(r.addr, false)
		l.a.Log.Info("another host probes for the address too; probing again once", "address", r.addr.String(),
			"interface", r.link, "mac", c.MAC.String(), "retryIn", l.a.ProbeRetry.String())
	case c != nil && !c.ProbeOnly:
		p.conflict, p.retryAt = c.MAC, now.Add(l.a.ProbeRetry)
		l.a.Metrics.contended(r.addr, true)
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
		l.report(Report{Addr: r.addr, Services: services, State: Conflict, Node: l.a.Node, Interfaces: []string{r.link}, ConflictMAC: c.MAC}, reported, now)
	default:
		if c != nil {
			l.a.Log.Info("another host probes for the address again; announcing it", "address", r.addr.String(),
				"interface", r.link, "mac", c.MAC.String())
			l.a.Metrics.contended(r.addr, false)
		}
		p.clear, p.conflict = true, nil
	}
}

// countConflicts hands the metrics the addresses another host claims now.
func (l *loop) countConflicts() {
	var held []netip.Addr
	for addr, p := range l.probes {
		if p.conflict != nil && !p.clear {
			held = append(held, addr)
		}
	}
	l.a.Metrics.conflicted(held)
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
