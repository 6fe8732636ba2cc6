package controllers_test

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// updateObject reads obj afresh, applies mutate and writes it back, again
// while the write conflicts: the controllers under test write status, and
// every status write moves the object's resourceVersion, so an update made
// from an earlier read can lose that race at any time.
func updateObject(t testing.TB, ctx context.Context, c client.Client, obj client.Object, mutate func()) {
	t.Helper()
	for range 20 {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatalf("update %T %s: %v", obj, obj.GetName(), err)
		}
		mutate()
		err := c.Update(ctx, obj)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatalf("update %T %s: %v", obj, obj.GetName(), err)
		}
	}
	t.Fatalf("update %T %s: still conflicting after 20 reads", obj, obj.GetName())
}
