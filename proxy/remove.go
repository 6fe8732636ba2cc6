package proxy

import (
	"context"

	"github.com/berthnet/berth/internal/nftrules"
)

// RemoveRules deletes the service proxy's table (inet berth-proxy) from
// the calling thread's network namespace, for an uninstall: Services stop
// answering on this node. The conntrack entries of flows already open are
// the kernel's and age out. It reports whether there was a table.
func RemoveRules(ctx context.Context) (bool, error) { return nftrules.RemoveTable(ctx, Table) }
