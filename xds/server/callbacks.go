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
)

func (c callbacks) open(ctx context.Context, key streamKey) error {
	group, err := peerGroup(ctx)
	if err != nil {
		c.s.metrics.refused.WithLabelValues(refusedCertificate).Inc()
		c.s.log.Info("xDS stream refused", "reason", refusedCertificate, "error", err.Error())
		return status.Errorf(codes.PermissionDenied, "xDS stream refused: %v", err)
	}
	t := c.s.tracker
	t.mu.Lock()
	t.streams[key] = &stream{certGroup: group, sent: map[string]map[string]string{}, acked: map[string]string{}}
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
	if st != nil && st.counted {
		c.s.metrics.streams.WithLabelValues(protocol(key)).Dec()
	}
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
	case !st.counted && node.GetCluster() != st.certGroup:
		reason, msg = refusedGroup, fmt.Sprintf("node %q asks for group %q (node.cluster), but its client certificate is for group %q",
			node.GetId(), node.GetCluster(), st.certGroup)
	case st.counted && node != nil && (node.GetCluster() != st.cluster || node.GetId() != st.nodeID):
		reason, msg = refusedNodeChanged, fmt.Sprintf("node %q of group %q became node %q of group %q within one stream",
			st.nodeID, st.cluster, node.GetId(), node.GetCluster())
	}
	if reason != "" {
		t.mu.Unlock()
		c.s.metrics.refused.WithLabelValues(reason).Inc()
		c.s.log.Info("xDS stream refused", "reason", reason, "error", msg)
		return status.Errorf(codes.PermissionDenied, "xDS stream refused: %s", msg)
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
