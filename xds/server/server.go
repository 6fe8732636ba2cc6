// Package server serves Envoy configuration over xDS: one gRPC Aggregated Discovery
// Service (state of the world and delta) on go-control-plane's snapshot cache, with mutual
// TLS, one configuration per node group, and a status per group of what its Envoys have
// accepted (ACK) or rejected (NACK).
//
// An Envoy belongs to the node group its client certificate names (see xds/pki): its
// node.cluster must be that group, or its stream is refused with PermissionDenied. So one
// group's Envoys never receive another group's resources, secrets included.
//
// The server takes ready Envoy resources; translating Gateways and Ingresses into them
// happens elsewhere.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Options configure a Server.
type Options struct {
	// Credentials are the initial server certificate and client CAs; SetCredentials
	// replaces them later. Required.
	Credentials Credentials
	// Registerer receives the berth_controller_xds_* metrics; nil registers none.
	Registerer prometheus.Registerer
	// Log receives stream refusals and go-control-plane's own messages; zero discards.
	Log logr.Logger
	// Limits bound what clients can make the server hold; zero fields take the defaults.
	Limits Limits
}

// Server is the xDS server. Its methods are safe for concurrent use.
type Server struct {
	cache   cachev3.SnapshotCache
	creds   atomic.Pointer[Credentials]
	metrics *metrics
	log     logr.Logger
	tracker *tracker
	serves  atomic.Uint32
	limits  Limits
	conns   *conns

	mu     sync.Mutex // serialises publishing, guards groups
	groups map[string]*groupConfig
}

// New returns a Server that serves nothing until Set is called and Serve runs.
func New(opts Options) (*Server, error) {
	if err := opts.Credentials.check(); err != nil {
		return nil, err
	}
	limits, err := opts.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	s := &Server{
		// ADS mode: responses follow the order of CDS, EDS, LDS, RDS that Envoy needs.
		cache:   cachev3.NewSnapshotCache(true, groupHash{}, cacheLogger{log}),
		metrics: m,
		log:     log,
		tracker: newTracker(),
		groups:  map[string]*groupConfig{},
		limits:  limits,
	}
	s.conns = newConns(s, limits.MaxConnsPerGroup)
	c := opts.Credentials
	s.creds.Store(&c)
	return s, nil
}

// groupHash keys the cache by node group: every Envoy of a group gets the same snapshot.
type groupHash struct{}

func (groupHash) ID(node *core.Node) string { return node.GetCluster() }

// Serve serves xDS on lis until ctx is done, then closes every stream and returns nil.
// It may be called for several listeners (say IPv4 and IPv6) at once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cb := callbacks{s: s, serve: s.serves.Add(1)}
	xds := ads{sotw: sotwv3.NewServer(ctx, s.cache, cb), delta: deltav3.NewServer(ctx, s.cache, cb)}
	g := grpc.NewServer(
		grpc.Creds(limitedCreds{TransportCredentials: credentials.NewTLS(s.tlsConfig()), conns: s.conns}),
		// Envoy pings every 30 s by default at most; anything faster is abuse.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// A connection ends at its maximum age, so every Envoy comes back with the
		// certificate it has now, against the CAs trusted now.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second,
			MaxConnectionAge: s.limits.MaxConnAge, MaxConnectionAgeGrace: s.limits.MaxConnAgeGrace}),
		grpc.MaxRecvMsgSize(s.limits.MaxRecvMsgBytes),
		grpc.MaxConcurrentStreams(s.limits.MaxStreamsPerConn),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(g, xds)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		g.Stop()
	}()
	err := g.Serve(lis)
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("xds serve on %s: %w", lis.Addr(), err)
	}
	return nil
}

// cacheLogger hands go-control-plane's messages to logr, its chatter at debug levels.
// A message is formatted only when its level is on: the cache's debug lines print
// whole resource-name lists (thousands of clusters) on every push.
type cacheLogger struct{ log logr.Logger }

func (l cacheLogger) at(v int, format string, args []any) {
	if lv := l.log.V(v); lv.Enabled() {
		lv.Info(fmt.Sprintf(format, args...))
	}
}

func (l cacheLogger) Debugf(format string, args ...any) { l.at(2, format, args) }
func (l cacheLogger) Infof(format string, args ...any)  { l.at(1, format, args) }
func (l cacheLogger) Warnf(format string, args ...any)  { l.at(0, format, args) }
func (l cacheLogger) Errorf(format string, args ...any) {
	l.log.Error(nil, fmt.Sprintf(format, args...))
}

// ads is the Aggregated Discovery Service on go-control-plane's state-of-the-world and
// delta servers. It is what pkg/server/v3 does for ADS, without the per-type services
// (Envoy is configured for ADS only) and without that package's rate-limit service
// dependency, which is a module of its own.
type ads struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	sotw  sotwv3.Server
	delta deltav3.Server
}

func (a ads) StreamAggregatedResources(s discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.sotw.StreamHandler(s, resource.AnyType)
}

func (a ads) DeltaAggregatedResources(s discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.delta.DeltaStreamHandler(s, resource.AnyType)
}
