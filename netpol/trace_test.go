package netpol

import (
	"fmt"
	"net/netip"

	"github.com/berthnet/berth/internal/nftrules"
)

// packet is a new connection's first packet, as the tracer sees it.
type packet struct {
	src, dst netip.Addr
	proto    string // "tcp", "udp", "sctp"
	dport    int
}

// tracer runs packets through the rules a fake holds with the shared
// nftrules.Tracer, which runs the expressions the kernel would get. The
// packet is always a new connection's from a pod's or another node's link.
type tracer struct {
	tr  *nftrules.Tracer
	err error
	// path lists the rules that matched, as "chain[i]: rule", and the
	// counters the packet was counted on.
	path     []string
	counters []string
}

func newTracer(f *nftrules.Fake) *tracer {
	rs, ok := f.Ruleset()
	if !ok {
		return &tracer{err: fmt.Errorf("no table")}
	}
	tr, err := nftrules.NewTracer(rs)
	return &tracer{tr: tr, err: err}
}

// run traces p from a base chain; the answer is "accept" or "drop".
func (t *tracer) run(base string, p packet) (string, error) {
	t.path, t.counters = nil, nil
	if t.err != nil {
		return "", t.err
	}
	res, err := t.tr.Run(base, nftrules.Packet{Src: p.src, Dst: p.dst, Proto: p.proto, SPort: 40000, DPort: uint16(p.dport), IIFName: "veth0"})
	if err != nil {
		return "", err
	}
	if len(res) != 1 {
		return "", fmt.Errorf("%d outcomes, want one: %+v", len(res), res)
	}
	t.path, t.counters = res[0].Path, res[0].Counters
	return res[0].Verdict, nil
}
