// Package metricsauth guards a metrics endpoint as the API server's own
// are guarded: the caller's bearer token is checked with a TokenReview,
// and its right to get the path with a SubjectAccessReview (a ClusterRole
// with nonResourceURLs ["/metrics"] and verb get grants it).
//
// It is what controller-runtime's filters.WithAuthenticationAndAuthorization
// does, written against client-go alone: that filter brings k8s.io/apiserver
// and through it CEL, OpenTelemetry and some twenty more modules into the
// node agent, for two API calls.
package metricsauth

import (
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// How long a review's answer is kept: a token whose rights were taken away
// reads metrics for at most allowedFor more; a refused one is asked about
// again soon. maxCached bounds the memory made-up tokens can take.
const (
	allowedFor = time.Minute
	refusedFor = 10 * time.Second
	maxCached  = 1024
)

// Provider is a metricsserver.Options.FilterProvider.
func Provider(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	cs, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	g := &Guard{Client: cs, Now: time.Now}
	return g.Filter, nil
}

// Guard answers 401 to a request without a token the API server accepts,
// 403 to one whose user may not get the path, and passes the others on.
type Guard struct {
	Client kubernetes.Interface
	Now    func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]decision
}

type decision struct {
	status  int // 0: allowed
	expires time.Time
}

// Filter wraps handler (a metricsserver.Filter).
func (g *Guard) Filter(log logr.Logger, handler http.Handler) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, err := g.decide(r)
		if err != nil {
			log.Error(err, "metrics request not reviewed", "path", r.URL.Path)
			http.Error(w, "authentication or authorization unavailable", http.StatusInternalServerError)
			return
		}
		switch status {
		case http.StatusUnauthorized:
			http.Error(w, "Unauthorized", status)
		case http.StatusForbidden:
			http.Error(w, "Forbidden: the token's user may not get "+r.URL.Path, status)
		default:
			handler.ServeHTTP(w, r)
		}
	}), nil
}

func (g *Guard) decide(r *http.Request) (int, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if token = strings.TrimSpace(token); !ok || token == "" {
		return http.StatusUnauthorized, nil
	}
	verb := strings.ToLower(r.Method)
	key := sha256.Sum256([]byte(verb + " " + r.URL.Path + " " + token))
	now := g.Now()
	g.mu.Lock()
	d, hit := g.cache[key]
	g.mu.Unlock()
	if hit && now.Before(d.expires) {
		return d.status, nil
	}
	status, err := g.review(r, token, verb)
	if err != nil {
		return 0, err
	}
	ttl := allowedFor
	if status != 0 {
		ttl = refusedFor
	}
	g.mu.Lock()
	if g.cache == nil || len(g.cache) >= maxCached {
		g.cache = map[[sha256.Size]byte]decision{}
	}
	g.cache[key] = decision{status: status, expires: now.Add(ttl)}
	g.mu.Unlock()
	return status, nil
}

func (g *Guard) review(r *http.Request, token, verb string) (int, error) {
	tr, err := g.Client.AuthenticationV1().TokenReviews().Create(r.Context(),
		&authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return 0, err
	}
	if !tr.Status.Authenticated {
		return http.StatusUnauthorized, nil
	}
	u := tr.Status.User
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar, err := g.Client.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
		NonResourceAttributes: &authzv1.NonResourceAttributes{Path: r.URL.Path, Verb: verb},
	}}, metav1.CreateOptions{})
	if err != nil {
		return 0, err
	}
	if !sar.Status.Allowed {
		return http.StatusForbidden, nil
	}
	return 0, nil
}
