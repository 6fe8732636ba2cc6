package bgp

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Max-prefix (issue 23 item 2, RFC 4486): gobgpd sends as many prefixes
// as the limit, and the session stays; one more, and the speaker closes
// it with a Cease, maximum number of prefixes reached, which gobgpd
// receives; the state says so with the limit, and the session stays down
// (GoBGP's admin state) until the limit changes. Raised, the session
// comes back with every prefix.
func TestMaxPrefixes(t *testing.T) {
	g := startGoBGPd(t, 64500, 64512)
	s, ctx := runSpeaker(t)
	peer := &Peer{Name: "gobgpd", Address: g.remote, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second), MaxPrefixes: 5}
	if err := s.Apply(ctx, onePeerPlan(peer, g.local, Attrs{})); err != nil {
		t.Fatal(err)
	}
	established(t, ctx, s, "gobgpd")
	for i := range 5 {
		if _, err := g.gobgp("global", "rib", "add", "-a", "ipv4", fmt.Sprintf("198.18.%d.0/24", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "5 prefixes accepted", func() error {
		st, err := stateOf(ctx, s, "gobgpd")
		if err == nil && (st.State != "Established" || st.Accepted != 5 || st.MaxPrefixesReached) {
			err = fmt.Errorf("%+v", st)
		}
		return err
	})
	before, err := g.neighbor()
	if err != nil {
		t.Fatal(err)
	}

	// The sixth.
	if _, err := g.gobgp("global", "rib", "add", "-a", "ipv4", "198.18.5.0/24"); err != nil {
		t.Fatal(err)
	}
	g.notified(t, before, false, 1)
	var st PeerState
	waitFor(t, 20*time.Second, "the session down on the limit", func() error {
		st, err = stateOf(ctx, s, "gobgpd")
		if err == nil && (st.State == "Established" || !st.MaxPrefixesReached) {
			err = fmt.Errorf("%+v", st)
		}
		return err
	})
	if !strings.Contains(st.LastError, "more than 5 prefixes") || st.MaxPrefixes != 5 {
		t.Errorf("the speaker's state %+v: want the last error to say more than 5 prefixes", st)
	}
	// gobgpd logs the NOTIFICATION it received: Cease (6), maximum
	// number of prefixes reached (1).
	waitFor(t, 10*time.Second, "gobgpd to log the Cease", func() error {
		out, err := os.ReadFile(filepath.Join(g.dir, "gobgpd.log"))
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "received notification") && strings.Contains(l, "Code=6") && strings.Contains(l, "Subcode=1 ") {
				return nil
			}
		}
		return fmt.Errorf("no Cease/maximum prefixes received in gobgpd's log")
	})

	// Raised: the session comes back with all six.
	raised := *peer
	raised.MaxPrefixes = 10
	if err := s.Apply(ctx, onePeerPlan(&raised, g.local, Attrs{})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "6 prefixes accepted under the raised limit", func() error {
		st, err := stateOf(ctx, s, "gobgpd")
		if err == nil && (st.State != "Established" || st.Accepted != 6 || st.MaxPrefixesReached || st.LastError != "") {
			err = fmt.Errorf("%+v", st)
		}
		return err
	})
}
