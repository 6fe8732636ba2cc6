package main

import (
	"flag"
	"net"
	"net/http"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/berthnet/berth/internal/daemon"
	"github.com/berthnet/berth/internal/metricsauth"
)

// Reading metrics through the secure server takes a token the API server
// knows (TokenReview) with the right to get /metrics (SubjectAccessReview).
//
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// serveOptions say where the agent's metrics and probes listen and who may
// read its metrics. The agent is on the host network: a port bound to
// every address is open on every network the node is on.
type serveOptions struct {
	host   string
	secure bool
}

func (s *serveOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&s.host, "serve-address", "", "the address metrics and probes listen on when their bind addresses give only a port (the chart passes the node's, status.hostIP); empty: every address")
	fs.BoolVar(&s.secure, "metrics-secure", false, "serve metrics over HTTPS to callers with a token allowed to get /metrics (TokenReview and SubjectAccessReview to the API server); off: plain HTTP to anyone")
}

// apply puts the host into the daemon's probe address and takes the
// metrics address from it (the agent serves metrics itself, see
// metricsServer), returning it.
func (s *serveOptions) apply(o *daemon.Options) string {
	metrics := s.join(o.MetricsAddr)
	o.ProbeAddr = s.join(o.ProbeAddr)
	o.MetricsAddr = "0"
	return metrics
}

// join gives a bind address of only a port (":9190") the host.
func (s *serveOptions) join(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" || s.host == "" {
		return addr
	}
	return net.JoinHostPort(s.host, port)
}

// metricsServer is the agent's metrics server on addr ("0": none), behind
// authentication and authorization when secure.
func (s *serveOptions) metricsServer(addr string, cfg *rest.Config, httpClient *http.Client) (metricsserver.Server, error) {
	o := metricsserver.Options{BindAddress: addr}
	if s.secure {
		o.SecureServing = true
		o.FilterProvider = metricsauth.Provider
	}
	return metricsserver.NewServer(o, cfg, httpClient)
}

// addMetrics adds the metrics server on addr to the manager.
func (s *serveOptions) addMetrics(mgr ctrl.Manager, addr string) error {
	srv, err := s.metricsServer(addr, mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil || srv == nil {
		return err
	}
	return mgr.Add(srv)
}
