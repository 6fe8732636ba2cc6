package metricsauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/test/kubetest"
)

// clock is a settable time for the Guard's cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) step(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestGuardSequence drives one Guard over a real API server, step by
// step: a reader's token is let through; once its binding is gone it is
// still let through while the answer is cached (a minute) and refused
// after; a token without the right is refused; a header that is not a
// bearer token is 401 without asking the API server.
func TestGuardSequence(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(env.Config)
	const ns = "guard-sequence"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "guard-metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(name string) string {
		if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	reader, other := token("reader"), token("other")
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "guard-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "guard-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "reader", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := &Guard{Client: admin, Now: clk.Now}
	h, err := g.Filter(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }))
	if err != nil {
		t.Fatal(err)
	}
	get := func(header string) int {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for i, step := range []struct {
		what   string
		do     func()
		header string
		want   int
	}{
		{"reader", nil, "Bearer " + reader, http.StatusOK},
		{"other", nil, "Bearer " + other, http.StatusForbidden},
		{"basic credentials", nil, "Basic dXNlcjpwYXNz", http.StatusUnauthorized},
		{"empty bearer", nil, "Bearer ", http.StatusUnauthorized},
		{"reader's binding deleted, answer cached", func() {
			if err := admin.RbacV1().ClusterRoleBindings().Delete(ctx, "guard-reader", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, "Bearer " + reader, http.StatusOK},
		{"59 s later, still cached", func() { clk.step(59 * time.Second) }, "Bearer " + reader, http.StatusOK},
		{"past a minute, asked again", func() {
			// The API server's own authorizer sees the deletion first.
			deadline := time.Now().Add(30 * time.Second)
			for {
				sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
					User: "system:serviceaccount:" + ns + ":reader", NonResourceAttributes: &authzv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
				}}, metav1.CreateOptions{})
				if err == nil && !sar.Status.Allowed {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the reader may still get /metrics 30 s after its binding was deleted: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			clk.step(2 * time.Second)
		}, "Bearer " + reader, http.StatusForbidden},
	} {
		if step.do != nil {
			step.do()
		}
		if got := get(step.header); got != step.want {
			t.Fatalf("step %d (%s): %d, want %d", i, step.what, got, step.want)
		}
	}
}
