package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/labtest"
)

// The lab runs berth-controller and the agents as the chart's
// ServiceAccounts with the chart's roles. This checks who they are, that
// they are refused what they must not do (and granted what they need, so
// the refusals are not those of an identity with no rights at all), and
// that the demo (IPAM, L2, BGP, Gateway, NetworkPolicy, pods) runs without
// one forbidden request in their logs.
func TestRBACChartPermissions(t *testing.T) {
	l, ctx := labtest.Start(t, 5*time.Minute)
	cfg := l.Config(t)

	controller := serviceAccountClient(ctx, t, l, lab.ControllerServiceAccount)
	agent := serviceAccountClient(ctx, t, l, lab.AgentServiceAccount)

	t.Run("identities", func(t *testing.T) {
		for sa, c := range map[string]kubernetes.Interface{lab.ControllerServiceAccount: controller, lab.AgentServiceAccount: agent} {
			r, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			u := r.Status.UserInfo
			if u.Username != lab.ServiceAccountUser(sa) || !slices.Contains(u.Groups, "system:serviceaccounts:"+lab.Namespace) {
				t.Errorf("%s authenticates as %q in %q, want %q in system:serviceaccounts:%s", sa, u.Username, u.Groups, lab.ServiceAccountUser(sa), lab.Namespace)
			}
			if _, err := l.Client(t).CoreV1().ServiceAccounts(lab.Namespace).Get(ctx, sa, metav1.GetOptions{}); err != nil {
				t.Errorf("ServiceAccount %s: %v", sa, err)
			}
		}
		// The chart's pods run as those accounts, with their tokens.
		pods, err := l.Client(t).CoreV1().Pods(lab.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component in (agent,controller)"})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"agent": lab.AgentServiceAccount, "controller": lab.ControllerServiceAccount}
		seen := map[string]int{}
		for _, p := range pods.Items {
			role := p.Labels["app.kubernetes.io/component"]
			seen[role]++
			if p.Spec.ServiceAccountName != want[role] {
				t.Errorf("%s pod %s runs as ServiceAccount %q, want %q", role, p.Name, p.Spec.ServiceAccountName, want[role])
			}
		}
		if seen["agent"] != cfg.Nodes || seen["controller"] < 1 {
			t.Errorf("pods of the chart: %v, want %d agents and a controller", seen, cfg.Nodes)
		}
	})

	type access struct {
		verb, group, resource, subresource, namespace string
		allowed                                       bool
		name                                          string // empty: any object
	}
	t.Run("can-i", func(t *testing.T) {
		for _, tc := range []struct {
			who string
			c   kubernetes.Interface
			a   access
		}{
			// The agent reads the Secrets the chart names, by name, in its
			// own namespace only: never the xDS CA (issue 19 item 1).
			{"agent", agent, access{"get", "", "secrets", "", lab.Namespace, true, "berth-l2-key"}},
			{"agent", agent, access{"get", "", "secrets", "", lab.Namespace, false, "berth-xds-ca"}},
			{"agent", agent, access{"get", "", "secrets", "", lab.Namespace, false, ""}},
			{"agent", agent, access{"list", "", "secrets", "", lab.Namespace, false, ""}},
			{"agent", agent, access{"list", "", "secrets", "", "", false, ""}},
			{"agent", agent, access{"get", "", "secrets", "", "default", false, ""}},
			{"agent", agent, access{"create", "", "pods", "", "default", false, ""}},
			{"agent", agent, access{"list", "", "nodes", "", "", true, ""}},
			{"agent", agent, access{"update", "", "nodes", "", "", false, ""}},
			{"agent", agent, access{"patch", "", "services", "status", "default", true, ""}},
			{"agent", agent, access{"update", "", "services", "", "default", false, ""}},
			{"agent", agent, access{"create", "coordination.k8s.io", "leases", "", lab.Namespace, false, ""}},
			{"controller", controller, access{"update", "", "services", "status", "default", true, ""}},
			// Fleets are written in Berth's namespace only (issue 19 item 8).
			{"controller", controller, access{"create", "apps", "deployments", "", lab.Namespace, true, ""}},
			{"controller", controller, access{"create", "apps", "deployments", "", "default", false, ""}},
			{"controller", controller, access{"create", "", "secrets", "", "default", false, ""}},
			{"controller", controller, access{"delete", "", "nodes", "", "", false, ""}},
			{"controller", controller, access{"create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", false, ""}},
			{"controller", controller, access{"create", "", "pods", "", "default", false, ""}},
			{"controller", controller, access{"create", "", "pods", "exec", "default", false, ""}},
			{"controller", controller, access{"update", "coordination.k8s.io", "leases", "", lab.Namespace, true, ""}},
			{"controller", controller, access{"update", "coordination.k8s.io", "leases", "", "kube-system", false, ""}},
			{"controller", controller, access{"create", "berth.dev", "ippools", "", "", false, ""}},
		} {
			r, err := tc.c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: tc.a.verb, Group: tc.a.group, Resource: tc.a.resource, Subresource: tc.a.subresource, Namespace: tc.a.namespace,
					Name: tc.a.name,
				}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status.Allowed != tc.a.allowed {
				t.Errorf("%s may %s %s: %v, want %v (%s)", tc.who, tc.a.verb, describe(tc.a.group, tc.a.resource, tc.a.subresource, tc.a.namespace),
					r.Status.Allowed, tc.a.allowed, r.Status.Reason)
			}
		}
	})

	t.Run("a denied verb is refused", func(t *testing.T) {
		_, err := agent.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
		if err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("the agent listed Secrets in every namespace: err = %v", err)
		}
		err = controller.CoreV1().Nodes().Delete(ctx, cfg.NodeName(1), metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("the controller may delete a Node: err = %v", err)
		}
	})

	t.Run("demo without forbidden", func(t *testing.T) {
		// A demo that fails goes on to the logs, which may say why.
		out, err := l.Berthctl(ctx, "lab", "demo", "--name", l.Name)
		if err != nil {
			t.Errorf("lab demo: %v\n%s", err, out)
		} else {
			t.Logf("demo:\n%s", out)
		}
		pods, err := l.Client(t).CoreV1().Pods(lab.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component in (agent,controller)"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) < cfg.Nodes+1 {
			t.Fatalf("%d pods of the chart's agent and controller, want %d", len(pods.Items), cfg.Nodes+1)
		}
		for _, p := range pods.Items {
			log, err := l.Kubectl(ctx, "logs", "-n", lab.Namespace, p.Name, "--all-containers")
			if err != nil {
				t.Fatal(err)
			}
			lines := forbiddenLines(log)
			if len(lines) == 0 {
				continue
			}
			shown := lines[:min(len(lines), 20)]
			for i, line := range shown {
				if len(line) > 500 {
					shown[i] = line[:500] + "..."
				}
			}
			t.Errorf("pod %s's log has %d lines about forbidden requests; the first:\n%s", p.Name, len(lines), strings.Join(shown, "\n"))
		}
	})
}

func describe(group, resource, sub, ns string) string {
	s := resource
	if group != "" {
		s += "." + group
	}
	if sub != "" {
		s += "/" + sub
	}
	if ns == "" {
		return s + " cluster-wide"
	}
	return s + " in " + ns
}

// serviceAccountClient is a client with a token of the chart's
// ServiceAccount sa, minted through the TokenRequest API as the kubelet
// mints the token of the pods that run as sa.
func serviceAccountClient(ctx context.Context, t *testing.T, l *labtest.Lab, sa string) kubernetes.Interface {
	t.Helper()
	tok, err := l.Client(t).CoreV1().ServiceAccounts(lab.Namespace).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	rc := rest.AnonymousClientConfig(admin)
	rc.BearerToken = tok.Status.Token
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// forbiddenLines returns the lines of a component's log that report a
// request the API server refused (HTTP 403: "... is forbidden: User ...").
func forbiddenLines(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(strings.ToLower(line), "forbidden") {
			out = append(out, line)
		}
	}
	return out
}
