package controllers_test

import (
	"context"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/test/kubetest"
)

// controllerConfig returns a client config that authenticates as the
// controller's ServiceAccount (berth-system/berth-controller) holding the
// chart's roles (charts/berth/files/rbac/controller.yaml, the chart's copy
// of config/rbac/controller), bound as the chart binds them.
func controllerConfig(t *testing.T, env *kubetest.Env) *rest.Config {
	t.Helper()
	admin, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kubetest.Apply(t, env.Config, filepath.Join("..", "charts", "berth", "files", "rbac", "controller.yaml"))
	sa := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "berth-controller", Namespace: "berth-system"}}
	ctx := context.Background()
	for _, b := range []client.Object{
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "berth-controller"}, Subjects: sa,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "berth-controller"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: "berth-controller"}, Subjects: sa,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "berth-controller"}},
	} {
		if err := admin.Create(ctx, b); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	_, cfg := env.User(t, "system:serviceaccount:berth-system:berth-controller", "system:serviceaccounts", "system:serviceaccounts:berth-system")
	return cfg
}
