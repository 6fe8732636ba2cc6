package l2announce

import (
	"net/netip"
	"sort"
	"time"
)

// Decision is who announces one address.
type Decision struct {
	// Owner announces it; "" when no node may.
	Owner string
	// Reporter writes the Service's condition when there is no owner: the
	// live agent that would own the address if every agent were a
	// candidate, so exactly one agent says why nobody announces it.
	Reporter   string
	Candidates []string
}

// Decide is the whole choice of announcers as every agent computes it:
// ready maps every live agent (the caller's own included) to the groups
// it is ready for. Agents with the same view decide the same.
func Decide(addrs []*Address, nodes []NodeInfo, ready map[string]map[uint64]bool) map[netip.Addr]Decision {
	live := make([]string, 0, len(ready))
	for n := range ready {
		live = append(live, n)
	}
	sort.Strings(live)
	out := make(map[netip.Addr]Decision, len(addrs))
	for _, a := range addrs {
		c := Candidates(a, nodes, ready)
		d := Decision{Owner: Owner(a.Addr, c), Candidates: c}
		if d.Owner == "" {
			d.Reporter = Owner(a.Addr, live)
		}
		out[a.Addr] = d
	}
	return out
}

// Readiness is what decides which groups this node says it is ready for.
type Readiness struct {
	// Started is when the agent started; UpSince maps each link with
	// carrier to when it got it.
	Started time.Time
	UpSince map[string]time.Time
	// Settle is how long the agent and a link must have been up: long
	// enough to hear every live peer (Members.DeadAfter), so a node that
	// has just started, or whose link has just come back, never claims
	// an address a peer holds because it has not heard that peer yet.
	Settle time.Duration
}

// ReadyGroups lists the groups this node (with labels selfLabels) is
// ready for at now: selected by the group's node selectors, with one of
// the group's interfaces (Interfaces) settled up. Sorted.
func ReadyGroups(groups []*Group, selfLabels map[string]string, links []Link, r Readiness, now time.Time) []uint64 {
	if now.Sub(r.Started) < r.Settle {
		return nil
	}
	var out []uint64
	for _, g := range groups {
		if !g.Selects(selfLabels) {
			continue
		}
		for _, name := range Interfaces(g.Interfaces, g.Samples, links) {
			if since, up := r.UpSince[name]; up && now.Sub(since) >= r.Settle {
				out = append(out, g.Key)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
