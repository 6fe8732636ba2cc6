package ipam

import (
	"fmt"
	"net/netip"
	"testing"
)

// Benchmarks for `make bench`. Each reports its figures per operation that
// matters (an assignment, a restored Service) and a baseline measured in the
// same run: inserting the same number of addresses into a plain Go map, the
// least any allocator must do. The make target prints the ratios.

const (
	assignRuns = 100_000
	live       = 50_000 // Services alive at once; the rest churn through
	restoreN   = 10_000
)

// benchRequests builds the Services once, outside the timed part.
func benchRequests(n int) []Request {
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Key: fmt.Sprintf("ns%d/svc%d", i%100, i), Namespace: fmt.Sprintf("ns%d", i%100), Ports: []Port{{"TCP", 80}}}
	}
	return reqs
}

// benchAssign makes 100,000 assignments from one pool: 50,000 Services
// fill half of it, and each further one releases the oldest first.
func benchAssign(b *testing.B, cidr string, fam Family) {
	r, err := ParseRange(cidr)
	if err != nil {
		b.Fatal(err)
	}
	reqs := benchRequests(assignRuns)
	for i := range reqs {
		reqs[i].Families = []Family{fam}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		a := New()
		if err := a.SetConfig(Config{Pools: []Pool{{Name: "p", Ranges: []Range{r}, AutoAssign: true}}}); err != nil {
			b.Fatal(err)
		}
		for i := range reqs {
			if i >= live {
				a.Release(reqs[i-live].Key)
			}
			if _, err := a.Assign(reqs[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*assignRuns), "ns/assignment")
}

func BenchmarkAssign100kIPv4Slash16(b *testing.B)  { benchAssign(b, "10.0.0.0/16", IPv4) }
func BenchmarkAssign100kIPv6Slash112(b *testing.B) { benchAssign(b, "fd00::/112", IPv6) }

// BenchmarkBaselineMapInsert100k is the floor: the same churn on a map
// from address to Service name.
func BenchmarkBaselineMapInsert100k(b *testing.B) {
	reqs := benchRequests(assignRuns)
	base := netip.MustParseAddr("10.0.0.0")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m := map[netip.Addr]string{}
		addrs := make([]netip.Addr, 0, assignRuns)
		next := base
		for i := range reqs {
			if i >= live {
				delete(m, addrs[i-live])
			}
			m[next] = reqs[i].Key
			addrs = append(addrs, next)
			next = next.Next()
		}
	}
}

// BenchmarkRestore10k restores 10,000 Services from their status into a
// fresh allocator, as a controller does at start-up.
func BenchmarkRestore10k(b *testing.B) {
	r, err := ParseRange("10.0.0.0/16")
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Pools: []Pool{{Name: "p", Ranges: []Range{r}, AutoAssign: true}}}
	reqs := benchRequests(restoreN)
	addrs := make([][]netip.Addr, restoreN)
	next := r.First
	for i := range addrs {
		addrs[i] = []netip.Addr{next}
		next = next.Next()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		a := New()
		if err := a.SetConfig(cfg); err != nil {
			b.Fatal(err)
		}
		for i := range reqs {
			if err := a.Restore(reqs[i], addrs[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*restoreN), "ns/service")
}
