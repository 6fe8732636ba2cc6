package controllers_test

import (
	"context"
	"sync"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// runManager starts mgr until ctx ends, stop is called or the test ends,
// whichever comes first, and fails the test if it stops with an error.
// stop returns once the manager has stopped; calling it again does nothing.
func runManager(t testing.TB, ctx context.Context, mgr manager.Manager) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return stop
}
