package proxy

import (
	"github.com/google/nftables"

	"github.com/berthnet/berth/internal/nftrules"
)

// Backend applies transactions to the berth-proxy table: the kernel
// (NewNetlink) or, in tests, nftrules.Fake.
type Backend = nftrules.Backend

// Tx is one transaction on the table, as data.
type Tx = nftrules.Tx

// Netlink is the kernel backend.
type Netlink = nftrules.Netlink

// NewNetlink returns the kernel backend for the berth-proxy table in the
// network namespace of the calling thread (or the one opts name).
func NewNetlink(opts ...nftables.ConnOption) (*Netlink, error) {
	return nftrules.NewNetlink(Table, opts...)
}
