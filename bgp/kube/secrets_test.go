package kube

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
)

// TestPasswordSecretsByName: the agents may read only the Secrets their
// Role names (resourceNames), as the chart makes it. With exactly that, a
// real API server and the runner's own reads: a peer whose Secret is named
// gets its password; a peer naming a Secret the agents may not read is left
// out and says which chart value to set; a named Secret that is not there
// says so; the other peers are not held up. Before, the runner listed the
// namespace's Secrets, which such a Role forbids, and every sync failed.
func TestPasswordSecretsByName(t *testing.T) {
	env, scheme, admin := apiServer(t)
	ctx := context.Background()
	agent := env.AgentClient(t, scheme) // user berth-agent-test, namespace berth-system made
	const ns = "berth-system"
	for _, o := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent-secrets-by-name"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"tor-md5", "gone"}, Verbs: []string{"get"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent-secrets-by-name"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "agent-secrets-by-name"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "berth-agent-test"}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tor-md5"}, Data: map[string][]byte{"password": []byte("s3cret")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "berth-xds-ca"}, Data: map[string][]byte{"password": []byte("the CA's key")}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}},
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64500, LocalASN: 64512,
			PasswordSecret: &v1alpha1.SecretKeyRef{Name: "tor-md5", Key: "password"}}},
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "sneaky"}, Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.2", PeerASN: 64500, LocalASN: 64512,
			PasswordSecret: &v1alpha1.SecretKeyRef{Name: "berth-xds-ca", Key: "password"}}},
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "missing"}, Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.3", PeerASN: 64500, LocalASN: 64512,
			PasswordSecret: &v1alpha1.SecretKeyRef{Name: "gone", Key: "password"}}},
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.4", PeerASN: 64500, LocalASN: 64512}},
	} {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// The Role is what the agent has: it cannot list the namespace.
	if err := agent.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
		t.Fatalf("the agent listing the Secrets of %s: %v, want Forbidden", ns, err)
	}

	speaker := bgp.NewSpeaker(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { speaker.Shutdown(context.Background()) })
	r := NewRunner("node1", ns, agent, speaker, testr.New(t))
	// The runner's own reader of Secrets, on a clock the test moves, with
	// the API server's answers counted.
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reads := &countingReader{Reader: agent}
	r.passwords = &passwordSecrets{reader: reads, ttl: 30 * time.Second, now: func() time.Time { return clock }}
	built, err := r.build(ctx)
	if err != nil {
		t.Fatalf("build with the agent's rights: %v", err)
	}
	passwords := map[string]string{}
	for _, p := range built.Plan.Peers {
		passwords[p.Name] = p.Password
	}
	if d := cmp.Diff(map[string]string{"tor": "s3cret", "plain": ""}, passwords); d != "" {
		t.Errorf("peers in the plan and their passwords (-want +got):\n%s", d)
	}
	wantProblems := map[string]string{
		"BGPPeer sneaky":  `password Secret "berth-xds-ca": the agents may not read it (their Role names each Secret they read): add it to the chart value agent.extraSecretNames`,
		"BGPPeer missing": `password Secret "gone" not found in the agents' namespace`,
	}
	if d := cmp.Diff(wantProblems, built.Problems); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
	// And the peer's status says it, as this node's Configured condition.
	w := &StatusWriter{Node: "node1", Client: agent, Log: testr.New(t)}
	w.Write(ctx, nil, built.PeerProblems())
	var sneaky v1alpha1.BGPPeer
	if err := admin.Get(ctx, client.ObjectKey{Name: "sneaky"}, &sneaky); err != nil {
		t.Fatal(err)
	}
	var got *metav1.Condition
	for _, n := range sneaky.Status.Nodes {
		if n.Node == "node1" {
			got = meta.FindStatusCondition(n.Conditions, v1alpha1.BGPConditionConfigured)
		}
	}
	if got == nil || got.Status != metav1.ConditionFalse || got.Reason != "PasswordSecretForbidden" || got.Message != wantProblems["BGPPeer sneaky"] {
		t.Errorf("BGPPeer sneaky's Configured condition on node1: %+v", got)
	}

	// Each Secret is read once per 30 s, not at every rebuild (every
	// Service or EndpointSlice change): three names, three reads.
	password := func() string {
		t.Helper()
		b, err := r.build(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range b.Plan.Peers {
			if p.Name == "tor" {
				return p.Password
			}
		}
		t.Fatalf("tor not in the plan: %v", b.Problems)
		return ""
	}
	if n := reads.gets; n != 3 {
		t.Errorf("%d reads of Secrets for three names, want 3", n)
	}
	var md5 corev1.Secret
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "tor-md5"}, &md5); err != nil {
		t.Fatal(err)
	}
	md5.Data["password"] = []byte("n3w")
	if err := admin.Update(ctx, &md5); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(29 * time.Second)
	if got := password(); got != "s3cret" || reads.gets != 3 {
		t.Errorf("29 s later: password %q after %d reads, want the kept s3cret after 3", got, reads.gets)
	}
	clock = clock.Add(time.Second)
	if got := password(); got != "n3w" || reads.gets != 6 {
		t.Errorf("30 s later: password %q after %d reads, want n3w after 6", got, reads.gets)
	}
	// A peer that names a Secret already read shares that read.
	var plain v1alpha1.BGPPeer
	if err := admin.Get(ctx, client.ObjectKey{Name: "plain"}, &plain); err != nil {
		t.Fatal(err)
	}
	plain.Spec.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "tor-md5", Key: "password"}
	if err := admin.Update(ctx, &plain); err != nil {
		t.Fatal(err)
	}
	// (The runner reads peers from the API server here, not a cache.)
	b, err := r.build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shared := false
	for _, p := range b.Plan.Peers {
		shared = shared || (p.Name == "plain" && p.Password == "n3w")
	}
	if !shared {
		t.Errorf("peer plain naming tor-md5: not in the plan with its password (problems %v)", b.Problems)
	}
	if reads.gets != 6 {
		t.Errorf("%d reads after a peer named a Secret already read, want still 6", reads.gets)
	}
}

// countingReader counts the reads of single objects it passes on.
type countingReader struct {
	client.Reader
	gets int
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets++
	return c.Reader.Get(ctx, key, obj, opts...)
}
