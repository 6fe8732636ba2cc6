// Package adsclient is an xDS client over one aggregated (ADS,
// state-of-the-world) stream, as an Envoy holds it: it subscribes to
// resource types, receives responses per type, and ACKs or NACKs each.
// berthctl uses it to print what a node group is served; tests use it to
// play the Envoy.
package adsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
)

// envoyWindow is Envoy's default HTTP/2 flow-control window, of a stream
// and of a connection (Http2ProtocolOptions initial_stream_window_size and
// initial_connection_window_size: 256 MiB), which the xDS cluster of
// Berth's bootstrap leaves as it is.
const envoyWindow = 256 << 20

// Dial connects to an xDS server with mutual TLS, receiving as Envoy does:
// with gRPC's default 64 KiB windows, a RouteConfiguration of megabytes
// would come in a window update at a time.
func Dial(addr string, cfg *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithInitialWindowSize(envoyWindow), grpc.WithInitialConnWindowSize(envoyWindow)}, opts...)...)
}

// Client is one ADS stream of one node.
type Client struct {
	stream grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	node   *core.Node
	cancel context.CancelFunc

	in     *inbox[*discovery.DiscoveryResponse]
	mu     sync.Mutex
	names  map[string][]string
	sendMu sync.Mutex
}

// Open starts an ADS stream for node on conn. Close ends it.
func Open(ctx context.Context, conn grpc.ClientConnInterface, node *core.Node) (*Client, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &Client{stream: stream, node: node, cancel: cancel, in: newInbox[*discovery.DiscoveryResponse](), names: map[string][]string{}}
	go c.in.receive(stream.Recv)
	return c, nil
}

// Close ends the stream.
func (c *Client) Close() { c.cancel() }

// Subscribe asks for resources of a type: names, or all of them (nil) for
// the wildcard types (listeners, clusters).
func (c *Client) Subscribe(typeURL string, names []string) error {
	c.mu.Lock()
	c.names[typeURL] = names
	c.mu.Unlock()
	return c.send(&discovery.DiscoveryRequest{Node: c.node, TypeUrl: typeURL, ResourceNames: names})
}

// Next returns the next response of a type, waiting until one comes, the
// stream ends, or ctx ends.
func (c *Client) Next(ctx context.Context, typeURL string) (*discovery.DiscoveryResponse, error) {
	return c.in.next(ctx, typeURL)
}

// Ack accepts a response, as Envoy does once it applied it.
func (c *Client) Ack(resp *discovery.DiscoveryResponse) error {
	c.mu.Lock()
	names := c.names[resp.TypeUrl]
	c.mu.Unlock()
	return c.send(&discovery.DiscoveryRequest{Node: c.node, TypeUrl: resp.TypeUrl, VersionInfo: resp.VersionInfo,
		ResponseNonce: resp.Nonce, ResourceNames: names})
}

// Nack rejects a response with Envoy's kind of error text; the version
// stays the last accepted one (prev, "" for none).
func (c *Client) Nack(resp *discovery.DiscoveryResponse, prev, message string) error {
	c.mu.Lock()
	names := c.names[resp.TypeUrl]
	c.mu.Unlock()
	return c.send(&discovery.DiscoveryRequest{Node: c.node, TypeUrl: resp.TypeUrl, VersionInfo: prev,
		ResponseNonce: resp.Nonce, ResourceNames: names,
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: message}})
}

func (c *Client) send(req *discovery.DiscoveryRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := c.stream.Send(req); err != nil {
		return errors.Join(fmt.Errorf("send %s request", req.TypeUrl), err)
	}
	return nil
}
