// Package syncloop runs a node component's reconcile: once at start, on
// every trigger from a watch, and every resync period, until its context
// ends. Triggers that arrive while a sync runs fold into one more sync.
package syncloop

import (
	"context"
	"time"
)

// Loop is a coalescing trigger plus the loop that serves it.
type Loop struct {
	trigger chan struct{}
}

// New returns a loop.
func New() *Loop { return &Loop{trigger: make(chan struct{}, 1)} }

// Trigger asks for a sync soon; it never blocks.
func (l *Loop) Trigger() {
	select {
	case l.trigger <- struct{}{}:
	default:
	}
}

// Run calls sync until ctx ends. After a failed sync it calls failed (for
// logs and metrics) and, when retry is set, triggers itself after retry.
func (l *Loop) Run(ctx context.Context, every, retry time.Duration, sync func(context.Context) error, failed func(error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := sync(ctx); err != nil {
			failed(err)
			if retry > 0 {
				time.AfterFunc(retry, l.Trigger)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.trigger:
		case <-t.C:
		}
	}
}
