package server

import (
	"errors"
	"fmt"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Default limits: what one holder of a fleet certificate can make the server hold.
const (
	// DefaultMaxRecvMsgBytes is gRPC's own default: an Envoy's EDS request naming
	// thousands of clusters is a few hundred KiB.
	DefaultMaxRecvMsgBytes = 4 << 20
	// DefaultMaxStreamsPerConn: an Envoy holds one ADS stream per connection; berthctl a few.
	DefaultMaxStreamsPerConn = 8
	// DefaultMaxNodeBytes bounds a node's id, cluster and metadata. Berth's Envoys send
	// their pod name, their group and no metadata: well under 1 KiB.
	DefaultMaxNodeBytes = 16 << 10
	// DefaultMaxConnsPerGroup is per fleet: each Envoy replica holds one connection.
	DefaultMaxConnsPerGroup = 64
	// DefaultMaxConnAge makes every Envoy reconnect, so it presents its current client
	// certificate, at least this often.
	DefaultMaxConnAge = 30 * time.Minute
	// DefaultMaxConnAgeGrace is how long a connection past its age may finish its streams
	// before it is closed. ADS streams never finish on their own: this is the time Envoy
	// has to open its new connection first.
	DefaultMaxConnAgeGrace = time.Minute
)

// Limits bound what a client can make the server hold. A zero field takes its default.
type Limits struct {
	// MaxRecvMsgBytes is the largest request a client may send; a larger one ends its
	// stream with ResourceExhausted.
	MaxRecvMsgBytes int
	// MaxStreamsPerConn is HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS: clients queue
	// further streams, and the server resets those that do not.
	MaxStreamsPerConn uint32
	// MaxNodeBytes bounds the encoded size of a node's id, cluster and metadata; a stream
	// whose node is larger is refused with InvalidArgument.
	MaxNodeBytes int
	// MaxConnsPerGroup bounds the open connections of the client certificates of one node
	// group; a connection over it is closed right after its handshake.
	MaxConnsPerGroup int
	// MaxConnAge and MaxConnAgeGrace: a connection is sent GOAWAY at its age (with gRPC's
	// jitter of ±10%) and closed after the grace.
	MaxConnAge      time.Duration
	MaxConnAgeGrace time.Duration
}

// withDefaults returns l with every zero field set to its default, or an error naming a
// negative one.
func (l Limits) withDefaults() (Limits, error) {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxRecvMsgBytes", int64(l.MaxRecvMsgBytes)},
		{"MaxNodeBytes", int64(l.MaxNodeBytes)},
		{"MaxConnsPerGroup", int64(l.MaxConnsPerGroup)},
		{"MaxConnAge", int64(l.MaxConnAge)},
		{"MaxConnAgeGrace", int64(l.MaxConnAgeGrace)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("xds limits: %s is negative (%d); zero takes the default", f.name, f.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return l, err
	}
	set := func(p *int, def int) {
		if *p == 0 {
			*p = def
		}
	}
	set(&l.MaxRecvMsgBytes, DefaultMaxRecvMsgBytes)
	set(&l.MaxNodeBytes, DefaultMaxNodeBytes)
	set(&l.MaxConnsPerGroup, DefaultMaxConnsPerGroup)
	if l.MaxStreamsPerConn == 0 {
		l.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if l.MaxConnAge == 0 {
		l.MaxConnAge = DefaultMaxConnAge
	}
	if l.MaxConnAgeGrace == 0 {
		l.MaxConnAgeGrace = DefaultMaxConnAgeGrace
	}
	return l, nil
}

// knownType reports whether the server can serve a type URL: those the snapshot cache
// knows, which are those Set accepts. A subscription to any other is refused rather
// than kept as a watch that will never be answered.
func knownType(typeURL string) bool {
	return cachev3.GetResponseType(typeURL) != types.UnknownType
}

// nodeBytes is the size of what identifies a node and what it says of itself: its id,
// cluster and metadata. Other fields (Envoy's build, extensions, features) are dropped
// unread (slimNode), so they count only towards the message size.
func nodeBytes(n *core.Node) int {
	return len(n.GetId()) + len(n.GetCluster()) + proto.Size(n.GetMetadata())
}

// slimNode keeps a node's id and cluster only, in place: go-control-plane keeps the
// first node of every stream (and of every group, in the cache) for the stream's life,
// through the same pointer. A slim node is left alone: it may be that first node, given
// again to a request that carried none, and read by the cache meanwhile.
func slimNode(n *core.Node) {
	if n == nil || isSlim(n) {
		return
	}
	id, cluster := n.GetId(), n.GetCluster()
	proto.Reset(n)
	n.Id, n.Cluster = id, cluster
}

// isSlim reports whether a node holds nothing but its id and cluster.
func isSlim(n *core.Node) bool {
	m := n.ProtoReflect()
	if len(m.GetUnknown()) > 0 {
		return false
	}
	slim := true
	m.Range(func(f protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if name := f.Name(); name != "id" && name != "cluster" {
			slim = false
		}
		return slim
	})
	return slim
}

// slimRequest drops from a state-of-the-world request, in place, what go-control-plane
// would keep with its watch but never reads: the node beyond its identity, the NACK's
// error detail (read before), resource locators and unknown fields. What remains is the
// subscription itself: type, version, nonce and resource names.
func slimRequest(r *discovery.DiscoveryRequest) {
	slimNode(r.Node)
	r.ErrorDetail = nil
	r.ResourceLocators = nil
	r.ProtoReflect().SetUnknown(nil)
}

// slimDeltaRequest is slimRequest for delta xDS: it keeps the type, nonce, the names
// subscribed and unsubscribed and the initial versions.
func slimDeltaRequest(r *discovery.DeltaDiscoveryRequest) {
	slimNode(r.Node)
	r.ErrorDetail = nil
	r.ResourceLocatorsSubscribe = nil
	r.ResourceLocatorsUnsubscribe = nil
	r.ProtoReflect().SetUnknown(nil)
}
