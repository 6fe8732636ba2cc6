package translator

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/xds/ir"
)

// randomGroup is a valid ir.Group drawn from seed: every IR feature, in
// random combinations, within what the first stage may produce (a port is
// either HTTP or HTTPS; HTTPS listeners on a port have distinct hostnames;
// a certificate name always has the same bytes).
func randomGroup(seed uint64) *ir.Group {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	maybe := func() bool { return r.IntN(2) == 0 }
	strp := func(s string) *string { return &s }

	g := &ir.Group{Name: fmt.Sprintf("gateway/fuzz/g%d", seed)}
	for i := range 1 + r.IntN(5) {
		p := ir.HTTP
		if maybe() {
			p = ir.HTTP2
		}
		g.Clusters = append(g.Clusters, &ir.Cluster{
			Name: fmt.Sprintf("ns%d/svc%d/%d", i%3, i, 80+i), Namespace: fmt.Sprintf("ns%d", i%3),
			Service: fmt.Sprintf("svc%d", i), Port: int32(80 + i), PortName: pick("", "http"), Protocol: p,
		})
	}
	cluster := func() string { return g.Clusters[r.IntN(len(g.Clusters))].Name }
	hosts := []string{"", "a.example.com", "*.example.com", "b.example.org", "*.b.example.org", "c.test"}
	match := func(path bool) *ir.StringMatch {
		switch r.IntN(3) {
		case 0:
			return &ir.StringMatch{Type: ir.Exact, Value: pick("/", "/a", "/a/b", "/x y", "/ü")}
		case 1:
			return &ir.StringMatch{Type: ir.Prefix, Value: pick("/", "/a", "/a/", "/a/b", "/odd?q", "/h#f", "//")}
		}
		v := pick("/a/[0-9]+", ".*", "/(x|y)/?", `\d{2,3}`)
		if !path {
			v = pick("[a-z]+", ".*", "^v[0-9]$")
		}
		return &ir.StringMatch{Type: ir.Regex, Value: v}
	}
	mods := func() *ir.HeaderModifier {
		if maybe() {
			return nil
		}
		m := &ir.HeaderModifier{}
		for range r.IntN(3) {
			m.Add = append(m.Add, ir.Header{Name: pick("X-A", "x-b", "Cache-Control", "Host", ":authority"), Value: pick("", "1", "a b", "ü")})
		}
		for range r.IntN(3) {
			m.Set = append(m.Set, ir.Header{Name: pick("X-C", "x-d"), Value: pick("v", "w")})
		}
		for range r.IntN(2) {
			m.Remove = append(m.Remove, pick("X-E", "server", "host", ":path"))
		}
		return m
	}
	pathMod := func(prefixOK bool) *ir.PathModifier {
		if prefixOK && maybe() {
			return &ir.PathModifier{PrefixMatch: strp(pick("/", "/b", "/b/", `/c\1`))}
		}
		return &ir.PathModifier{FullPath: strp(pick("/", "/full", "/x/y"))}
	}

	certs := []*ir.Certificate{
		{Name: "fuzz/c0", Chain: []byte("chain0"), Key: []byte("key0")},
		{Name: "fuzz/c1", Chain: []byte("chain1"), Key: []byte("key1")},
		{Name: "fuzz/c2", Chain: []byte("chain2"), Key: []byte("key2")},
	}
	usedHosts := map[uint32]map[string]bool{}
	for li := range 1 + r.IntN(4) {
		l := &ir.HTTPListener{Name: fmt.Sprintf("fuzz/g/l%d", li), Hostname: pick(hosts...)}
		if maybe() {
			l.Port = []uint32{443, 8443}[r.IntN(2)]
			l.TLS = &ir.TLS{}
			for i, n := r.IntN(3), 1+r.IntN(2); n > 0; i, n = i+1, n-1 {
				l.TLS.Certificates = append(l.TLS.Certificates, certs[i%3])
			}
		} else {
			l.Port = []uint32{80, 8080}[r.IntN(2)]
		}
		// As the first stage makes them: listeners of a port have distinct
		// hostnames, and a route's hostname is within its listener's.
		if usedHosts[l.Port] == nil {
			usedHosts[l.Port] = map[string]bool{}
		}
		if usedHosts[l.Port][l.Hostname] {
			l.Hostname = fmt.Sprintf("l%d.example.net", li)
		}
		usedHosts[l.Port][l.Hostname] = true
		for ri := range r.IntN(8) {
			rt := &ir.HTTPRoute{Name: fmt.Sprintf("route/%d/%d", li, ri), Hostname: l.Hostname}
			if h := pick(hosts...); maybe() && within(h, l.Hostname) {
				rt.Hostname = h
			}
			if maybe() {
				rt.Path = match(true)
				if rt.Path.Type != ir.Regex && rt.Path.Value[0] != '/' {
					rt.Path.Value = "/" + rt.Path.Value
				}
			}
			for range r.IntN(3) {
				rt.Headers = append(rt.Headers, &ir.NamedMatch{Name: pick("X-H", "x-tenant", "accept"), StringMatch: *match(false)})
			}
			for range r.IntN(3) {
				rt.QueryParams = append(rt.QueryParams, &ir.NamedMatch{Name: pick("q", "Page", "a b"), StringMatch: *match(false)})
			}
			rt.Method = pick("", "", "GET", "POST", "DELETE")
			rt.RequestHeaders, rt.ResponseHeaders = mods(), mods()
			prefix := rt.Path != nil && rt.Path.Type == ir.Prefix
			switch r.IntN(4) {
			case 0:
				rd := &ir.Redirect{StatusCode: []int{301, 302, 303, 307, 308}[r.IntN(5)]}
				if maybe() {
					rd.Scheme = strp(pick("http", "https"))
				}
				if maybe() {
					rd.Hostname = strp(pick("r.example.com", "x.test"))
				}
				if maybe() {
					p := uint32(1 + r.IntN(65535))
					rd.Port = &p
				}
				if maybe() {
					rd.Path = pathMod(prefix)
				}
				rt.Redirect = rd
			case 1:
				rt.DirectResponse = &ir.DirectResponse{Status: uint32(200 + r.IntN(400)), Body: pick("", "nope", "ü\n")}
			default:
				var total uint32
				for range 1 + r.IntN(4) {
					b := &ir.Backend{Weight: uint32(r.IntN(4)) * uint32(1+r.IntN(1000))}
					if r.IntN(5) > 0 {
						b.Cluster = cluster()
					}
					total += b.Weight
					rt.Backends = append(rt.Backends, b)
				}
				if total == 0 {
					rt.Backends[0].Weight = 1
				}
				if maybe() {
					rt.Rewrite = &ir.URLRewrite{}
					if maybe() {
						rt.Rewrite.Hostname = strp(pick("up.example.com", "x"))
					}
					if maybe() {
						rt.Rewrite.Path = pathMod(prefix)
					}
				}
				for range r.IntN(3) {
					rt.Mirrors = append(rt.Mirrors, &ir.Mirror{Cluster: cluster(), Percent: []float64{0, 0.01, 12.5, 50, 99.99999, 100}[r.IntN(6)]})
				}
				rt.Timeout = time.Duration(r.IntN(3)) * 5 * time.Second
				rt.TimeoutDisabled = rt.Timeout == 0 && maybe()
				rt.BackendTimeout = time.Duration(r.IntN(3)) * 1500 * time.Millisecond
			}
			l.Routes = append(l.Routes, rt)
		}
		g.HTTP = append(g.HTTP, l)
	}
	return g
}

// checkRandomGroup: a random valid group translates without error, and
// what comes out is loadable and means the group (checkResources).
func checkRandomGroup(t *testing.T, seed uint64) {
	t.Helper()
	g := randomGroup(seed)
	if err := g.Validate(); err != nil {
		t.Fatalf("seed %d: the generator made an invalid group: %v", seed, err)
	}
	res, err := Translate(g)
	if err != nil {
		t.Fatalf("seed %d: Translate: %v", seed, err)
	}
	checkResources(t, g, res)
	eps := ir.Endpoints{}
	for i, c := range g.Clusters {
		eps[c.Name] = []ir.Endpoint{{Address: fmt.Sprintf("10.0.0.%d", i), Port: 8080, Terminating: i%2 == 1}}
	}
	for _, r := range Endpoints(g, eps) {
		if err := validate(r); err != nil {
			t.Errorf("seed %d: assignment %s: %v", seed, name(r), err)
		}
	}
}

func TestRandomGroups(t *testing.T) {
	for seed := range uint64(300) {
		checkRandomGroup(t, seed)
	}
}

// FuzzTranslate explores more seeds: go test -fuzz FuzzTranslate
// ./xds/translator/.
func FuzzTranslate(f *testing.F) {
	for _, seed := range []uint64{0, 1, 7, 42, 1 << 40} {
		f.Add(seed)
	}
	f.Fuzz(checkRandomGroup)
}

// within says whether every host the route hostname h matches is one the
// listener hostname l matches, as the first stage's intersection makes it.
func within(h, l string) bool {
	switch {
	case l == "" || h == l:
		return true
	case h == "" || !strings.HasPrefix(l, "*."):
		return false
	}
	return hostnameMatches(l, strings.Replace(h, "*", "probe", 1))
}
