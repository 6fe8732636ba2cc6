package nftrules

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// RemoveTable deletes the inet table named table, with everything in it,
// from the calling thread's network namespace: how a component that owns
// one table leaves the node when Berth is uninstalled. A table that is not
// there is no error, so a second call is a no-op; it reports whether it
// removed one.
func RemoveTable(ctx context.Context, table string) (bool, error) {
	n, err := NewNetlink(table)
	if err != nil {
		return false, err
	}
	defer n.Close()
	exists, err := n.TableExists(ctx)
	if err != nil || !exists {
		return false, err
	}
	tx := NewTx(table)
	tx.DeleteTable()
	if err := n.Apply(ctx, tx); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil // gone between the two messages
		}
		return false, fmt.Errorf("delete table inet %s: %w", table, err)
	}
	return true, nil
}
