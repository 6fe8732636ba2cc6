package controllers

import (
	"context"
	"fmt"
	"sync/atomic"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// kindList is the last list of one kind translation reads, listed again
// only after an event of that kind: a route change lists the routes, not
// also thousands of Services, Secrets and Namespaces that did not move.
// Listing copies every object of the kind into a new slice, and at 5,000
// routes that was a fifth of what a route change allocated.
type kindList struct {
	list  client.ObjectList
	new   func() client.ObjectList
	stale atomic.Bool
}

func newKindList(newList func() client.ObjectList) *kindList {
	k := &kindList{new: newList}
	k.stale.Store(true)
	return k
}

// changed marks the list stale; informers call handlers after updating
// their cache, so the next get lists what the event said.
func (k *kindList) changed() { k.stale.Store(true) }

// get returns the list, listed again if stale. The objects are the
// cache's own (read only, as translation uses them).
func (k *kindList) get(ctx context.Context, c client.Reader) (client.ObjectList, error) {
	if !k.stale.Swap(false) {
		return k.list, nil
	}
	l := k.new()
	if err := c.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
		k.stale.Store(true)
		return nil, fmt.Errorf("list %T: %w", l, err)
	}
	k.list = l
	return l, nil
}
