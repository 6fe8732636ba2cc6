package proxy

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// The local endpoint count is per Service: distinct addresses on this
// node, over all its ports, ready ones (or serving-terminating when none
// is ready); remote endpoints do not count.
func TestHealthChecks(t *testing.T) {
	web := func(port string) ServicePort {
		return ServicePort{Key: PortKey{"shop", "web", port, "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.0.5")}, Port: 80,
			ExternalLocal: true, HealthCheckNodePort: 32000}
	}
	st := baseState(web("http"), web("https"), dns())
	st.Endpoints[web("http").Key] = []Endpoint{ep(epB, 8080, true), ep(epC, 8080, false)}
	st.Endpoints[web("https").Key] = []Endpoint{ep(epB, 8443, true), ep(addr("10.244.0.9"), 8443, true)}
	got := HealthChecks(st)
	want := []HealthCheck{{Namespace: "shop", Name: "web", Port: 32000, LocalEndpoints: 2}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("HealthChecks = %+v, want %+v", got, want)
	}
	// Terminating local endpoints count only when no local one is ready.
	term := ep(addr("10.244.0.11"), 8080, true)
	term.Ready, term.Terminating = false, true
	st.Endpoints[web("http").Key] = []Endpoint{term}
	st.Endpoints[web("https").Key] = nil
	if got := HealthChecks(st); len(got) != 1 || got[0].LocalEndpoints != 1 {
		t.Errorf("with one serving-terminating local endpoint: %+v", got)
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func probe(t *testing.T, port uint16) (int, HealthReply) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r HealthReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Load-Balancing-Endpoint-Weight") != fmt.Sprint(r.LocalEndpoints) {
		t.Errorf("weight header %q, body %d", resp.Header.Get("X-Load-Balancing-Endpoint-Weight"), r.LocalEndpoints)
	}
	return resp.StatusCode, r
}

// The server answers each port for its Service, follows count changes,
// closes ports that are gone, reports an unhealthy proxy, and keeps the
// other ports when one cannot be opened.
func TestHealthServer(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	h := NewHealthServer("127.0.0.1", healthy.Load)
	defer h.Close()
	a, b := freePort(t), freePort(t)
	if err := h.Sync([]HealthCheck{{"shop", "web", a, 2}, {"shop", "empty", b, 0}}); err != nil {
		t.Fatal(err)
	}
	if code, r := probe(t, a); code != 200 || r.LocalEndpoints != 2 || r.Service.Name != "web" || !r.ServiceProxyHealthy {
		t.Errorf("port with 2 local endpoints: %d %+v", code, r)
	}
	if code, r := probe(t, b); code != 503 || r.LocalEndpoints != 0 || r.Service.Name != "empty" {
		t.Errorf("port with no local endpoint: %d %+v", code, r)
	}
	healthy.Store(false)
	if code, r := probe(t, a); code != 503 || r.ServiceProxyHealthy {
		t.Errorf("unhealthy proxy: %d %+v", code, r)
	}
	healthy.Store(true)

	// A taken port is reported; the rest still serve with new counts.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tp := uint16(taken.Addr().(*net.TCPAddr).Port)
	err = h.Sync([]HealthCheck{{"shop", "web", a, 1}, {"shop", "other", tp, 1}})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("health-check node port %d of Service shop/other", tp)) {
		t.Errorf("taken port: error %v", err)
	}
	if code, r := probe(t, a); code != 200 || r.LocalEndpoints != 1 {
		t.Errorf("after the count changed: %d %+v", code, r)
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", b)); err == nil {
		t.Errorf("port %d still answers after its Service went", b)
	}
}
