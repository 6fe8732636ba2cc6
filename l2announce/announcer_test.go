package l2announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"
)

// The announcer's step, driven through sequences on a fake clock and a
// fake network: what it answers for (Held), what it sends on the LAN and
// what it reports. Node "node-a" is the announcer under test; "node-b" a
// peer whose heartbeats the test delivers. Among node-a and node-b,
// 192.0.2.3 hashes to node-a and 192.0.2.2 to node-b (TestRigOwners pins
// that, so a change of hash fails there first).
var (
	addrA = netip.MustParseAddr("192.0.2.3")
	addrB = netip.MustParseAddr("192.0.2.2")
	addr6 = netip.MustParseAddr("2001:db8::2")
)

const (
	settle = 400 * time.Millisecond
	hold   = 100 * time.Millisecond
	tick   = 25 * time.Millisecond
	retry  = 2 * time.Second
)

func TestRigOwners(t *testing.T) {
	both := []string{"node-a", "node-b"}
	if Owner(addrA, both) != "node-a" || Owner(addrB, both) != "node-b" {
		t.Fatalf("owners %s, %s; the tests below assume node-a, node-b", Owner(addrA, both), Owner(addrB, both))
	}
}

// fakeNet is a node's links and a LAN. It holds the announcer to what the
// kernel would: responders open only on a link that exists, one set per
// link at a time; nothing is sent through closed responders; a group is
// left only after it was joined.
type fakeNet struct {
	t  *testing.T
	mu sync.Mutex
	// links are the node's; lan maps addresses other hosts on the LAN
	// hold to their MACs (they answer probes); probers, addresses other
	// hosts keep probing for without taking them.
	links   []Link
	lan     map[netip.Addr]net.HardwareAddr
	probers map[netip.Addr]net.HardwareAddr
	openErr error
	ports   map[string]*fakePort
	opens   int
}

func newFakeNet(t *testing.T) *fakeNet {
	return &fakeNet{t: t, lan: map[netip.Addr]net.HardwareAddr{}, probers: map[netip.Addr]net.HardwareAddr{}, ports: map[string]*fakePort{},
		links: []Link{
			{Name: "lo", Index: 1, Up: true, Virtual: true},
			{Name: "eth0", Index: 2, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Up: true},
		}}
}

func (n *fakeNet) Links() ([]Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.links), nil
}

func (n *fakeNet) WatchLinks(ctx context.Context, _ func()) error {
	<-ctx.Done()
	return nil
}

func (n *fakeNet) Open(link string) (LinkIO, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.openErr != nil {
		return nil, n.openErr
	}
	if !slices.ContainsFunc(n.links, func(l Link) bool { return l.Name == link }) {
		return nil, fmt.Errorf("interface %s: no such network interface", link)
	}
	if p := n.ports[link]; p != nil && !p.isClosed() {
		n.t.Errorf("responders of %s opened while open", link)
	}
	p := &fakePort{n: n, link: link, done: make(chan struct{}), joined: map[netip.Addr]bool{}}
	n.ports[link] = p
	n.opens++
	return p, nil
}

func (n *fakeNet) setUp(link string, up bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range n.links {
		if n.links[i].Name == link {
			n.links[i].Up = up
		}
	}
}

func (n *fakeNet) port(link string) *fakePort {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ports[link]
}

type fakePort struct {
	n    *fakeNet
	link string
	done chan struct{}
	once sync.Once

	mu        sync.Mutex
	announced []netip.Addr
	probed    []netip.Addr
	joined    map[netip.Addr]bool
}

func (p *fakePort) isClosed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *fakePort) Serve(ctx context.Context, _ Owned, _ func(string)) error {
	select {
	case <-ctx.Done():
	case <-p.done:
	}
	return nil
}

func (p *fakePort) Announce(addr netip.Addr) error {
	if p.isClosed() {
		p.n.t.Errorf("announce %s through the closed responders of %s", addr, p.link)
		return net.ErrClosed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.announced = append(p.announced, addr)
	return nil
}

// Probe answers as a LAN would: a host holding addr claims it (whatever
// probes for it too); else a host probing for it shows as ProbeOnly.
func (p *fakePort) Probe(_ context.Context, addr netip.Addr, _ int, _ time.Duration) (*Contender, error) {
	if p.isClosed() {
		return nil, net.ErrClosed
	}
	p.mu.Lock()
	p.probed = append(p.probed, addr)
	p.mu.Unlock()
	p.n.mu.Lock()
	defer p.n.mu.Unlock()
	if mac := p.n.lan[addr]; mac != nil {
		return &Contender{MAC: mac}, nil
	}
	if mac := p.n.probers[addr]; mac != nil {
		return &Contender{MAC: mac, ProbeOnly: true}, nil
	}
	return nil, nil
}

func (p *fakePort) Joined(addr netip.Addr, join bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if join == p.joined[addr] {
		p.n.t.Errorf("%s: Joined(%s, %v) twice", p.link, addr, join)
	}
	p.joined[addr] = join
	return nil
}

func (p *fakePort) Close() { p.once.Do(func() { close(p.done) }) }

// counts is how often addr was announced and probed on the port.
func (p *fakePort) counts(addr netip.Addr) (announced, probed int) {
	if p == nil {
		return 0, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.announced {
		if a == addr {
			announced++
		}
	}
	for _, a := range p.probed {
		if a == addr {
			probed++
		}
	}
	return announced, probed
}

// rig is node-a's announcer with its loop, and node-b's heartbeats.
type rig struct {
	t       *testing.T
	clk     *clocktesting.FakeClock
	peerClk *clocktesting.FakeClock
	net     *fakeNet
	a       *Announcer
	l       *loop
	peer    *Members
	// peerGroups is what node-b's heartbeats say it is ready for; nil:
	// node-b sends none (it is down).
	peerGroups []uint64
	// sinceHB is the time since node-b's last heartbeat.
	sinceHB time.Duration
	reports []Report
	health  int
	// lan is the one group: L2Announcement lan on pool lan, on eth0.
	lan *Group
}

// bothUp brings node-b up beside node-a, each with its address announced
// (node-b's before the rig started), and runs until node-a holds its own.
func (r *rig) bothUp() {
	r.t.Helper()
	r.peerGroups = []uint64{r.lan.Key}
	r.heartbeat(false)
	r.want([]string{"node-a", "node-b"}, &Address{Addr: addrA, Announced: true}, &Address{Addr: addrB, Announced: true})
	r.run(settle + hold)
	r.check("both up", r.held(), "map[eth0:[192.0.2.3]]")
}

func newRig(t *testing.T, burst int) *rig {
	t0 := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	r := &rig{t: t, clk: clocktesting.NewFakeClock(t0), peerClk: clocktesting.NewFakeClock(t0), net: newFakeNet(t),
		lan: &Group{Key: GroupKey("lan", "lan"), Announcement: "lan", Pool: "lan", Interfaces: []string{"eth0"}}}
	key := []byte("a key of at least sixteen bytes")
	members := &Members{Self: "node-a", Key: key, DeadAfter: settle, Now: r.clk.Now}
	r.peer = &Members{Self: "node-b", Key: key, DeadAfter: settle, Now: r.peerClk.Now}
	r.a = &Announcer{
		Node: "node-a", Members: members, Heartbeats: &Heartbeats{Members: members},
		Settle: settle, Hold: hold, Tick: tick,
		ProbeCount: 3, ProbeInterval: 100 * time.Millisecond, ProbeRetry: retry,
		Burst: burst, BurstInterval: 100 * time.Millisecond,
		Report:        func(rep Report) { r.reports = append(r.reports, rep) },
		HealthChanged: func() { r.health++ },
		Log:           testr.New(t),
		Clock:         r.clk,
		Network:       r.net,
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.l = newLoop(ctx, r.a)
	if err := r.l.readLinks(); err != nil {
		t.Fatal(err)
	}
	return r
}

// want says what node-a's addresses are: Announced ones were announced
// before (a takeover), the others are new.
func (r *rig) want(nodes []string, addrs ...*Address) {
	var infos []NodeInfo
	for _, n := range nodes {
		infos = append(infos, NodeInfo{Name: n})
	}
	for _, a := range addrs {
		a.Groups = []*Group{r.lan}
	}
	r.a.SetDesired(addrs, infos, []*Group{r.lan})
}

// heartbeat delivers one heartbeat of node-b's, as it would arrive.
func (r *rig) heartbeat(leaving bool) {
	r.t.Helper()
	if err := r.a.Members.Receive("node-b", r.peer.Heartbeat(leaving, r.peerGroups)); err != nil {
		r.t.Errorf("heartbeat of node-b refused: %v", err)
	}
	r.sinceHB = 0
}

// run lets d pass in Tick steps, node-b sending a heartbeat every 100 ms
// while it is up, node-a stepping after each tick and taking the results
// of its probes as they come.
func (r *rig) run(d time.Duration) {
	r.t.Helper()
	for passed := time.Duration(0); passed < d; passed += tick {
		r.clk.Step(tick)
		r.peerClk.Step(tick)
		r.sinceHB += tick
		if r.peerGroups != nil && r.sinceHB >= 100*time.Millisecond {
			r.heartbeat(false)
		}
		r.step()
	}
}

// step runs one step and then waits for the probes it started.
func (r *rig) step() {
	r.t.Helper()
	r.l.step(r.clk.Now())
	for addr, p := range r.l.probes {
		if !p.running {
			continue
		}
		select {
		case res := <-r.l.results:
			r.l.probed(res)
		case <-time.After(10 * time.Second):
			r.t.Fatalf("the probe of %s never ended", addr)
		}
		r.l.step(r.clk.Now())
	}
}

func (r *rig) held() string { return fmt.Sprint(r.a.Held()) }

// said lists the reports since the last call, one line each.
func (r *rig) said() []string {
	var out []string
	for _, rep := range r.reports {
		s := fmt.Sprintf("%s %s %s %v", rep.Addr, rep.State, rep.Node, rep.Interfaces)
		if rep.ConflictMAC != nil {
			s += " " + rep.ConflictMAC.String()
		}
		out = append(out, s)
	}
	r.reports = nil
	return out
}

func (r *rig) check(what, got, want string) {
	r.t.Helper()
	if got != want {
		r.t.Errorf("%s: %s; want %s", what, got, want)
	}
}

// Two nodes: node-a starts while node-b announces both addresses, takes
// its own once it is settled and ready, and node-b's the first step after
// node-b has been silent for longer than DeadAfter, without a probe (the
// addresses were announced before), telling the LAN three times.
func TestAnnouncerTakeover(t *testing.T) {
	r := newRig(t, 3)
	r.peerGroups = []uint64{r.lan.Key}
	r.heartbeat(false)
	r.want([]string{"node-a", "node-b"}, &Address{Addr: addrA, Announced: true}, &Address{Addr: addrB, Announced: true})
	r.step()
	r.check("at start", r.held(), "map[]")

	// Ready (heartbeats say so) after Settle, acting on it Hold later.
	r.run(settle + hold - tick)
	r.check("before Settle+Hold", r.held(), "map[]")
	if got := fmt.Sprint(r.l.groupsForHeartbeat()); got != fmt.Sprint([]uint64{r.lan.Key}) {
		t.Errorf("heartbeat groups after Settle: %s; want [%d]", got, r.lan.Key)
	}
	r.run(tick)
	r.check("at Settle+Hold", r.held(), "map[eth0:[192.0.2.3]]")
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Announcing node-a [eth0]]")
	if n, _ := r.net.port("eth0").counts(addrA); n != 1 {
		t.Errorf("gratuitous ARPs for %s on taking it: %d; want 1 at once", addrA, n)
	}

	// node-b goes silent: heard last just now (run sent one at Settle+Hold).
	// Still alive at DeadAfter, dead the tick after.
	r.peerGroups = nil
	r.run(settle)
	r.check("node-b silent for DeadAfter", r.held(), "map[eth0:[192.0.2.3]]")
	r.run(tick)
	r.check("node-b silent past DeadAfter", r.held(), "map[eth0:[192.0.2.2 192.0.2.3]]")
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.2 Announcing node-a [eth0]]")
	port := r.net.port("eth0")
	if n, probes := port.counts(addrB); n != 1 || probes != 0 {
		t.Errorf("on taking %s over: %d announcements, %d probes; want 1 at once and no probe", addrB, n, probes)
	}
	if r.net.opens != 1 {
		t.Errorf("responders opened %d times; want once", r.net.opens)
	}
	// The burst: two more, BurstInterval apart.
	deadline := time.Now().Add(10 * time.Second)
	for {
		na, _ := port.counts(addrA)
		nb, _ := port.counts(addrB)
		if na == 3 && nb == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("announcements: %s %d, %s %d; want 3 each", addrA, na, addrB, nb)
		}
		if r.clk.HasWaiters() {
			r.clk.Step(100 * time.Millisecond)
		} else {
			time.Sleep(time.Millisecond) // the burst's goroutine has not yet asked for its timer
		}
	}
}

// One node; a host on the LAN holds the new address: the probe finds it,
// the address is not announced and the conflict is reported with the
// host's MAC; the probe runs again after ProbeRetry, and once the host is
// gone the address is announced.
func TestAnnouncerConflict(t *testing.T) {
	r := newRig(t, 1)
	r.net.lan[addrA] = net.HardwareAddr{2, 0, 0, 0, 0, 9}
	r.want([]string{"node-a"}, &Address{Addr: addrA})
	r.run(settle + hold)
	r.check("held while a LAN host has the address", r.held(), "map[]")
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Conflict node-a [eth0] 02:00:00:00:00:09]")
	port := r.net.port("eth0")
	if n, probes := port.counts(addrA); n != 0 || probes != 1 {
		t.Errorf("after the conflict: %d announcements, %d probes; want none and 1", n, probes)
	}

	r.run(retry - tick)
	if _, probes := port.counts(addrA); probes != 1 {
		t.Errorf("probes before ProbeRetry passed: %d; want still 1", probes)
	}
	r.check("reports while waiting", fmt.Sprint(r.said()), "[]")
	r.run(tick)
	if _, probes := port.counts(addrA); probes != 2 {
		t.Errorf("probes after ProbeRetry: %d; want 2", probes)
	}
	r.check("host still there", r.held(), "map[]")
	// Said again: the Services do not say it (the test gives no Reported).
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Conflict node-a [eth0] 02:00:00:00:00:09]")

	r.net.mu.Lock()
	delete(r.net.lan, addrA)
	r.net.mu.Unlock()
	r.run(retry)
	r.check("host gone", r.held(), "map[eth0:[192.0.2.3]]")
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Announcing node-a [eth0]]")
	if n, probes := port.counts(addrA); n != 1 || probes != 3 {
		t.Errorf("after the host left: %d announcements, %d probes; want 1 and 3", n, probes)
	}
}

// series reads one series of m: its value and whether it exists.
func series(t *testing.T, m *Metrics, name string, labels ...string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range m.Collectors() {
		reg.MustRegister(c)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range s.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if s.GetCounter() != nil {
				return s.GetCounter().GetValue(), true
			}
			return s.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// A conflict that lasts is on the Service (Conflict, then the event) and
// in the metrics an operator alerts on: every probe another host answers
// counts in berth_agent_l2_conflicts_total{address, kind="claim"}, and
// berth_agent_l2_address_conflict{address} is 1 while the host holds the
// address back, gone once it is announced.
func TestAnnouncerPersistentConflict(t *testing.T) {
	r := newRig(t, 1)
	r.a.Metrics = NewMetrics()
	r.net.lan[addrA] = net.HardwareAddr{2, 0, 0, 0, 0, 9}
	r.want([]string{"node-a"}, &Address{Addr: addrA, Reported: &Report{Addr: addrA, State: Conflict, Node: "node-a", Interfaces: []string{"eth0"}, ConflictMAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}}})
	r.run(settle + hold)
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Conflict node-a [eth0] 02:00:00:00:00:09]")
	claims := func(want float64) {
		t.Helper()
		if v, _ := series(t, r.a.Metrics, "berth_agent_l2_conflicts_total", "address", "192.0.2.3", "kind", "claim"); v != want {
			t.Errorf("conflicts_total{address=192.0.2.3,kind=claim} %v; want %v", v, want)
		}
	}
	inConflict := func(want bool) {
		t.Helper()
		v, ok := series(t, r.a.Metrics, "berth_agent_l2_address_conflict", "address", "192.0.2.3")
		if ok != want || ok && v != 1 {
			t.Errorf("address_conflict{address=192.0.2.3}: %v (present %v); want present %v, 1", v, ok, want)
		}
	}
	claims(1)
	inConflict(true)
	for i := 2; i <= 4; i++ {
		r.run(retry)
		claims(float64(i))
		inConflict(true)
	}
	r.check("held while the host stays", r.held(), "map[]")
	// The Services say it already: nothing new to report.
	r.check("reports while it lasts", fmt.Sprint(r.said()), "[]")

	r.net.mu.Lock()
	delete(r.net.lan, addrA)
	r.net.mu.Unlock()
	r.run(retry)
	r.check("host gone", r.held(), "map[eth0:[192.0.2.3]]")
	claims(4)
	inConflict(false)
}

// A LAN host that only probes for the new address (ARP probes from
// 0.0.0.0, RFC 5227), again at every probe of node-a's and never taking
// it, holds it back once: node-a probes again after ProbeRetry, then
// announces it. Nothing is reported as a conflict; the probes count in
// berth_agent_l2_conflicts_total{kind="probe"}. (It used to count as a
// conflict at every probe: the address stayed unannounced forever.)
func TestAnnouncerProberCountsOnce(t *testing.T) {
	r := newRig(t, 1)
	r.a.Metrics = NewMetrics()
	r.net.probers[addrA] = net.HardwareAddr{2, 0, 0, 0, 0, 7}
	r.want([]string{"node-a"}, &Address{Addr: addrA})
	r.run(settle + hold)
	r.check("held after the first probe", r.held(), "map[]")
	r.check("reports after the first probe", fmt.Sprint(r.said()), "[]")
	port := r.net.port("eth0")
	if _, probes := port.counts(addrA); probes != 1 {
		t.Errorf("probes: %d; want 1", probes)
	}
	r.run(retry - tick)
	r.check("held before ProbeRetry", r.held(), "map[]")
	r.run(tick)
	if n, probes := port.counts(addrA); n != 1 || probes != 2 {
		t.Errorf("after ProbeRetry: %d announcements, %d probes; want 1 and 2", n, probes)
	}
	r.check("held after the second probe", r.held(), "map[eth0:[192.0.2.3]]")
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Announcing node-a [eth0]]")
	if v, _ := series(t, r.a.Metrics, "berth_agent_l2_conflicts_total", "address", "192.0.2.3", "kind", "probe"); v != 2 {
		t.Errorf("conflicts_total{kind=probe} %v; want 2", v)
	}
	if _, ok := series(t, r.a.Metrics, "berth_agent_l2_conflicts_total", "kind", "claim"); ok {
		t.Error("a prober counted as a claim")
	}
	if _, ok := series(t, r.a.Metrics, "berth_agent_l2_address_conflict"); ok {
		t.Error("address_conflict set for a prober")
	}
	r.run(5 * retry)
	if _, probes := port.counts(addrA); probes != 2 {
		t.Errorf("probes once announced: %d; want still 2", probes)
	}
}

// One node, an IPv4 and an IPv6 address on eth0. The link goes down: both
// are let go at once (and the IPv6 group left). It comes back: the node
// waits Settle (it may have missed peers' heartbeats) and Hold, then takes
// them again, without a probe, and tells the LAN.
func TestAnnouncerLinkFlap(t *testing.T) {
	r := newRig(t, 1)
	r.want([]string{"node-a"}, &Address{Addr: addrA, Announced: true}, &Address{Addr: addr6, Announced: true})
	r.run(settle + hold)
	r.check("settled", r.held(), "map[eth0:[192.0.2.3 2001:db8::2]]")
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Announcing node-a [eth0] 2001:db8::2 Announcing node-a [eth0]]")
	port := r.net.port("eth0")

	r.net.setUp("eth0", false)
	if err := r.l.readLinks(); err != nil {
		t.Fatal(err)
	}
	r.step()
	r.check("link down", r.held(), "map[]")
	port.mu.Lock()
	joined := port.joined[addr6]
	port.mu.Unlock()
	if joined {
		t.Errorf("%s's solicited-node group still joined with the link down", addr6)
	}
	r.run(time.Second)
	r.check("link down for a second", r.held(), "map[]")
	// Alone, steady again after Settle+Hold with its link down: it says
	// that no node may announce them.
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 NoAnnouncer node-a [] 2001:db8::2 NoAnnouncer node-a []]")

	r.net.setUp("eth0", true)
	if err := r.l.readLinks(); err != nil {
		t.Fatal(err)
	}
	r.run(settle + hold - tick)
	r.check("link up, before Settle+Hold", r.held(), "map[]")
	r.run(tick)
	r.check("link up for Settle+Hold", r.held(), "map[eth0:[192.0.2.3 2001:db8::2]]")
	for _, a := range []netip.Addr{addrA, addr6} {
		if n, probes := port.counts(a); n != 2 || probes != 0 {
			t.Errorf("%s: %d announcements, %d probes; want 2 (one per take) and no probe", a, n, probes)
		}
	}
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Announcing node-a [eth0] 2001:db8::2 Announcing node-a [eth0]]")
}

// node-b leaves (its leaving heartbeat): node-a takes its address in the
// same instant, not DeadAfter later. Then node-a leaves: it answers for
// nothing and closes its responders.
func TestAnnouncerLeave(t *testing.T) {
	r := newRig(t, 1)
	r.bothUp()
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Announcing node-a [eth0]]")

	r.run(tick)
	r.heartbeat(true)
	r.peerGroups = nil
	r.step()
	r.check("node-b left", r.held(), "map[eth0:[192.0.2.2 192.0.2.3]]")
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.2 Announcing node-a [eth0]]")

	r.l.releaseAll()
	r.check("node-a left", r.held(), "map[]")
	if !r.net.port("eth0").isClosed() {
		t.Error("responders of eth0 still open after leaving")
	}
	for _, a := range []netip.Addr{addrA, addrB} {
		if r.a.owned("eth0")(a) {
			t.Errorf("still answers for %s after leaving", a)
		}
	}
}

// node-b's clock, 3 s ahead (within the heartbeat window), steps back to
// agree with node-a's (an NTP correction): its heartbeats must still be
// taken, so node-a never takes node-b's address while node-b still
// answers for it. (A clock off by more than the window is refused:
// TestHeartbeatClockStepBack.)
func TestAnnouncerPeerClockStepsBack(t *testing.T) {
	r := newRig(t, 1)
	r.peerClk.SetTime(r.peerClk.Now().Add(3 * time.Second))
	r.bothUp()

	r.peerClk.SetTime(r.peerClk.Now().Add(-3 * time.Second))
	r.run(2 * time.Second)
	r.check("two seconds after node-b's clock stepped back", r.held(), "map[eth0:[192.0.2.3]]")
	if got := fmt.Sprint(r.a.Members.Alive()); got != "[node-a node-b]" {
		t.Errorf("alive: %s; want [node-a node-b]", got)
	}
	r.check("reports", fmt.Sprint(r.said()), "[192.0.2.3 Announcing node-a [eth0]]")
}

// Responders that cannot open show in Err (naming the link and the
// cause) and in HealthChanged, are tried again, and clear once they open.
func TestAnnouncerOpenFailure(t *testing.T) {
	r := newRig(t, 1)
	r.net.openErr = errors.New("operation not permitted")
	r.want([]string{"node-a"}, &Address{Addr: addrA, Announced: true})
	r.run(settle + hold)
	want := "open the ARP/NDP responders of eth0: operation not permitted"
	if err := r.a.Err(); err == nil || err.Error() != want {
		t.Errorf("Err: %v; want %q", err, want)
	}
	if r.health != 1 {
		t.Errorf("HealthChanged called %d times; want 1", r.health)
	}
	r.net.mu.Lock()
	r.net.openErr = nil
	r.net.mu.Unlock()
	r.run(time.Second)
	if err := r.a.Err(); err != nil {
		t.Errorf("Err after the responders opened: %v", err)
	}
	if r.health != 2 {
		t.Errorf("HealthChanged called %d times; want 2", r.health)
	}
	// Taken while the responders could not open, it was announced by
	// nobody: it is announced once they open.
	if n, _ := r.net.port("eth0").counts(addrA); n != 1 {
		t.Errorf("announcements after the responders opened: %d; want 1", n)
	}
	r.check("held", r.held(), "map[eth0:[192.0.2.3]]")
}

// Responders that cannot open for a new address's probe keep Err set
// while the probe waits to run again: readiness and Node events do not
// flap every ProbeRetry.
func TestAnnouncerOpenFailureWhileProbing(t *testing.T) {
	r := newRig(t, 1)
	r.net.openErr = errors.New("operation not permitted")
	r.want([]string{"node-a"}, &Address{Addr: addrA})
	r.run(settle + hold + 3*retry)
	want := "open the ARP/NDP responders of eth0: operation not permitted"
	if err := r.a.Err(); err == nil || err.Error() != want {
		t.Errorf("Err: %v; want %q", err, want)
	}
	if r.health != 1 {
		t.Errorf("HealthChanged called %d times over three probe retries; want 1", r.health)
	}
	r.check("held", r.held(), "map[]")
}
