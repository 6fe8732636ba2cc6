package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/berthnet/berth/test/kubetest"
)

// uninstallEnv is a real API server with the agent's generated roles, the
// agents' namespace, and helpers to make a DaemonSet and a pod it owns.
type uninstallEnv struct {
	env   *kubetest.Env
	admin *kubernetes.Clientset
}

const agentNS = "berth-system" // the generated Role's namespace

func newUninstallEnv(t *testing.T) *uninstallEnv {
	t.Helper()
	env := kubetest.Start(t, kubetest.Options{})
	admin := kubernetes.NewForConfigOrDie(env.Config)
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubetest.Apply(t, env.Config, filepath.Join(root, "config/rbac/agent/role.yaml"))
	return &uninstallEnv{env: env, admin: admin}
}

// agent makes ServiceAccount name in the agents' namespace bound to the
// agent's ClusterRole and Role, as the chart does, and returns a client
// config with its token.
func (e *uninstallEnv) agent(t *testing.T, name string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	who := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: agentNS}
	if _, err := e.admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "berth-agent"},
		Subjects:   []rbacv1.Subject{who},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.RbacV1().RoleBindings(agentNS).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "berth-agent"},
		Subjects:   []rbacv1.Subject{who},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := saToken(ctx, t, e.admin, agentNS, name)
	return &rest.Config{Host: e.env.Config.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: e.env.Config.CAData}}
}

// daemonSet makes DaemonSet name and a pod it controls; it returns the pod.
func (e *uninstallEnv) daemonSet(t *testing.T, name string, finalizers ...string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	ds, err := e.admin.AppsV1().DaemonSets(agentNS).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: finalizers},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "berth-agent"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	pod, err := e.admin.CoreV1().Pods(agentNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-node1", Labels: labels, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "DaemonSet", Name: name, UID: ds.UID, Controller: &yes,
		}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "berth-agent"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func (e *uninstallEnv) deleteDS(t *testing.T, name string) {
	t.Helper()
	bg := metav1.DeletePropagationBackground // what helm uninstall asks for
	if err := e.admin.AppsV1().DaemonSets(agentNS).Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
}

func decide(t *testing.T, cfg *rest.Config, ds string, seen dsSeen) verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), decideTimeout)
	defer cancel()
	return decideUninstall(ctx, kubernetes.NewForConfigOrDie(cfg), selfRef{Namespace: agentNS, DaemonSet: ds, Pod: ds + "-node1"}, seen)
}

// TestUninstallDecision asks the question with the agent's own rights
// (its generated roles, through a ServiceAccount token) of a real API
// server, in each state its DaemonSet can be in when the agent is stopped.
func TestUninstallDecision(t *testing.T) {
	e := newUninstallEnv(t)
	agent := e.agent(t, "agent-decide")
	ctx := context.Background()

	// A rolling update or a restarted pod: the DaemonSet is there.
	e.daemonSet(t, "ds-present")
	if v := decide(t, agent, "ds-present", dsSeen{}); v.Uninstall || v.Unsure {
		t.Errorf("DaemonSet present: %+v, want keep", v)
	}

	// Deleted (helm uninstall, or kubectl delete ds).
	e.daemonSet(t, "ds-deleted")
	e.deleteDS(t, "ds-deleted")
	if v := decide(t, agent, "ds-deleted", dsSeen{}); !v.Uninstall {
		t.Errorf("DaemonSet deleted: %+v, want uninstall", v)
	}

	// Deleted and made again before this pod got its SIGTERM: the pod's
	// owner is the old one.
	e.daemonSet(t, "ds-again")
	e.deleteDS(t, "ds-again")
	if _, err := e.admin.AppsV1().DaemonSets(agentNS).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "ds-again"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "ds-again"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ds-again"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "berth-agent"}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := decide(t, agent, "ds-again", dsSeen{}); !v.Uninstall || !strings.Contains(v.Reason, "another one") {
		t.Errorf("DaemonSet made again with another UID: %+v, want uninstall", v)
	}

	// Being deleted: a finalizer holds it, with a deletionTimestamp.
	e.daemonSet(t, "ds-finalizing", "berth.dev/test-hold")
	e.deleteDS(t, "ds-finalizing")
	if v := decide(t, agent, "ds-finalizing", dsSeen{}); !v.Uninstall {
		t.Errorf("DaemonSet being deleted: %+v, want uninstall", v)
	}

	// The API server cannot be reached: keep, whatever the watch saw.
	down := rest.CopyConfig(agent)
	down.Host = "https://127.0.0.1:1"
	if v := decide(t, down, "ds-present", dsSeen{Synced: true, Gone: true}); v.Uninstall || !v.Unsure {
		t.Errorf("API unreachable: %+v, want keep (unsure)", v)
	}

	// No rights (a Role edited by hand) while the watch saw the
	// DaemonSet live: keep.
	_, nobody := e.env.User(t, "nobody")
	if v := decide(t, nobody, "ds-present", dsSeen{Synced: true, UID: "x"}); v.Uninstall || !v.Unsure {
		t.Errorf("forbidden, DaemonSet seen live: %+v, want keep (unsure)", v)
	}
}

// TestUninstallHelmOrder runs what helm uninstall does, in its order, to
// an agent that watches its DaemonSet: the DaemonSet is deleted (in the
// background), then the RoleBinding, Role, ClusterRoleBinding and
// ClusterRole, then the ServiceAccount, before the garbage collector's
// SIGTERM reaches the pod. The agent's reads are refused by then (401: its
// ServiceAccount is gone) and the decision rests on the watch: uninstall.
func TestUninstallHelmOrder(t *testing.T) {
	e := newUninstallEnv(t)
	const sa = "agent-helm"
	agent := e.agent(t, sa)
	ctx := context.Background()
	e.daemonSet(t, "berth-agent")
	w := newDSWatch()
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.run(wctx, kubernetes.NewForConfigOrDie(agent), agentNS, "berth-agent"); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		s := w.Seen()
		return s.Synced && s.UID != "", nil
	}); err != nil {
		t.Fatalf("the watch never saw the DaemonSet: %+v", w.Seen())
	}

	e.deleteDS(t, "berth-agent")
	rbac := e.admin.RbacV1()
	for _, del := range []func() error{
		func() error { return rbac.RoleBindings(agentNS).Delete(ctx, sa, metav1.DeleteOptions{}) },
		func() error { return rbac.Roles(agentNS).Delete(ctx, "berth-agent", metav1.DeleteOptions{}) },
		func() error { return rbac.ClusterRoleBindings().Delete(ctx, sa, metav1.DeleteOptions{}) },
		func() error { return rbac.ClusterRoles().Delete(ctx, "berth-agent", metav1.DeleteOptions{}) },
		func() error { return e.admin.CoreV1().ServiceAccounts(agentNS).Delete(ctx, sa, metav1.DeleteOptions{}) },
	} {
		if err := del(); err != nil {
			t.Fatal(err)
		}
	}
	// The path this test is about: the agent's own read is refused.
	var lastErr error
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, lastErr = kubernetes.NewForConfigOrDie(agent).AppsV1().DaemonSets(agentNS).Get(ctx, "berth-agent", metav1.GetOptions{})
		return apierrors.IsUnauthorized(lastErr), nil
	}); err != nil {
		t.Fatalf("the agent's token still works after its ServiceAccount went: %v", lastErr)
	}

	// As onStop: decide; a refused read waits for the watch.
	v := decide(t, agent, "berth-agent", w.Seen())
	if v.Unsure {
		v = decide(t, agent, "berth-agent", w.waitGone(ctx, watchGraceTime))
	}
	if !v.Uninstall || !strings.Contains(v.Reason, "the watch saw") {
		t.Errorf("after helm's uninstall order: %+v, want uninstall decided from the watch", v)
	}
}
