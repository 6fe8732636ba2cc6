package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/berthnet/berth/xds/pki"
)

// wait is how long a test waits for anything the server should do at once.
const wait = 10 * time.Second

const serverName = "berth-xds.berth-system.svc"

// env is a running server on a loopback listener with real certificates.
type env struct {
	t    testing.TB
	ctx  context.Context
	ca   *pki.CA
	srv  *Server
	reg  *prometheus.Registry
	addr string
}

func newCA(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("berth-xds-ca", time.Now(), pki.DefaultCALifetime)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func serverCreds(t testing.TB, ca *pki.CA, clientCAs ...*pki.CA) Credentials {
	t.Helper()
	kp, err := ca.IssueServer(serverNamesForTest(), time.Now(), pki.DefaultLeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if len(clientCAs) == 0 {
		clientCAs = []*pki.CA{ca}
	}
	var certs []*pki.CA
	certs = append(certs, clientCAs...)
	pool := pki.Pool()
	for _, c := range certs {
		pool.AddCert(c.Cert)
	}
	return Credentials{Certificate: kp.TLSCertificate(), ClientCAs: pool}
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvLimits(t, Limits{})
}

// newEnvLimits is newEnv with limits other than the defaults.
func newEnvLimits(t testing.TB, limits Limits) *env {
	t.Helper()
	ca := newCA(t)
	reg := prometheus.NewRegistry()
	srv, err := New(Options{Credentials: serverCreds(t, ca), Registerer: reg, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &env{t: t, ctx: ctx, ca: ca, srv: srv, reg: reg, addr: lis.Addr().String()}
}

// recorder keeps every DiscoveryResponse a connection receives, so tests can check the
// version and nonce that go-control-plane's client does not return.
type recorder struct {
	mu    sync.Mutex
	resps []*discovery.DiscoveryResponse
}

func (r *recorder) last() *discovery.DiscoveryResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.resps) == 0 {
		return nil
	}
	return r.resps[len(r.resps)-1]
}

func (r *recorder) interceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return recordingStream{ClientStream: cs, r: r}, nil
}

type recordingStream struct {
	grpc.ClientStream
	r *recorder
}

func (s recordingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if resp, ok := m.(*discovery.DiscoveryResponse); ok && err == nil {
		s.r.mu.Lock()
		s.r.resps = append(s.r.resps, resp)
		s.r.mu.Unlock()
	}
	return err
}

// clientTLS is an Envoy's side of mutual TLS: a client certificate for group from ca,
// trusting roots.
func clientTLS(t testing.TB, ca *pki.CA, group string, roots ...*pki.CA) *tls.Config {
	t.Helper()
	kp, err := ca.IssueClient(group, time.Now(), pki.DefaultLeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) == 0 {
		roots = []*pki.CA{ca}
	}
	pool := pki.Pool()
	for _, r := range roots {
		pool.AddCert(r.Cert)
	}
	return &tls.Config{Certificates: []tls.Certificate{kp.TLSCertificate()}, RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS13}
}

// dial connects as an Envoy whose client certificate names certGroup.
func (e *env) dial(certGroup string) (*grpc.ClientConn, *recorder) {
	e.t.Helper()
	return dialTLS(e.t, e.addr, clientTLS(e.t, e.ca, certGroup))
}

func dialTLS(t testing.TB, addr string, cfg *tls.Config) (*grpc.ClientConn, *recorder) {
	t.Helper()
	rec := &recorder{}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)), grpc.WithStreamInterceptor(rec.interceptor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, rec
}

// within runs f and fails the test if it does not return in time: the xDS clients block
// in Recv, and a test must never hang.
func within[T any](t testing.TB, what string, f func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-timer.C:
		t.Fatalf("%s: nothing within %s", what, wait)
		var zero T
		return zero, errors.New("timeout")
	}
}

// eventually polls cond until it holds, for what the server does on its own goroutines
// and signals nowhere (a connection closing, a watch re-armed).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, wait)
		}
		<-tick.C
	}
}

// waitStatus waits until group's status satisfies ok, woken by the server's change signal.
func (e *env) waitStatus(group, what string, ok func(GroupStatus) bool) GroupStatus {
	e.t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		st := e.srv.Status(group)
		if ok(st) {
			return st
		}
		select {
		case <-e.srv.Changed():
		case <-timer.C:
			e.t.Fatalf("group %s: %s: not within %s; status %+v", group, what, wait, st)
		}
	}
}

func node(id, group string) *core.Node { return &core.Node{Id: id, Cluster: group} }

func serverNamesForTest() pki.ServerNames {
	return pki.ServerNames{DNSNames: []string{serverName}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
}
