package chart_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/test/kubetest"
)

// installed is a real API server with the chart's CRDs and, as the chart
// renders them for the settings, its ServiceAccounts, roles, bindings and
// admission policies: what decides what Berth's components may do.
type installed struct {
	env    *kubetest.Env
	admin  client.Client
	scheme *runtime.Scheme
	ctx    context.Context
}

// accessKinds are the rendered kinds that grant or refuse access.
var accessKinds = []string{"ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}

// install starts the API server and creates the chart's access objects in
// it, rendered with sets.
func install(t *testing.T, sets ...string) *installed {
	t.Helper()
	env := kubetest.Start(t, kubetest.Options{CRDPaths: []string{filepath.Join(chartDir(t), "crds")}})
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := client.New(env.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	in := &installed{env: env, admin: admin, scheme: s, ctx: context.Background()}
	in.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})
	objs := mustRender(t, sets...)
	for _, kind := range accessKinds {
		for _, o := range objs.ofKind(kind) {
			in.create(t, o.DeepCopy())
		}
	}
	return in
}

func (in *installed) create(t testing.TB, o client.Object) {
	t.Helper()
	if err := in.admin.Create(in.ctx, o); err != nil {
		t.Fatalf("create %T %s: %v", o, o.GetName(), err)
	}
}

// serviceAccount is the user name a ServiceAccount of the release's
// namespace authenticates as.
func serviceAccount(name string) string {
	return fmt.Sprintf("system:serviceaccount:%s:%s", namespace, name)
}

// as is a client acting as the ServiceAccount (by impersonation, with the
// groups its tokens carry): what a pod running as it may do.
func (in *installed) as(t testing.TB, sa string) client.Client {
	t.Helper()
	return in.asOnNode(t, sa, "")
}

// asOnNode is as, with the token of a pod on node (the kubelet's pod-bound
// tokens name the pod's node); "" for none.
func (in *installed) asOnNode(t testing.TB, sa, node string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(in.env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: serviceAccount(sa),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	if node != "" {
		cfg.Impersonate.Extra = map[string][]string{"authentication.kubernetes.io/node-name": {node}}
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: in.scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually retries f until it returns nil, failing the test with its
// last error after a deadline.
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
