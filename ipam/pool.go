package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Pool is one pool of addresses and the rules for who may draw from it.
type Pool struct {
	Name   string
	Ranges []Range
	// AutoAssign: Services that name neither this pool nor one of its
	// addresses get addresses from it.
	AutoAssign bool
	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255.
	AvoidBuggyIPs bool
	// Priority orders pools for automatic assignment: lower first; pools
	// without one (HasPriority false) come after, by name.
	Priority    int32
	HasPriority bool
	// Namespaces, NamespaceSelector and ServiceSelector restrict which
	// Services may use the pool; all that are set must match. Nil or empty
	// means no restriction.
	Namespaces        []string
	NamespaceSelector labels.Selector
	ServiceSelector   labels.Selector
}

// Reservation is a range no pool may hand out, with why.
type Reservation struct {
	Range Range
	// Why names what holds it, for conditions: "service CIDR 10.96.0.0/16".
	Why string
}

// Config is everything the allocator needs to know about the cluster's pools.
type Config struct {
	Pools    []Pool
	Reserved []Reservation
}

// PoolReport is what the allocator can say about a pool after SetConfig:
// what it conflicts with, and its usage.
type PoolReport struct {
	Name string
	// Conflicts lists what the pool overlaps: other pools and reservations.
	// Overlaps with reservations are never handed out; addresses shared
	// with another pool are handed out once, by whichever pool gets there.
	Conflicts []string
	Usage     map[Family]Usage
}

// Usage counts a pool's addresses of one family.
type Usage struct {
	// Capacity excludes reserved and (with AvoidBuggyIPs) .0/.255 addresses.
	Capacity  *big.Int
	InUse     int64
	Available *big.Int
}

// compiled is a validated Pool with derived data.
type compiled struct {
	Pool
	ranges []Range // normalized
	// hint[i] is the lowest address of ranges[i] that may be free.
	hint []netip.Addr
	// capacity per family, reservations and buggy addresses taken out.
	capacity map[Family]*big.Int
}

func (p *compiled) contains(a netip.Addr) bool {
	for _, r := range p.ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

func (p *compiled) hasFamily(f Family) bool {
	for _, r := range p.ranges {
		if r.Family() == f {
			return true
		}
	}
	return false
}

// allows reports whether the Service may use the pool at all (autoAssign
// aside).
func (p *compiled) allows(req *Request) bool {
	if len(p.Namespaces) > 0 && !slices.Contains(p.Namespaces, req.Namespace) {
		return false
	}
	if p.NamespaceSelector != nil && !p.NamespaceSelector.Matches(labels.Set(req.NamespaceLabels)) {
		return false
	}
	if p.ServiceSelector != nil && !p.ServiceSelector.Matches(labels.Set(req.Labels)) {
		return false
	}
	return true
}

// validatePools checks what the CRD schema cannot: unique names, non-empty
// ranges.
func validatePools(pools []Pool) error {
	seen := map[string]bool{}
	for _, p := range pools {
		if p.Name == "" {
			return fmt.Errorf("a pool has no name")
		}
		if seen[p.Name] {
			return fmt.Errorf("pool %s is listed twice", p.Name)
		}
		seen[p.Name] = true
		if len(p.Ranges) == 0 {
			return fmt.Errorf("pool %s has no addresses", p.Name)
		}
		for _, r := range p.Ranges {
			if !r.First.IsValid() || !r.Last.IsValid() || r.First.Is4() != r.Last.Is4() || r.Last.Less(r.First) {
				return fmt.Errorf("pool %s: invalid range %v", p.Name, r)
			}
		}
	}
	return nil
}

// compile normalizes the pools, computes capacities and conflicts.
func compile(cfg Config) ([]*compiled, map[string][]string) {
	reserved := make([]Range, 0, len(cfg.Reserved))
	for _, r := range cfg.Reserved {
		reserved = append(reserved, r.Range)
	}
	reserved = normalize(reserved)

	pools := make([]*compiled, 0, len(cfg.Pools))
	for _, p := range cfg.Pools {
		c := &compiled{Pool: p, ranges: normalize(p.Ranges), capacity: map[Family]*big.Int{}}
		c.hint = make([]netip.Addr, len(c.ranges))
		for i, r := range c.ranges {
			c.hint[i] = r.First
			size := r.Size()
			if p.AvoidBuggyIPs {
				size.Sub(size, countBuggy(r))
			}
			for _, res := range reserved {
				if !res.Overlaps(r) {
					continue
				}
				in := res.Intersect(r)
				size.Sub(size, in.Size())
				if p.AvoidBuggyIPs {
					size.Add(size, countBuggy(in))
				}
			}
			f := r.Family()
			if c.capacity[f] == nil {
				c.capacity[f] = new(big.Int)
			}
			c.capacity[f].Add(c.capacity[f], size)
		}
		pools = append(pools, c)
	}
	// Automatic assignment tries pools by priority, then name.
	sort.SliceStable(pools, func(i, j int) bool {
		a, b := pools[i], pools[j]
		if a.HasPriority != b.HasPriority {
			return a.HasPriority
		}
		if a.HasPriority && a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.Name < b.Name
	})

	conflicts := map[string][]string{}
	for i, a := range pools {
		for j, b := range pools {
			if i == j {
				continue
			}
			if overlapAny(a.ranges, b.ranges) {
				conflicts[a.Name] = append(conflicts[a.Name], "pool "+b.Name)
			}
		}
		for _, res := range cfg.Reserved {
			if overlapAny(a.ranges, []Range{res.Range}) && !slices.Contains(conflicts[a.Name], res.Why) {
				conflicts[a.Name] = append(conflicts[a.Name], res.Why)
			}
		}
		sort.Strings(conflicts[a.Name])
	}
	return pools, conflicts
}

func overlapAny(a, b []Range) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Overlaps(y) {
				return true
			}
		}
	}
	return false
}

// describe lists a pool's ranges for messages.
func describe(rs []Range) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}
