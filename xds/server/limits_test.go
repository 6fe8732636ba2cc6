package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// madeUpType is a type URL no xDS server serves.
func madeUpType(i int) string { return fmt.Sprintf("type.googleapis.com/example.made.up.v%d.Thing", i) }

// sotwStream opens a raw state-of-the-world ADS stream on a new connection for certGroup.
func (e *env) sotwStream(certGroup string) discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	e.t.Helper()
	conn, _ := e.dial(certGroup)
	str, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return str
}

// refusedWith receives on a stream until it ends, and checks it ended with code and a
// message containing each of want.
func refusedWith[R any](t *testing.T, what string, recv func() (R, error), code codes.Code, want ...string) {
	t.Helper()
	for {
		_, err := within(t, what, recv)
		if err == nil {
			continue // a response sent before the refusal
		}
		if status.Code(err) != code {
			t.Errorf("%s: %v, want %s", what, err, code)
			return
		}
		for _, w := range want {
			if !strings.Contains(status.Convert(err).Message(), w) {
				t.Errorf("%s: %q does not say %q", what, status.Convert(err).Message(), w)
			}
		}
		return
	}
}

// kept is what the server says it keeps for the subscriptions of open streams, and what
// go-control-plane's cache holds for group: its watches and the node it remembers.
type kept struct {
	subs, bytes   float64
	watches       int
	cacheNodeSize int
}

func (e *env) kept(group string) kept {
	k := kept{
		subs:  testutil.ToFloat64(e.srv.metrics.subs),
		bytes: testutil.ToFloat64(e.srv.metrics.subBytes),
	}
	if info := e.srv.cache.GetStatusInfo(group); info != nil {
		k.watches = info.GetNumWatches() + info.GetNumDeltaWatches()
		k.cacheNodeSize = proto.Size(info.GetNode())
	}
	return k
}

// TestUnknownTypeRefused: a subscription to a type Berth does not serve ends the stream
// with InvalidArgument, over state of the world and delta, and is counted.
func TestUnknownTypeRefused(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.Set(context.Background(), groupA, "a1", config{prefix: "a", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	str := e.sotwStream(groupA)
	if err := str.Send(&discovery.DiscoveryRequest{Node: node("envoy-1", groupA), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := within(t, "clusters", str.Recv); err != nil {
		t.Fatal(err)
	}
	if err := str.Send(&discovery.DiscoveryRequest{TypeUrl: madeUpType(1)}); err != nil {
		t.Fatal(err)
	}
	refusedWith(t, "sotw made-up type", str.Recv, codes.InvalidArgument, madeUpType(1), "not served")

	d := e.delta(groupA, "envoy-2", groupA)
	d.subscribe(madeUpType(2))
	refusedWith(t, "delta made-up type", d.stream.Recv, codes.InvalidArgument, madeUpType(2), "not served")

	// A type URL of megabytes is quoted in part only.
	long := e.sotwStream(groupA)
	huge := "type.googleapis.com/" + strings.Repeat("x", 1<<20)
	if err := long.Send(&discovery.DiscoveryRequest{Node: node("envoy-3", groupA), TypeUrl: huge}); err != nil {
		t.Fatal(err)
	}
	_, err := within(t, "huge type", long.Recv)
	if status.Code(err) != codes.InvalidArgument || len(status.Convert(err).Message()) > 1024 {
		t.Errorf("huge type URL: %s with a message of %d bytes, want InvalidArgument quoting at most 1 KiB", status.Code(err), len(status.Convert(err).Message()))
	}
	if got := testutil.ToFloat64(e.srv.metrics.refused.WithLabelValues(refusedUnknownType)); got != 3 {
		t.Errorf("refused unknown_type %v, want 3", got)
	}
}

// TestUnknownTypesKeepNothing is the reproduction: requests of 512 KiB to
// made-up type URLs, which the server used to keep each as a watch with its whole
// request (200 of them grew the heap by 100 MiB). Now the first ends its stream, and the
// server keeps nothing of any of them.
func TestUnknownTypesKeepNothing(t *testing.T) {
	const requests, streams, size = 200, 50, 512 << 10
	e := newEnv(t)
	if err := e.srv.Set(context.Background(), groupA, "a1", config{prefix: "a", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	names := []string{strings.Repeat("n", size)}

	// As the issue did: one admitted stream, then made-up types one after another.
	str := e.sotwStream(groupA)
	if err := str.Send(&discovery.DiscoveryRequest{Node: node("envoy-1", groupA), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := within(t, "clusters", str.Recv); err != nil {
		t.Fatal(err)
	}
	for i := range requests {
		err := str.Send(&discovery.DiscoveryRequest{TypeUrl: madeUpType(i), ResourceNames: names})
		if errors.Is(err, io.EOF) {
			break // the server ended the stream
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	refusedWith(t, "made-up types on one stream", str.Recv, codes.InvalidArgument, "not served")

	// And one stream per request, on one connection.
	conn, _ := e.dial(groupA)
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	for i := range streams {
		s, err := ads.StreamAggregatedResources(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&discovery.DiscoveryRequest{Node: node("envoy-2", groupA), TypeUrl: madeUpType(i), ResourceNames: names}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		refusedWith(t, "made-up type", s.Recv, codes.InvalidArgument, "not served")
	}
	if got := testutil.ToFloat64(e.srv.metrics.refused.WithLabelValues(refusedUnknownType)); got != streams+1 {
		t.Errorf("refused unknown_type %v, want %d (the first of the single stream, then one per stream)", got, streams+1)
	}
	e.waitStatus(groupA, "every stream closed", func(s GroupStatus) bool { return len(s.Nodes) == 0 })
	if k := e.kept(groupA); k.subs != 0 || k.bytes != 0 || k.watches != 0 {
		t.Errorf("after the streams ended the server keeps %+v, want no subscription, no byte, no watch", k)
	}
}

// TestKeptRequestIsSlim: of an admitted request, the server keeps the subscription, not
// the padding a client may add to it (node fields, error detail, unknown fields).
func TestKeptRequestIsSlim(t *testing.T) {
	e, p, n := paddedClient(t)
	n.ClientFeatures = []string{p}
	req := &discovery.DiscoveryRequest{Node: n, TypeUrl: resource.ClusterType}
	req.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 1000, protowire.BytesType), []byte(p)))
	str := e.sotwStream(groupA)
	if err := str.Send(req); err != nil {
		t.Fatal(err)
	}
	r, err := within(t, "clusters", str.Recv)
	if err != nil {
		t.Fatal(err)
	}
	// A NACK whose error detail is half a megabyte.
	nack := &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r.GetNonce(), ErrorDetail: &rpcstatus.Status{Code: 3, Message: p}}
	if err := str.Send(nack); err != nil {
		t.Fatal(err)
	}
	st := e.waitStatus(groupA, "the NACK", func(s GroupStatus) bool { return s.LastNACK != nil })
	if got := len(st.LastNACK.Message); got != maxNACKMessage {
		t.Errorf("NACK message kept: %d bytes, want %d", got, maxNACKMessage)
	}
	// One subscription (clusters); its request holds a type URL, a version, a nonce and
	// the node's id and group: about 100 bytes.
	// The NACK's request replaces the watch: wait for the new one.
	var k kept
	eventually(t, "the watch after the NACK", func() bool { k = e.kept(groupA); return k.watches == 1 })
	if k.subs != 1 || k.bytes > 512 || k.bytes == 0 {
		t.Errorf("kept %v subscriptions of %v bytes, want 1 of at most 512", k.subs, k.bytes)
	}
	if k.watches != 1 || k.cacheNodeSize > 256 {
		t.Errorf("the cache holds %d watches and a node of %d bytes, want 1 watch and the node's id and group", k.watches, k.cacheNodeSize)
	}
}

// TestKeptDeltaRequestIsSlim is TestKeptRequestIsSlim over delta xDS.
func TestKeptDeltaRequestIsSlim(t *testing.T) {
	e, p, n := paddedClient(t)
	req := &discovery.DeltaDiscoveryRequest{Node: n, TypeUrl: resource.ClusterType,
		ResourceLocatorsSubscribe: []*discovery.ResourceLocator{{Name: p}}}
	req.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 1000, protowire.BytesType), []byte(p)))
	d := e.delta(groupA, "unused", groupA)
	d.node = true // the request carries its own node
	d.send(req)
	r := d.recv()
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r.GetNonce(), ErrorDetail: &rpcstatus.Status{Code: 3, Message: p}})
	e.waitStatus(groupA, "the NACK", func(s GroupStatus) bool { return s.LastNACK != nil })
	var k kept
	eventually(t, "the watch after the NACK", func() bool { k = e.kept(groupA); return k.watches == 1 })
	if k.subs != 1 || k.bytes > 512 || k.bytes == 0 {
		t.Errorf("kept %v subscriptions of %v bytes, want 1 of at most 512", k.subs, k.bytes)
	}
	if k.cacheNodeSize > 256 {
		t.Errorf("the cache holds a node of %d bytes, want the node's id and group", k.cacheNodeSize)
	}
}

// TestNodeSizeBounded: a node whose metadata is larger than the bound (16 KiB by
// default) is refused; one under it is served.
func TestNodeSizeBounded(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.Set(context.Background(), groupA, "a1", config{prefix: "a", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	withMetadata := func(id string, bytes int) *core.Node {
		n := node(id, groupA)
		n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{"pad": structpb.NewStringValue(strings.Repeat("m", bytes))}}
		return n
	}
	big := e.sotwStream(groupA)
	if err := big.Send(&discovery.DiscoveryRequest{Node: withMetadata("envoy-big", 20<<10), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	refusedWith(t, "20 KiB of metadata", big.Recv, codes.InvalidArgument, "--xds-max-node-bytes")

	d := e.delta(groupA, "unused", groupA)
	d.node = true // sends its own node below
	d.send(&discovery.DeltaDiscoveryRequest{Node: withMetadata("envoy-big-delta", 20<<10), TypeUrl: resource.ClusterType})
	refusedWith(t, "20 KiB of metadata over delta", d.stream.Recv, codes.InvalidArgument, "--xds-max-node-bytes")

	small := e.sotwStream(groupA)
	if err := small.Send(&discovery.DiscoveryRequest{Node: withMetadata("envoy-small", 8<<10), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := within(t, "8 KiB of metadata", small.Recv); err != nil {
		t.Errorf("8 KiB of metadata: %v, want served", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.refused.WithLabelValues(refusedNodeSize)); got != 2 {
		t.Errorf("refused node_too_large %v, want 2", got)
	}
}

// TestMaxRecvMsgSize: a request over the bound ends its stream with ResourceExhausted.
func TestMaxRecvMsgSize(t *testing.T) {
	e := newEnvLimits(t, Limits{MaxRecvMsgBytes: 64 << 10})
	if err := e.srv.Set(context.Background(), groupA, "a1", config{prefix: "a", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	big := e.sotwStream(groupA)
	if err := big.Send(&discovery.DiscoveryRequest{Node: node("envoy-1", groupA), TypeUrl: resource.EndpointType, ResourceNames: []string{strings.Repeat("c", 100<<10)}}); err != nil {
		t.Fatal(err)
	}
	refusedWith(t, "100 KiB request", big.Recv, codes.ResourceExhausted)

	small := e.sotwStream(groupA)
	req := &discovery.DiscoveryRequest{Node: node("envoy-2", groupA), TypeUrl: resource.ClusterType}
	req.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 1000, protowire.BytesType), make([]byte, 32<<10)))
	if err := small.Send(req); err != nil {
		t.Fatal(err)
	}
	if _, err := within(t, "32 KiB request", small.Recv); err != nil {
		t.Errorf("32 KiB request: %v, want served", err)
	}
	if _, err := New(Options{Credentials: serverCreds(t, e.ca), Limits: Limits{MaxConnsPerGroup: -1}}); err == nil || !strings.Contains(err.Error(), "MaxConnsPerGroup") {
		t.Errorf("a negative limit: %v, want an error naming it", err)
	}
}

// paddedClient serves group A a configuration and returns the server, half
// a megabyte of padding, and a node of group A padded with it where a
// client may add what it likes.
func paddedClient(t *testing.T) (*env, string, *core.Node) {
	t.Helper()
	e := newEnv(t)
	if err := e.srv.Set(context.Background(), groupA, "a1", config{prefix: "a", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	p := strings.Repeat("p", 512<<10)
	n := node("envoy-1", groupA)
	n.UserAgentName = p
	n.Extensions = []*core.Extension{{Name: p}}
	return e, p, n
}
