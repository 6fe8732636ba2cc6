package bgp

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// peerSeq numbers the peer links one test process makes, so each live one
// has a /30 and a link name of its own.
var peerSeq atomic.Int32

// peerNet is a namespace for one peer daemon, joined to the test process's
// own namespace (TestMain runs the tests in one, never the host's) by a
// veth pair: the speaker, in the test process, talks to the daemon over
// that link and nothing else.
type peerNet struct {
	ns     *netns.Namespace
	dir    string
	local  netip.Addr // the host end: the speaker's address and next hop
	remote netip.Addr // the daemon's address
}

// newPeerNet makes the namespace and the link. The /30 comes from
// 10.<second>.0.0/16, picked from the process ID and a sequence number,
// and the link is named linkPrefix and the same number: other test
// processes, and the BIRD test (10.200/16, bgpt*), never meet it.
func newPeerNet(t *testing.T, second byte, linkPrefix string) *peerNet {
	t.Helper()
	return newPeerNetOf(t, second, linkPrefix, false)
}

// newPeerNetOf is newPeerNet, over IPv6 when v6: a /126 of
// fd00:<second>::/32 numbered as the IPv4 /30 would be.
func newPeerNetOf(t *testing.T, second byte, linkPrefix string, v6 bool) *peerNet {
	t.Helper()
	netnstest.RequireRoot(t)
	// Eight numbers a process, taken in turn: a test's links go with
	// it, so only a test of more than eight peers would meet its own.
	n := (os.Getpid()%2048)*8 + int(peerSeq.Add(1)-1)%8
	base := netip.AddrFrom4([4]byte{10, second, byte(n >> 6), byte(n&63) << 2})
	bits := "/30"
	if v6 {
		base = netip.AddrFrom16([16]byte{0xfd, 0, 0, second, 14: byte(n >> 6), 15: byte(n&63) << 2})
		bits = "/126"
	}
	pn := &peerNet{ns: netnstest.New(t), dir: t.TempDir(), local: base.Next(), remote: base.Next().Next()}
	host, err := netns.Host()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	link := fmt.Sprintf("%s%d", linkPrefix, n)
	if err := netns.Veth(host, link, pn.ns, "eth0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if h, err := netns.Host(); err == nil {
			if l, err := h.Netlink().LinkByName(link); err == nil {
				_ = h.Netlink().LinkDel(l)
			}
			h.Close()
		}
	})
	if err := host.AddAddress(link, pn.local.String()+bits); err != nil {
		t.Fatal(err)
	}
	if err := pn.ns.AddAddress("eth0", pn.remote.String()+bits); err != nil {
		t.Fatal(err)
	}
	return pn
}

// start runs a daemon in the namespace, its output in a log file that a
// failed test prints; the daemon is killed when the test ends.
func (pn *peerNet) start(t *testing.T, name string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: %v (hack/debian-deps.sh and the CI script install Debian's bird2, frr and gobgpd)", name, err)
	}
	logPath := filepath.Join(pn.dir, filepath.Base(name)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := pn.ns.Command(context.Background(), name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s log:\n%s", filepath.Base(name), tail(string(out), 60))
			}
		}
	})
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// tcpExt reads one TcpExt counter (as /proc/net/netstat names it) inside
// the namespace: TCPMD5Failure counts segments the kernel dropped for a
// wrong TCP MD5 signature, TCPMD5NotFound those unsigned when a key was
// set.
func (pn *peerNet) tcpExt(name string) (int, error) { return pn.counter("netstat", "TcpExt:", name) }

// tcp reads one Tcp counter of /proc/net/snmp inside the namespace:
// PassiveOpens counts the connections the daemon accepted.
func (pn *peerNet) tcp(name string) (int, error) { return pn.counter("snmp", "Tcp:", name) }

// counter reads a counter from a /proc/net file of pairs of lines, names
// then values, each starting with the group.
func (pn *peerNet) counter(file, group, name string) (int, error) {
	var v int
	err := pn.ns.Do(func() error {
		// thread-self: /proc/net follows the process's first thread,
		// not the one Do moved into the namespace.
		f, err := os.Open("/proc/thread-self/net/" + file)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			keys := strings.Fields(sc.Text())
			if !sc.Scan() {
				break
			}
			vals := strings.Fields(sc.Text())
			if len(keys) == 0 || keys[0] != group || len(vals) != len(keys) {
				continue
			}
			for i, k := range keys {
				if k == name {
					v, err = strconv.Atoi(vals[i])
					return err
				}
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
		return fmt.Errorf("no counter %s %s in /proc/net/%s", group, name, file)
	})
	return v, err
}

// runSpeaker starts a speaker that the test's end stops.
func runSpeaker(t *testing.T) (*Speaker, context.Context) {
	t.Helper()
	s := NewSpeaker(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s, ctx
}

// stateOf is the speaker's view of one peer's session.
func stateOf(ctx context.Context, s *Speaker, name string) (PeerState, error) {
	for _, st := range s.States(ctx) {
		if st.Name == name {
			return st, nil
		}
	}
	return PeerState{}, fmt.Errorf("the speaker has no peer %s", name)
}

// established waits until the speaker has the peer's session up.
func established(t *testing.T, ctx context.Context, s *Speaker, name string) PeerState {
	t.Helper()
	var st PeerState
	waitFor(t, 20*time.Second, "session with "+name+" Established at the speaker", func() (err error) {
		st, err = stateOf(ctx, s, name)
		if err == nil && st.State != "Established" {
			err = fmt.Errorf("state %s, last error %q", st.State, st.LastError)
		}
		return err
	})
	return st
}

// onePeerPlan advertises prefixes with attrs to one peer, next hop the
// speaker's end of its link.
func onePeerPlan(p *Peer, nextHop netip.Addr, attrs Attrs, prefixes ...netip.Prefix) Plan {
	plan := Plan{Peers: []*Peer{p}, Exports: map[string][]Export{}, NextHop4: nextHop}
	for _, pf := range prefixes {
		plan.Exports[p.Name] = append(plan.Exports[p.Name], Export{Prefix: pf, Attrs: attrs})
	}
	return plan
}

// peerRoute is a peer daemon's best path for one prefix, as its own RIB
// shows it.
type peerRoute struct {
	NextHop     string
	ASPath      string
	Communities string // standard communities, "a:b c:d"
	Large       string // large communities, "a:b:c d:e:f"
	LocalPref   string // "-": none
}

// wantRoute waits until route(pf) gives want (nil: no route).
func wantRoute(t *testing.T, who string, route func(netip.Prefix) (*peerRoute, error), pf netip.Prefix, want *peerRoute) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%s's route to %s", who, pf), func() error {
		got, err := route(pf)
		if err != nil {
			return err
		}
		if (got == nil) != (want == nil) || got != nil && *got != *want {
			return fmt.Errorf("got %+v, want %+v", got, want)
		}
		return nil
	})
}

// vagueErrors are GoBGP v4's own reasons for a session that failed on an
// outgoing connection, the only kind the speaker makes (it does not
// listen): the OPEN exchange runs inside Active with no state event, so a
// NOTIFICATION sent there (a wrong peer ASN) or a connection that never
// completes (a TCP MD5 mismatch) leaves the Idle-to-Active step's "idle
// timer expired"; a NOTIFICATION received in OpenConfirm (the peer refuses
// the speaker's OPEN) is "invalid msg", its code dropped. Neither says
// what to fix, so the speaker must never pass them on.
var vagueErrors = []string{"idle timer expired", "invalid msg"}

// wantCause checks that the speaker's last error for a session that
// failed names the cause (every part of want, case aside), and is none of
// vagueErrors.
func wantCause(t *testing.T, st PeerState, want ...string) {
	t.Helper()
	if st.LastError == "" {
		t.Errorf("session %s is %s with no last error; want one naming %q", st.Name, st.State, want)
		return
	}
	for _, v := range vagueErrors {
		if strings.HasPrefix(st.LastError, v) {
			t.Errorf("session %s is %s and its last error is %q, GoBGP's own, not the cause (want %q): see vagueErrors", st.Name, st.State, st.LastError, want)
			return
		}
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(st.LastError), strings.ToLower(w)) {
			t.Errorf("session %s: last error %q does not name %q", st.Name, st.LastError, w)
		}
	}
}

// Two peers at once, FRR refused for a wrong peer ASN and gobgpd right:
// the good session comes up, stays up and keeps its route while the other
// fails, and fixing the wrong peer brings it up without resetting the
// good one.
func TestSpeakerPeersIndependent(t *testing.T) {
	f := startFRR(t, 64500, 64512)
	g := startGoBGPd(t, 64501, 64512)
	s, ctx := runSpeaker(t)
	web := netip.MustParsePrefix("198.51.100.30/32")
	attrs := Attrs{Communities: []uint32{65000<<16 | 300}}
	good := &Peer{Name: "gobgpd", Address: g.remote, Port: 179, PeerASN: 64501, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	right := &Peer{Name: "frr", Address: f.remote, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}
	wrong := *right
	wrong.PeerASN = 64999
	plan := func(frr *Peer) Plan {
		// One next hop for every peer, as a node has: its address on
		// the FRR link.
		p := Plan{Peers: []*Peer{frr, good}, NextHop4: f.local, Exports: map[string][]Export{}}
		for _, name := range []string{"frr", "gobgpd"} {
			p.Exports[name] = []Export{{Prefix: web, Attrs: attrs}}
		}
		return p
	}
	if err := s.Apply(ctx, plan(&wrong)); err != nil {
		t.Fatal(err)
	}
	atGoBGPd := &peerRoute{NextHop: f.local.String(), ASPath: "64512", Communities: "65000:300", LocalPref: "-"}
	wantRoute(t, "gobgpd", g.route, web, atGoBGPd)
	established(t, ctx, s, "gobgpd")
	up, err := g.neighbor()
	if err != nil {
		t.Fatal(err)
	}

	// FRR refused: the speaker closes the connection on FRR's OPEN
	// (FRR sees a reset more often than the NOTIFICATION, and counts
	// nothing for a connection that never came up) and tries again: a
	// second connection at FRR's kernel shows the first one failed.
	waitFor(t, 20*time.Second, "the speaker's second connection to FRR", func() error {
		n, err := f.tcp("PassiveOpens")
		if err == nil && n < 2 {
			err = fmt.Errorf("%d accepted", n)
		}
		return err
	})
	if n, err := f.neighbor(); err != nil || n.State == "Established" {
		t.Errorf("FRR's session with a wrong peer ASN: %+v (%v)", n, err)
	}
	wantRoute(t, "FRR", f.route, web, nil)
	st, err := stateOf(ctx, s, "frr")
	if err != nil {
		t.Fatal(err)
	}
	if st.State == "Established" {
		t.Errorf("the speaker's session with a wrong peer ASN: %+v", st)
	}
	t.Run("last error on a wrong peer ASN", func(t *testing.T) { wantCause(t, st, "bad peer as") })
	unchanged := func(when string) {
		t.Helper()
		n, err := g.neighbor()
		if err != nil {
			t.Fatal(err)
		}
		if !n.Established || n.OpensReceived != up.OpensReceived || n.Up != up.Up {
			t.Errorf("%s: gobgpd's session went from %+v to %+v", when, up, n)
		}
		if st, err := stateOf(ctx, s, "gobgpd"); err != nil || st.State != "Established" {
			t.Errorf("%s: the speaker's session with gobgpd %+v (%v)", when, st, err)
		}
		if r, err := g.route(web); err != nil || r == nil || *r != *atGoBGPd {
			t.Errorf("%s: gobgpd's route %+v (%v), want %+v", when, r, err, atGoBGPd)
		}
	}
	unchanged("FRR refused")

	// Fixed: FRR's session comes up, gobgpd's is not touched.
	if err := s.Apply(ctx, plan(right)); err != nil {
		t.Fatal(err)
	}
	wantRoute(t, "FRR", f.route, web, &peerRoute{NextHop: f.local.String(), ASPath: "64512", Communities: "65000:300", LocalPref: "-"})
	if st := established(t, ctx, s, "frr"); st.LastError != "" {
		t.Errorf("the speaker's session with FRR %+v: a last error once Established", st)
	}
	unchanged("FRR fixed")
}

func ptr[T any](v T) *T { return &v }
