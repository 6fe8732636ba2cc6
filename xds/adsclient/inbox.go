package adsclient

import (
	"context"
	"fmt"
	"sync"
)

// inbox receives a stream's responses in the background and hands them
// out per type URL, in order: both clients read their stream through one.
type inbox[R interface{ GetTypeUrl() string }] struct {
	mu      sync.Mutex
	queues  map[string][]R
	arrived chan struct{} // closed and replaced on every response
	err     error         // the stream's end
}

func newInbox[R interface{ GetTypeUrl() string }]() *inbox[R] {
	return &inbox[R]{queues: map[string][]R{}, arrived: make(chan struct{})}
}

// receive reads recv until it fails; run it in its own goroutine.
func (in *inbox[R]) receive(recv func() (R, error)) {
	for {
		resp, err := recv()
		in.mu.Lock()
		if err != nil {
			in.err = err
		} else {
			in.queues[resp.GetTypeUrl()] = append(in.queues[resp.GetTypeUrl()], resp)
		}
		close(in.arrived)
		in.arrived = make(chan struct{})
		in.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// next returns the next response of a type, waiting until one comes, the
// stream ends, or ctx ends.
func (in *inbox[R]) next(ctx context.Context, typeURL string) (R, error) {
	var zero R
	for {
		in.mu.Lock()
		if q := in.queues[typeURL]; len(q) > 0 {
			in.queues[typeURL] = q[1:]
			in.mu.Unlock()
			return q[0], nil
		}
		if in.err != nil {
			err := in.err
			in.mu.Unlock()
			return zero, fmt.Errorf("stream ended: %w", err)
		}
		arrived := in.arrived
		in.mu.Unlock()
		select {
		case <-arrived:
		case <-ctx.Done():
			return zero, fmt.Errorf("waiting for %s: %w", typeURL, ctx.Err())
		}
	}
}
