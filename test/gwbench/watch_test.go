package gwbench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// apiWatch is a plain watch on every object of one kind, as the
// controller's informer holds it: the baseline of a change's latency is
// the time from the write until this watch delivers it.
type apiWatch struct {
	c    client.WithWatch
	list func() client.ObjectList

	mu      sync.Mutex
	seen    map[string]time.Time // resourceVersion -> arrival
	objects map[string]client.Object
	arrived chan struct{} // closed and replaced on every event
	err     error
}

// startWatch watches every object of the list's kind from now on, until
// the benchmark ends.
func startWatch(b *testing.B, c client.WithWatch, list func() client.ObjectList) *apiWatch {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &apiWatch{c: c, list: list, seen: map[string]time.Time{}, objects: map[string]client.Object{}, arrived: make(chan struct{})}
	l := list()
	if err := c.List(ctx, l, client.Limit(1)); err != nil {
		cancel()
		b.Fatal(err)
	}
	rv := l.(metav1.ListInterface).GetResourceVersion()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, rv)
	}()
	b.Cleanup(func() { cancel(); <-done })
	return w
}

// run watches from rv, and again from the last event when the API server
// ends the watch (it does after a while).
func (w *apiWatch) run(ctx context.Context, rv string) {
	for ctx.Err() == nil {
		wi, err := w.c.Watch(ctx, w.list(), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			w.fail(err)
			return
		}
		for ev := range wi.ResultChan() {
			at := time.Now()
			if ev.Type == watch.Error {
				wi.Stop()
				w.fail(fmt.Errorf("watch error: %v", ev.Object))
				return
			}
			o, ok := ev.Object.(client.Object)
			if !ok {
				continue
			}
			rv = o.GetResourceVersion()
			if ev.Type == watch.Bookmark {
				continue
			}
			w.mu.Lock()
			w.seen[rv] = at
			w.objects[o.GetNamespace()+"/"+o.GetName()] = o
			close(w.arrived)
			w.arrived = make(chan struct{})
			w.mu.Unlock()
		}
		wi.Stop()
	}
}

func (w *apiWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
	close(w.arrived)
	w.arrived = make(chan struct{})
}

// at waits until the event of resourceVersion rv has arrived and returns
// when it did.
func (w *apiWatch) at(ctx context.Context, rv string) (time.Time, error) {
	return waitFor(ctx, w, func() (time.Time, bool) {
		t, ok := w.seen[rv]
		return t, ok
	})
}

// until waits until f, called under the lock with the latest object of
// each name, says yes.
func (w *apiWatch) until(ctx context.Context, f func(map[string]client.Object) bool) error {
	_, err := waitFor(ctx, w, func() (time.Time, bool) { return time.Time{}, f(w.objects) })
	return err
}

func waitFor(ctx context.Context, w *apiWatch, f func() (time.Time, bool)) (time.Time, error) {
	for {
		w.mu.Lock()
		t, ok := f()
		err, arrived := w.err, w.arrived
		w.mu.Unlock()
		if ok {
			return t, nil
		}
		if err != nil {
			return time.Time{}, err
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}
