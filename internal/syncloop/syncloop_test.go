package syncloop

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// Syncs happen at start, on triggers (coalesced), and again after a failure
// without any trigger; Run returns when its context ends.
func TestLoop(t *testing.T) {
	l := New()
	var calls, failures atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, time.Hour, 10*time.Millisecond, func(context.Context) error {
			if calls.Add(1) == 2 {
				return errors.New("boom")
			}
			return nil
		}, func(error) { failures.Add(1) })
	}()
	waitFor(t, func() bool { return calls.Load() >= 1 })
	l.Trigger()
	l.Trigger() // folds into the pending one or the next
	// Call 2 fails; the retry brings call 3 with no trigger.
	waitFor(t, func() bool { return calls.Load() >= 3 })
	if failures.Load() != 1 {
		t.Errorf("failures %d, want 1", failures.Load())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
