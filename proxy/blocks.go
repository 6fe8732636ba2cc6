package proxy

import "math/bits"

// blockKey names one endpoint list: a Service port's, for its cluster
// traffic (chain "svc") or its external traffic ("ext"), of one family.
type blockKey struct {
	port  PortKey
	chain string
	v6    bool
}

// blocks hands out ranges of keys in the endpoint maps. A list keeps its
// range while its length stays in the same power-of-two class, so an
// endpoint that comes or goes changes elements and the rule's modulus,
// never another Service's keys.
type blocks struct {
	next uint32
	free map[uint32][]uint32
	have map[blockKey]block
}

type block struct{ start, size uint32 }

// newBlocks starts at key 1: nft does not show "offset 0", and the rules
// should read back as written.
func newBlocks() *blocks {
	return &blocks{next: 1, free: map[uint32][]uint32{}, have: map[blockKey]block{}}
}

// block returns the start of k's range for n endpoints.
func (b *blocks) block(k blockKey, n int) uint32 {
	size := uint32(1)
	if n > 1 {
		size = 1 << bits.Len32(uint32(n-1))
	}
	if old, ok := b.have[k]; ok {
		if old.size == size {
			return old.start
		}
		b.free[old.size] = append(b.free[old.size], old.start)
	}
	var start uint32
	if f := b.free[size]; len(f) > 0 {
		start = f[len(f)-1]
		b.free[size] = f[:len(f)-1]
	} else {
		start = b.next
		b.next += size
	}
	b.have[k] = block{start, size}
	return start
}

// release frees k's range.
func (b *blocks) release(k blockKey) {
	if old, ok := b.have[k]; ok {
		b.free[old.size] = append(b.free[old.size], old.start)
		delete(b.have, k)
	}
}
