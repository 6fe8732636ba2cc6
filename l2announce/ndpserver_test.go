package l2announce

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// In the kernel: a client on a veth resolves an announced IPv6 address
// with its own neighbour discovery to the node's MAC, and an address the
// node does not announce stays unresolved; Join and Leave put the
// interface in the solicited-node group and take it out with the last
// address that needs it.
func TestNDPServerAnswersTheKernel(t *testing.T) {
	l := ndpLink(t, "ndpa")
	announced := netip.MustParseAddr("2001:db8:9::50")
	// Solicitations for this one go to the same group (the last 24 bits
	// are the same), so the server sees them and has to decline.
	unannounced := netip.MustParseAddr("2001:db8:9::1:0:50")
	r := serve(t, l.srv.Serve, func(a netip.Addr) bool { return a == announced })
	if err := l.srv.Join(announced); err != nil {
		t.Fatal(err)
	}
	if err := l.srv.Announce(announced); err != nil {
		t.Fatal(err)
	}
	var got string
	waitFor(t, "the client to resolve "+announced.String()+" to the node's MAC", func() bool {
		got = l.neigh(t, announced)
		return strings.Contains(got, "lladdr "+l.nodeMAC.String())
	})
	// Once the server has seen the solicitation and said why it stays
	// silent, the client still has no answer.
	waitFor(t, "the server to decline "+unannounced.String(), func() bool {
		if got := l.neigh(t, unannounced); strings.Contains(got, "lladdr") {
			t.Fatalf("an address nobody announces resolved: %q (server saw: %s)", got, r)
		}
		return r.has(unannounced.String() + " is not announced")
	})

	group := "ff02::1:ff00:50"
	in := func() bool {
		out, err := l.node.Command(context.Background(), "ip", "-6", "maddr", "show", "dev", "ndpa").CombinedOutput()
		if err != nil {
			t.Fatalf("ip maddr: %v: %s", err, out)
		}
		return strings.Contains(string(out), group)
	}
	if !in() {
		t.Fatalf("after Join the interface is not in %s", group)
	}
	for _, step := range []struct {
		leave bool
		addr  netip.Addr
		in    bool
	}{
		{false, unannounced, true},
		{false, unannounced, true}, // again: a no-op
		{true, announced, true},    // unannounced still needs the group
		{true, announced, true},    // again: a no-op
		{true, unannounced, false},
		{false, announced, true},
	} {
		op, err := "join", error(nil)
		if step.leave {
			op, err = "leave", l.srv.Leave(step.addr)
		} else {
			err = l.srv.Join(step.addr)
		}
		if err != nil {
			t.Fatalf("%s %s: %v", op, step.addr, err)
		}
		if in() != step.in {
			t.Fatalf("after %s %s: in %s is %v; want %v", op, step.addr, group, !step.in, step.in)
		}
	}
}

// A conflict probe in the kernel: clear while nobody holds the address;
// once the client has it on its interface, its kernel advertises it in
// answer to the probe and the probe names the client's MAC.
func TestNDPProbe(t *testing.T) {
	l := ndpLink(t, "ndpc")
	// The node announces the address the client takes (as in a split
	// brain), so that Serve has a claim to log when the client answers.
	taken := netip.MustParseAddr("2001:db8:9::61")
	r := serve(t, l.srv.Serve, func(a netip.Addr) bool { return a == taken })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if c, err := l.srv.Probe(ctx, netip.MustParseAddr("2001:db8:9::60"), ProbeCount, ProbeInterval); c != nil || err != nil {
		t.Fatalf("probe for an address nobody holds: conflict %+v, %v", c, err)
	}
	if err := l.client.AddAddress(l.clientIf, taken.String()+"/128"); err != nil {
		t.Fatal(err)
	}
	c, err := l.srv.Probe(ctx, taken, ProbeCount, ProbeInterval)
	if err != nil || c == nil || !bytes.Equal(c.MAC, l.clientMAC) || c.ProbeOnly {
		t.Fatalf("probe for the client's address: conflict %+v, %v; want a claim by the client's MAC %s (server saw: %s)", c, err, l.clientMAC, r)
	}
	want := ConflictReason + l.clientMAC.String() + " claims " + taken.String()
	waitFor(t, "Serve to log "+want, func() bool { return r.has(want) })
}

// ndpTestLink is a node and a client namespace joined by a veth with
// addresses in 2001:db8:9::/64, and an NDPServer on the node's end.
type ndpTestLink struct {
	node, client       *netns.Namespace
	clientIf           string
	nodeMAC, clientMAC net.HardwareAddr
	srv                *NDPServer
}

// ndpLink makes an ndpTestLink. The node's end is called name, which must
// be unique among the tests and absent from the host: ndp.Conn names the
// interface in every send, and Go resolves the name through a
// process-wide cache that any namespace may have filled.
func ndpLink(t *testing.T, name string) ndpTestLink {
	t.Helper()
	l := ndpTestLink{node: netnstest.New(t), client: netnstest.New(t), clientIf: name + "-c"}
	// Without duplicate address detection the link-local addresses are
	// usable as soon as they appear.
	for _, ns := range []*netns.Namespace{l.node, l.client} {
		if err := ns.Sysctl("net/ipv6/conf/default/accept_dad", "0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := netns.Veth(l.node, name, l.client, l.clientIf); err != nil {
		t.Fatal(err)
	}
	if err := l.node.AddAddress(name, "2001:db8:9::2/64"); err != nil {
		t.Fatal(err)
	}
	if err := l.client.AddAddress(l.clientIf, "2001:db8:9::1/64"); err != nil {
		t.Fatal(err)
	}
	l.nodeMAC, l.clientMAC = linkMAC(t, l.node, name), linkMAC(t, l.client, l.clientIf)
	// The kernel adds the link-local address once the link has carrier.
	var err error
	waitFor(t, "ListenNDP on "+name, func() bool {
		err = l.node.Do(func() error {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			l.srv, err = ListenNDP(ifi)
			return err
		})
		if err != nil {
			t.Log(err)
		}
		return err == nil
	})
	return l
}

// neigh sends a datagram from the client to addr, which makes its kernel
// resolve the address, and returns the client's neighbour entry for it.
func (l ndpTestLink) neigh(t *testing.T, addr netip.Addr) string {
	t.Helper()
	if err := l.client.Do(func() error {
		c, err := net.Dial("udp", net.JoinHostPort(addr.String(), "9"))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("who has"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	out, err := l.client.Command(context.Background(), "ip", "-6", "neigh", "show", addr.String(), "dev", l.clientIf).CombinedOutput()
	if err != nil {
		t.Fatalf("ip neigh: %v: %s", err, out)
	}
	return string(out)
}

func TestGroups(t *testing.T) {
	g := groups{}
	a, b := netip.MustParseAddr("2001:db8::50"), netip.MustParseAddr("2001:db8:1::50")
	ga, _ := solicitedNode(a)
	gb, _ := solicitedNode(b)
	if ga != gb || ga != netip.MustParseAddr("ff02::1:ff00:50") {
		t.Fatalf("groups %s and %s", ga, gb)
	}
	for i, step := range []struct {
		leave bool
		addr  netip.Addr
		want  bool // join or leave the group in the kernel
	}{
		{false, a, true},
		{false, a, false},
		{false, b, false},
		{true, a, false},
		{true, a, false},
		{true, b, true},
		{true, b, false},
		{false, b, true},
	} {
		var got bool
		if step.leave {
			got = g.remove(ga, step.addr)
		} else {
			got = g.add(ga, step.addr)
		}
		if got != step.want {
			t.Errorf("step %d (leave %v %s): %v; want %v", i, step.leave, step.addr, got, step.want)
		}
	}
	if _, err := solicitedNode(lbIP); err == nil {
		t.Error("an IPv4 address has a solicited-node group")
	}
}
