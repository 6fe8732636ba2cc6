package server

import (
	"context"
	"fmt"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// callbacks are the go-control-plane server hooks: they admit a stream only for the group
// its client certificate names, and turn requests into ACKs and NACKs for Status.
type callbacks struct {
	s     *Server
	serve uint32 // which Serve call: each numbers its streams from 1
}

var (
	_ sotwv3.Callbacks  = callbacks{}
	_ deltav3.Callbacks = callbacks{}
)

// Refusal reasons, the values of the refused_streams_total metric's reason label.
const (
	refusedCertificate = "certificate"
	refusedNoNode      = "no_node"
	refusedGroup       = "group_mismatch"
	refusedNodeChanged = "node_changed"
	refusedUnknownType = "unknown_type"
	refusedNodeSize    = "node_too_large"
)

// maxQuoted bounds what a refusal quotes of a client's own input (a type URL), in the
// status sent back and in the log.
const maxQuoted = 128

func quoted(s string) string {
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q... (%d bytes)", s[:maxQuoted], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// refuse counts and logs a refused stream and returns the status that ends it.
func (c callbacks) refuse(code codes.Code, reason, msg string) error {
	c.s.metrics.refused.WithLabelValues(reason).Inc()
	c.s.log.Info("xDS stream refused", "reason", reason, "error", msg)
	return status.Errorf(code, "xDS stream refused: %s", msg)
}

// servedType refuses a subscription to a type the server does not serve: go-control-plane
// would keep it, request and all, as a watch never answered.
func (c callbacks) servedType(typeURL string) error {
	if knownType(typeURL) {
		return nil
	}
	return c.refuse(codes.InvalidArgument, refusedUnknownType, fmt.Sprintf("type %s is not served by Berth", quoted(typeURL)))
}

func (c callbacks) open(ctx context.Context, key streamKey) error {
	group, err := peerGroup(ctx)
	if err != nil {
		c.s.metrics.refused.WithLabelValues(refusedCertificate).Inc()
		c.s.log.Info("xDS stream refused", "reason", refusedCertificate, "error", err.Error())
		return status.Errorf(codes.PermissionDenied, "xDS stream refused: %v", err)
	}
	t := c.s.tracker
	t.mu.Lock()
	t.streams[key] = &stream{certGroup: group, sent: map[string]map[string]string{}, acked: map[string]string{}, kept: map[string]int{}}
	t.mu.Unlock()
	return nil
}

func (c callbacks) closed(key streamKey) {
	t := c.s.tracker
	t.mu.Lock()
	st := t.streams[key]
	delete(t.streams, key)
	if st != nil && st.counted {
		t.markChangedLocked(st.cluster)
	}
	t.mu.Unlock()
	if st == nil {
		return
	}
	if st.counted {
		c.s.metrics.streams.WithLabelValues(protocol(key)).Dec()
	}
	bytes := 0
	for _, n := range st.kept {
		bytes += n
	}
	c.s.metrics.subs.Sub(float64(len(st.kept)))
	c.s.metrics.subBytes.Sub(float64(bytes))
}

// keep records the size of the request kept for a stream's subscription to a type,
// once slimmed: it replaces the one kept before for the same type.
func (c callbacks) keep(key streamKey, typeURL string, size int) {
	t := c.s.tracker
	t.mu.Lock()
	st := t.streams[key]
	if st == nil {
		t.mu.Unlock()
		return
	}
	prev, had := st.kept[typeURL]
	st.kept[typeURL] = size
	t.mu.Unlock()
	if !had {
		c.s.metrics.subs.Inc()
	}
	c.s.metrics.subBytes.Add(float64(size - prev))
}

// admit checks a request's node against the stream's certificate. The first request
// names the node; a later one may repeat it but not change it.
func (c callbacks) admit(key streamKey, node *core.Node) error {
	t := c.s.tracker
	t.mu.Lock()
	st := t.streams[key]
	if st == nil {
		t.mu.Unlock()
		return status.Error(codes.Internal, "xDS stream not opened")
	}
	reason, msg := "", ""
	switch {
	case !st.counted && node == nil:
		reason, msg = refusedNoNode, "the first request carries no node"
	case !st.counted && nodeBytes(node) > c.s.limits.MaxNodeBytes:
		t.mu.Unlock()
		return c.refuse(codes.InvalidArgument, refusedNodeSize, fmt.Sprintf("the node's id, cluster and metadata are %d bytes, more than the %d allowed (--xds-max-node-bytes)",
			nodeBytes(node), c.s.limits.MaxNodeBytes))
	case !st.counted && node.GetCluster() != st.certGroup:
		reason, msg = refusedGroup, fmt.Sprintf("node %q asks for group %q (node.cluster), but its client certificate is for group %q",
			node.GetId(), node.GetCluster(), st.certGroup)
	case st.counted && node != nil && (node.GetCluster() != st.cluster || node.GetId() != st.nodeID):
		reason, msg = refusedNodeChanged, fmt.Sprintf("node %q of group %q became node %s of group %s within one stream",
			st.nodeID, st.cluster, quoted(node.GetId()), quoted(node.GetCluster()))
	}
	if reason != "" {
		t.mu.Unlock()
		return c.refuse(codes.PermissionDenied, reason, msg)
	}
	first := !st.counted
	if first {
		st.counted, st.nodeID, st.cluster = true, node.GetId(), node.GetCluster()
		st.observer = IsObserver(node)
		t.markChangedLocked(st.cluster)
	}
	t.mu.Unlock()
	if first {
		c.s.metrics.streams.WithLabelValues(protocol(key)).Inc()
	}
	return nil
}

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, streamKey{serve: c.serve, id: id})
}

func (c callbacks) OnStreamClosed(id int64, _ *core.Node) {
	c.closed(streamKey{serve: c.serve, id: id})
}

func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	key := streamKey{serve: c.serve, id: id}
	if err := c.servedType(req.GetTypeUrl()); err != nil {
		return err
	}
	if err := c.admit(key, req.GetNode()); err != nil {
		return err
	}
	var msg *string
	if req.GetErrorDetail() != nil {
		m := req.GetErrorDetail().GetMessage()
		msg = &m
	}
	version := req.GetVersionInfo()
	a, rejected := c.s.tracker.request(key, req.GetTypeUrl(), req.GetResponseNonce(), &version, msg, time.Now())
	if a == nack {
		c.s.metrics.nacks.WithLabelValues(shortType(req.GetTypeUrl())).Inc()
		// The cache answers at once any request whose version differs from the snapshot's,
		// so a NACK (which carries the last accepted version) would get the rejected
		// configuration straight back, again and again. Saying the client is at the rejected
		// version parks the watch until a new version is set.
		req.VersionInfo = rejected
	}
	slimRequest(req)
	c.keep(key, req.GetTypeUrl(), proto.Size(req))
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.s.tracker.sentResponse(streamKey{serve: c.serve, id: id}, req.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
	c.s.metrics.pushes.WithLabelValues(shortType(req.GetTypeUrl())).Inc()
}

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, streamKey{serve: c.serve, delta: true, id: id})
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *core.Node) {
	c.closed(streamKey{serve: c.serve, delta: true, id: id})
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	key := streamKey{serve: c.serve, delta: true, id: id}
	if err := c.servedType(req.GetTypeUrl()); err != nil {
		return err
	}
	if err := c.admit(key, req.GetNode()); err != nil {
		return err
	}
	var msg *string
	if req.GetErrorDetail() != nil {
		m := req.GetErrorDetail().GetMessage()
		msg = &m
	}
	if a, _ := c.s.tracker.request(key, req.GetTypeUrl(), req.GetResponseNonce(), nil, msg, time.Now()); a == nack {
		c.s.metrics.nacks.WithLabelValues(shortType(req.GetTypeUrl())).Inc()
	}
	slimDeltaRequest(req)
	c.keep(key, req.GetTypeUrl(), proto.Size(req))
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.s.tracker.sentResponse(streamKey{serve: c.serve, delta: true, id: id}, req.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
	c.s.metrics.pushes.WithLabelValues(shortType(req.GetTypeUrl())).Inc()
}

func protocol(key streamKey) string {
	if key.delta {
		return "delta"
	}
	return "sotw"
}
