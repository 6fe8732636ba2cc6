package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/berthnet/berth/internal/daemon"
	"github.com/berthnet/berth/test/kubetest"
)

// TestServeAddresses: with --serve-address (the chart's status.hostIP) the
// probes and metrics listen on the node's address, IPv6 in brackets; an
// address that names its host, or no --serve-address, is left alone.
func TestServeAddresses(t *testing.T) {
	for _, tc := range []struct {
		host, metrics, probe   string
		wantMetrics, wantProbe string
	}{
		{"192.0.2.7", ":9190", ":9191", "192.0.2.7:9190", "192.0.2.7:9191"},
		{"2001:db8::7", ":9190", ":9191", "[2001:db8::7]:9190", "[2001:db8::7]:9191"},
		{"", ":9190", ":9191", ":9190", ":9191"},
		{"192.0.2.7", "127.0.0.1:9190", "0", "127.0.0.1:9190", "0"},
	} {
		var o daemon.Options
		var s serveOptions
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o.Bind(fs, tc.metrics, tc.probe)
		s.bind(fs)
		if err := fs.Parse([]string{"--serve-address=" + tc.host}); err != nil {
			t.Fatal(err)
		}
		got := s.apply(&o)
		if got != tc.wantMetrics || o.ProbeAddr != tc.wantProbe || o.MetricsAddr != "0" {
			t.Errorf("host %q, %q %q: metrics %q probes %q (daemon's metrics %q), want %q %q (and 0)",
				tc.host, tc.metrics, tc.probe, got, o.ProbeAddr, o.MetricsAddr, tc.wantMetrics, tc.wantProbe)
		}
	}
}

// TestSecureMetrics runs the agent's metrics server (--metrics-secure) as
// the agent's generated roles allow it to, against a real API server, and
// scrapes it: no token 401, a made-up token 401, a ServiceAccount without
// the chart's metrics-reader role 403, one bound to it 200 with metrics.
func TestSecureMetrics(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin := kubernetes.NewForConfigOrDie(env.Config)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}

	// The agent's identity: only config/rbac/agent's rules.
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "berth-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Apply(t, env.Config, filepath.Join(root, "config/rbac/agent/role.yaml"))
	const agentUser = "metrics-test-agent"
	bind(ctx, t, admin, agentUser, "berth-agent", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: agentUser})
	_, agentCfg := env.User(t, agentUser)

	// The chart's metrics-reader role, as the chart renders it.
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "berth-metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const ns = "metrics-scrapers"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	reader := saToken(ctx, t, admin, ns, "prometheus")
	bind(ctx, t, admin, "prometheus-reads-berth", "berth-metrics-reader", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: ns})
	stranger := saToken(ctx, t, admin, ns, "stranger")

	s := serveOptions{secure: true}
	addr := freeAddr(t)
	httpClient, err := rest.HTTPClientFor(agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := s.metricsServer(addr, agentCfg, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("metrics server: %v", err)
		}
	})

	// Self-signed: the scraper (as the chart's ServiceMonitor) skips
	// verification; what matters here is who may read.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	scrape := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		var resp *http.Response
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err = c.Do(req)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond) // the server is starting
		}
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		who, token string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a made-up token", "not-a-token", http.StatusUnauthorized},
		{"a ServiceAccount without the role", stranger, http.StatusForbidden},
		{"a ServiceAccount with berth-metrics-reader", reader, http.StatusOK},
	} {
		code, body := scrape(tc.token)
		if code != tc.want {
			t.Errorf("%s: %d, want %d (%s)", tc.who, code, tc.want, strings.TrimSpace(body))
		}
		if code == http.StatusOK && !strings.Contains(body, "# TYPE") {
			t.Errorf("%s: 200 without metrics: %.200s", tc.who, body)
		}
	}
	// Plain HTTP is not served.
	if resp, err := c.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("metrics served over plain HTTP with --metrics-secure")
		}
	}
}

func bind(ctx context.Context, t *testing.T, admin kubernetes.Interface, name, role string, who rbacv1.Subject) {
	t.Helper()
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{who},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// saToken makes ServiceAccount ns/name and returns a token for it.
func saToken(ctx context.Context, t *testing.T, admin kubernetes.Interface, ns, name string) string {
	t.Helper()
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr())
}
