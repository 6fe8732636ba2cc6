// Package l2announce is Berth's layer-2 announcer: who answers for an
// address (Decide, Owner, from heartbeats in Members), what a node answers
// to an ARP request or a neighbour solicitation (ARPReply, NDPAdvert), and
// the Announcer that runs both on a node, with its clock and network I/O
// given to it.
package l2announce

import (
	"hash/fnv"
	"net/netip"
)

// Owner picks the node that announces addr among candidates: the one with
// the highest hash of (node, addr), rendezvous hashing. Every agent that
// sees the same candidates picks the same node without asking anyone; when
// a node goes, only its addresses move, each to the next node in its own
// order, so they spread over the others. "" when there is no candidate.
func Owner(addr netip.Addr, candidates []string) string {
	best, bestScore := "", uint64(0)
	for _, n := range candidates {
		s := score(n, addr)
		if best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}

func score(node string, addr netip.Addr) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	h.Write([]byte{0})
	b := addr.As16()
	h.Write(b[:])
	// FNV's low bits mix poorly for near-identical inputs; finish with a
	// 64-bit mixer (splitmix64's).
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
