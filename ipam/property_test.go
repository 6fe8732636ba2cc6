package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// The fuzz target drives random sequences of Services (requests, sharing,
// dual-stack), deletes, pool edits and restarts, and after every step checks:
// the invariants hold (no illegal duplicate), every newly given address is in
// a pool that serves the Service, and no Service other than the one the step
// was about lost or changed an address.

var (
	fuzzKeys  = []string{"a/s0", "a/s1", "a/s2", "b/s3", "b/s4", "b/s5", "c/s6", "c/s7"}
	fuzzAddrs = []string{"192.0.2.0", "192.0.2.1", "192.0.2.5", "192.0.2.255", "198.51.100.1", "2001:db8::1", "2001:db8::2", "10.96.0.3"}
	// Each pool name picks its ranges from these options.
	fuzzRanges = [][]string{
		{"192.0.2.0/29"},
		{"192.0.2.0/30", "2001:db8::/126"},
		{"192.0.2.4-192.0.2.6"},
		{"198.51.100.0/30", "2001:db8::/127"},
		{"2001:db8::/125"},
		{"192.0.2.254-192.0.3.1", "10.96.0.0/30"},
	}
)

type fuzzReader struct {
	data []byte
	pos  int
}

func (r *fuzzReader) next(n int) int {
	if r.pos >= len(r.data) {
		return 0
	}
	v := int(r.data[r.pos]) % n
	r.pos++
	return v
}

func (r *fuzzReader) done() bool { return r.pos >= len(r.data) }

func fuzzConfig(t *testing.T, r *fuzzReader) Config {
	var cfg Config
	for i, name := range []string{"p0", "p1", "p2"} {
		if r.next(4) == 0 {
			continue // this pool is absent
		}
		p := Pool{Name: name, Ranges: mustRanges(t, fuzzRanges[r.next(len(fuzzRanges))]...)}
		p.AutoAssign = r.next(4) != 0
		p.AvoidBuggyIPs = r.next(2) == 0
		if v := r.next(3); v > 0 {
			p.Priority, p.HasPriority = int32(v), true
		}
		switch r.next(4) {
		case 1:
			p.Namespaces = []string{"a", "b"}
		case 2:
			p.NamespaceSelector = labels.SelectorFromSet(labels.Set{"env": "prod"})
		case 3:
			p.ServiceSelector = labels.SelectorFromSet(labels.Set{"tier": fmt.Sprint(i % 2)})
		}
		cfg.Pools = append(cfg.Pools, p)
	}
	if r.next(2) == 0 {
		cfg.Reserved = []Reservation{{Range: mustRanges(t, "10.96.0.0/16")[0], Why: "service CIDR 10.96.0.0/16"}}
	}
	return cfg
}

func fuzzRequest(r *fuzzReader, key string) Request {
	req := svc(key)
	if r.next(2) == 0 {
		req.NamespaceLabels = map[string]string{"env": "prod"}
	}
	req.Labels = map[string]string{"tier": fmt.Sprint(r.next(2))}
	switch r.next(5) {
	case 0:
		req.Families = []Family{IPv4}
	case 1:
		req.Families = []Family{IPv6}
	case 2:
		req.Families, req.Policy = []Family{IPv4, IPv6}, PreferDualStack
	case 3:
		req.Families, req.Policy = []Family{IPv6, IPv4}, RequireDualStack
	case 4:
		req.Families, req.Policy = []Family{IPv4, IPv6}, SingleStack
	}
	if r.next(3) == 0 {
		req.SharingKey = "k"
	}
	req.Ports = []Port{{[]string{"TCP", "UDP"}[r.next(2)], int32(80 + r.next(2))}}
	if r.next(3) == 0 {
		req.Local, req.Selector = true, fmt.Sprint("app=", r.next(2))
	}
	if r.next(4) == 0 {
		req.Pool = []string{"p0", "p1", "p2", "gone"}[r.next(4)]
	}
	if r.next(4) == 0 {
		req.IPs = []netip.Addr{netip.MustParseAddr(fuzzAddrs[r.next(len(fuzzAddrs))])}
	}
	return req
}

func snapshot(a *Allocator) map[string][]Assigned {
	out := map[string][]Assigned{}
	for k := range a.services {
		out[k] = a.Assigned(k)
	}
	return out
}

func runFuzzSteps(t *testing.T, data []byte) {
	r := &fuzzReader{data: data}
	cfg := fuzzConfig(t, r)
	t.Logf("pools %+v reserved %v", cfg.Pools, cfg.Reserved)
	a := New()
	if err := a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	reqs := map[string]Request{}
	// resync re-assigns every known Service, as the controller does after a
	// pool edit or restart.
	resync := func() {
		keys := make([]string, 0, len(reqs))
		for k := range reqs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			res, err := a.Assign(reqs[k])
			t.Logf("  resync %s -> %v %v %v", k, res.IPs, res.Warnings, err)
		}
	}
	for step := 0; !r.done() && step < 200; step++ {
		before := snapshot(a)
		target := ""
		switch op := r.next(6); op {
		case 0, 1, 2: // create or change a Service
			target = fuzzKeys[r.next(len(fuzzKeys))]
			req := fuzzRequest(r, target)
			reqs[target] = req
			res, err := a.Assign(req)
			t.Logf("step %d: assign %+v -> %v %v", step, req, res.IPs, err)
			if err != nil && len(a.Assigned(target)) != 0 {
				t.Fatalf("step %d: refused %s still holds %v", step, target, a.Assigned(target))
			}
			if err == nil {
				for _, got := range res.IPs {
					checkGiven(t, a, step, req, got, before[target])
				}
			}
		case 3: // delete a Service
			target = fuzzKeys[r.next(len(fuzzKeys))]
			delete(reqs, target)
			a.Release(target)
		case 4: // pool edit
			cfg = fuzzConfig(t, r)
			t.Logf("step %d: pools %+v reserved %v", step, cfg.Pools, cfg.Reserved)
			if err := a.SetConfig(cfg); err != nil {
				t.Fatal(err)
			}
			resync()
		case 5: // restart: restore everything, then resync
			old := a
			a = New()
			if err := a.SetConfig(cfg); err != nil {
				t.Fatal(err)
			}
			for _, k := range fuzzKeys {
				if got := old.Assigned(k); len(got) > 0 {
					if err := a.Restore(reqs[k], addrsOf(got)); err != nil {
						t.Fatalf("step %d: restore %s: %v", step, k, err)
					}
				}
			}
			resync()
		}
		if err := a.Check(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		for k, had := range before {
			if k == target {
				continue
			}
			now := addrsOf(a.Assigned(k))
			for _, x := range had {
				if !slices.Contains(now, x.Addr) {
					t.Fatalf("step %d: %s moved: had %v, now %v", step, k, addrsOf(had), now)
				}
			}
		}
	}
}

// checkGiven checks an address the Service holds after Assign: one it had
// before, or a new one from a pool that serves it, not reserved.
func checkGiven(t *testing.T, a *Allocator, step int, req Request, got Assigned, had []Assigned) {
	t.Helper()
	if slices.ContainsFunc(had, func(x Assigned) bool { return x.Addr == got.Addr }) {
		return
	}
	p := a.byName[got.Pool]
	if p == nil || !a.serves(p, &req, got.Addr) {
		t.Fatalf("step %d: %s got %v from pool %q, which does not serve it", step, req.Key, got.Addr, got.Pool)
	}
	if why := a.reservedBy(got.Addr); why != "" {
		t.Fatalf("step %d: %s got reserved address %v (%s)", step, req.Key, got.Addr, why)
	}
	if p.AvoidBuggyIPs && buggy(got.Addr) {
		t.Fatalf("step %d: %s got %v from a pool that avoids it", step, req.Key, got.Addr)
	}
	if want, ok := req.requested(FamilyOf(got.Addr)); ok && want != got.Addr {
		t.Fatalf("step %d: %s asked for %v, got %v", step, req.Key, want, got.Addr)
	}
}

func FuzzAllocator(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte{3, 1, 1, 1, 0, 3, 0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 5, 4, 3, 2, 1, 0})
	f.Add([]byte("pool edits and restarts never move a Service's address"))
	f.Fuzz(runFuzzSteps)
}
