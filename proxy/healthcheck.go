package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HealthCheck is the health-check node port of one Service with
// externalTrafficPolicy: Local, and how many endpoints it has on this node.
// External load balancers (and Berth's own announcers) ask it which nodes
// should get the Service's traffic.
type HealthCheck struct {
	Namespace, Name string
	Port            uint16
	LocalEndpoints  int
}

// HealthChecks lists the state's health checks: one per Service that has
// a health-check node port, counting the distinct addresses of this node's
// usable endpoints over all the Service's ports.
func HealthChecks(st State) []HealthCheck {
	type svc struct{ ns, name string }
	ports := map[svc]uint16{}
	local := map[svc]map[netip.Addr]bool{}
	for _, sp := range st.Services {
		if sp.HealthCheckNodePort == 0 {
			continue
		}
		k := svc{sp.Key.Namespace, sp.Key.Name}
		ports[k] = sp.HealthCheckNodePort
		if local[k] == nil {
			local[k] = map[netip.Addr]bool{}
		}
		for _, e := range usable(st.Endpoints[sp.Key], true) {
			local[k][e.Addr] = true
		}
	}
	out := make([]HealthCheck, 0, len(ports))
	for k, p := range ports {
		out = append(out, HealthCheck{Namespace: k.ns, Name: k.name, Port: p, LocalEndpoints: len(local[k])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// HealthServer answers the health-check node ports, as kube-proxy does:
// 200 with the local endpoint count while this node has endpoints and the
// proxy's last sync succeeded, 503 otherwise, with a JSON body
// {"service":{"namespace","name"},"localEndpoints","serviceProxyHealthy"}.
type HealthServer struct {
	// Host is the address the ports listen on; "" is every address.
	Host string
	// Healthy reports whether the proxy's rules are in place.
	Healthy func() bool

	mu      sync.Mutex
	servers map[uint16]*healthPort
	open    prometheus.Gauge
	failed  prometheus.Counter
}

type healthPort struct {
	srv   *http.Server
	mu    sync.Mutex
	check HealthCheck
}

// NewHealthServer returns a server with no ports open.
func NewHealthServer(host string, healthy func() bool) *HealthServer {
	return &HealthServer{
		Host: host, Healthy: healthy, servers: map[uint16]*healthPort{},
		open:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_agent_proxy_health_check_ports", Help: "Health-check node ports this node answers."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_agent_proxy_health_check_listen_failures_total", Help: "Health-check node ports that could not be opened (retried on the next sync)."}),
	}
}

// Collectors lists the server's metrics for registration.
func (h *HealthServer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{h.open, h.failed}
}

// Sync opens the ports of new checks, closes those of checks that are gone
// and updates the counts of the others. A port that cannot be opened is
// reported and tried again on the next sync; the other ports still open.
func (h *HealthServer) Sync(checks []HealthCheck) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := map[uint16]HealthCheck{}
	for _, c := range checks {
		want[c.Port] = c
	}
	for port, p := range h.servers {
		if _, ok := want[port]; !ok {
			_ = p.srv.Close()
			delete(h.servers, port)
		}
	}
	var errs []error
	for port, c := range want {
		if p, ok := h.servers[port]; ok {
			p.mu.Lock()
			p.check = c
			p.mu.Unlock()
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(h.Host, strconv.Itoa(int(port))))
		if err != nil {
			h.failed.Inc()
			errs = append(errs, fmt.Errorf("health-check node port %d of Service %s/%s: %w", port, c.Namespace, c.Name, err))
			continue
		}
		p := &healthPort{check: c}
		p.srv = &http.Server{Handler: h.handler(p), ReadHeaderTimeout: 5 * time.Second}
		h.servers[port] = p
		go func() { _ = p.srv.Serve(ln) }()
	}
	h.open.Set(float64(len(h.servers)))
	return errors.Join(errs...)
}

// Close closes every port.
func (h *HealthServer) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for port, p := range h.servers {
		_ = p.srv.Shutdown(context.Background())
		delete(h.servers, port)
	}
	h.open.Set(0)
}

// HealthReply is the body a health-check node port answers with.
type HealthReply struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (h *HealthServer) handler(p *healthPort) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		c := p.check
		p.mu.Unlock()
		var r HealthReply
		r.Service.Namespace, r.Service.Name = c.Namespace, c.Name
		r.LocalEndpoints = c.LocalEndpoints
		r.ServiceProxyHealthy = h.Healthy == nil || h.Healthy()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(c.LocalEndpoints))
		if c.LocalEndpoints > 0 && r.ServiceProxyHealthy {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(r)
	})
}
