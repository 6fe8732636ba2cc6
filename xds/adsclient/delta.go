package adsclient

import (
	"context"
	"errors"
	"fmt"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// DeltaClient is one incremental (delta) ADS stream of one node, as Envoy
// holds it with the bootstrap Berth renders (xds/bootstrap): a response
// carries only the resources that changed (and the names of those
// removed), not every resource of its type.
type DeltaClient struct {
	stream grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
	node   *core.Node
	cancel context.CancelFunc

	in       *inbox[*discovery.DeltaDiscoveryResponse]
	sendMu   sync.Mutex
	nodeSent bool
}

// OpenDelta starts a delta ADS stream for node on conn. Close ends it.
func OpenDelta(ctx context.Context, conn grpc.ClientConnInterface, node *core.Node) (*DeltaClient, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &DeltaClient{stream: stream, node: node, cancel: cancel, in: newInbox[*discovery.DeltaDiscoveryResponse]()}
	go c.in.receive(stream.Recv)
	return c, nil
}

// Close ends the stream.
func (c *DeltaClient) Close() { c.cancel() }

// Subscribe asks for resources of a type by name; no names subscribes to
// all of them (the wildcard, for listeners and clusters).
func (c *DeltaClient) Subscribe(typeURL string, names ...string) error {
	return c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names})
}

// Next returns the next response of a type, waiting until one comes, the
// stream ends, or ctx ends.
func (c *DeltaClient) Next(ctx context.Context, typeURL string) (*discovery.DeltaDiscoveryResponse, error) {
	return c.in.next(ctx, typeURL)
}

// Ack accepts a response, as Envoy does once it applied it.
func (c *DeltaClient) Ack(resp *discovery.DeltaDiscoveryResponse) error {
	return c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce})
}

// Nack rejects a response with Envoy's kind of error text.
func (c *DeltaClient) Nack(resp *discovery.DeltaDiscoveryResponse, message string) error {
	return c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce,
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: message}})
}

func (c *DeltaClient) send(req *discovery.DeltaDiscoveryRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	// The node goes on the first request only, as Envoy sends it by default.
	if !c.nodeSent {
		req.Node = c.node
	}
	if err := c.stream.Send(req); err != nil {
		return errors.Join(fmt.Errorf("send %s delta request", req.TypeUrl), err)
	}
	c.nodeSent = true
	return nil
}
