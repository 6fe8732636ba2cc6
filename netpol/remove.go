package netpol

import (
	"context"

	"github.com/berthnet/berth/internal/nftrules"
)

// RemoveRules deletes NetworkPolicy's table (inet berth-netpol) from the
// calling thread's network namespace, for an uninstall: this node's pods
// are no longer isolated. It reports whether there was a table.
func RemoveRules(ctx context.Context) (bool, error) { return nftrules.RemoveTable(ctx, Table) }
