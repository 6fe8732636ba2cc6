package gwbench

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/xds/adsclient"
	"github.com/berthnet/berth/xds/benchgen"
	"github.com/berthnet/berth/xds/pki"
	"github.com/berthnet/berth/xds/provision"
)

// group is the node cluster of the benchmark Gateway's Envoys.
const group = "gateway/" + benchgen.GatewayNamespace + "/" + benchgen.GatewayName

// envoy is one ADS stream playing an Envoy of the benchmark Gateway.
type envoy struct {
	c *adsclient.Client
}

// fleetTLS waits for the fleet Secret the controller writes into its
// namespace and returns a client TLS config with its certificate.
func fleetTLS(ctx context.Context, c *cluster, serverName string) (*tls.Config, error) {
	var sec corev1.Secret
	key := client.ObjectKey{Namespace: controllerNS, Name: provision.SecretName(provision.GatewayFleetName(benchgen.GatewayNamespace, benchgen.GatewayName))}
	for {
		err := c.c.Get(ctx, key, &sec)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fleet Secret %s: %w (last: %v)", key, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cert, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"])
	if err != nil {
		return nil, err
	}
	roots, err := pki.DecodeCertsPEM(sec.Data["ca.crt"])
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pki.Pool(roots...), ServerName: serverName, MinVersion: tls.VersionTLS13}, nil
}

// connect opens an ADS stream to addr as Envoy node id of the benchmark
// Gateway, retrying until the server accepts it (it listens once it has
// its certificate), and takes the configuration as an Envoy would. It
// returns once the stream holds every route of n; the time is when the
// response that completed it arrived.
func connect(ctx context.Context, b *testing.B, addr string, cfg *tls.Config, id string, n int) (*envoy, time.Time, error) {
	conn, err := adsclient.Dial(addr, cfg)
	if err != nil {
		return nil, time.Time{}, err
	}
	b.Cleanup(func() { _ = conn.Close() })
	var (
		c    *adsclient.Client
		full adsclient.Config
		at   time.Time
	)
	for {
		c, err = adsclient.Open(ctx, conn, &core.Node{Id: id, Cluster: group})
		if err == nil {
			full, _, err = c.Fetch(ctx)
			at = time.Now()
			if err == nil {
				break
			}
			c.Close()
		}
		select {
		case <-ctx.Done():
			return nil, time.Time{}, fmt.Errorf("ADS stream: %w (last: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.Cleanup(c.Close)
	e := &envoy{c: c}
	have := countHosts(full[resourcev3.RouteType])
	for have < n {
		// A translation that started before every route was in the cache:
		// wait for the one that has them.
		resp, got, err := e.next(ctx, resourcev3.RouteType)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("%d of %d routes: %w", have, n, err)
		}
		at = got
		have = countHosts(resp)
	}
	return e, at, nil
}

// countHosts counts the virtual hosts of route configurations: one per
// HTTPRoute hostname here.
func countHosts(msgs []proto.Message) int {
	n := 0
	for _, m := range msgs {
		n += len(m.(*routev3.RouteConfiguration).GetVirtualHosts())
	}
	return n
}

// next waits for the next response of a type, ACKs it and returns its
// resources with the time it arrived.
func (e *envoy) next(ctx context.Context, typeURL string) ([]proto.Message, time.Time, error) {
	resp, err := e.c.Next(ctx, typeURL)
	at := time.Now()
	if err != nil {
		return nil, at, err
	}
	msgs, err := decode(resp)
	if err != nil {
		return nil, at, err
	}
	return msgs, at, e.c.Ack(resp)
}

func decode(resp *discovery.DiscoveryResponse) ([]proto.Message, error) {
	out := make([]proto.Message, 0, len(resp.Resources))
	for _, a := range resp.Resources {
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", resp.TypeUrl, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// waitPath waits for the RouteConfiguration in which host has a route
// matching exactly path, and returns when it arrived.
func (e *envoy) waitPath(ctx context.Context, host, path string) (time.Time, error) {
	for {
		msgs, at, err := e.next(ctx, resourcev3.RouteType)
		if err != nil {
			return at, fmt.Errorf("route %s%s: %w", host, path, err)
		}
		for _, m := range msgs {
			for _, vh := range m.(*routev3.RouteConfiguration).GetVirtualHosts() {
				if vh.GetName() != host {
					continue
				}
				for _, r := range vh.GetRoutes() {
					if r.GetMatch().GetPath() == path {
						return at, nil
					}
				}
			}
		}
	}
}

// waitEndpoint waits for the ClusterLoadAssignments holding addr, and
// returns when they arrived.
func (e *envoy) waitEndpoint(ctx context.Context, addr string) (time.Time, error) {
	for {
		msgs, at, err := e.next(ctx, resourcev3.EndpointType)
		if err != nil {
			return at, fmt.Errorf("endpoint %s: %w", addr, err)
		}
		for _, m := range msgs {
			for _, l := range m.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
				for _, ep := range l.GetLbEndpoints() {
					if ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress() == addr {
						return at, nil
					}
				}
			}
		}
	}
}

// drain ACKs what the stream has received and nobody read, so the server
// sends the next version of every type at once and a wait sees only what
// came after.
func (e *envoy) drain() error {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, t := range adsclient.Order {
		for {
			resp, err := e.c.Next(done, t)
			if err != nil {
				break // nothing queued (or the stream ended: the next wait says so)
			}
			if err := e.c.Ack(resp); err != nil {
				return err
			}
		}
	}
	return nil
}

// deltaEnvoy is one delta ADS stream playing an Envoy of the benchmark
// Gateway, as real Envoys connect (xds/bootstrap): only EDS is followed.
type deltaEnvoy struct {
	c *adsclient.DeltaClient
}

// connectDelta opens a delta stream to addr as Envoy node id, subscribes
// to every cluster and to the endpoints of all of them, as Envoy does,
// and returns once it holds the n assignments.
func connectDelta(ctx context.Context, b *testing.B, addr string, cfg *tls.Config, id string, n int) (*deltaEnvoy, error) {
	conn, err := adsclient.Dial(addr, cfg)
	if err != nil {
		return nil, err
	}
	b.Cleanup(func() { _ = conn.Close() })
	c, err := adsclient.OpenDelta(ctx, conn, &core.Node{Id: id, Cluster: group})
	if err != nil {
		return nil, err
	}
	b.Cleanup(c.Close)
	if err := c.Subscribe(resourcev3.ClusterType); err != nil {
		return nil, err
	}
	var names []string
	for len(names) < n {
		resp, err := c.Next(ctx, resourcev3.ClusterType)
		if err != nil {
			return nil, fmt.Errorf("delta CDS: %w", err)
		}
		for _, r := range resp.Resources {
			names = append(names, r.Name)
		}
		if err := c.Ack(resp); err != nil {
			return nil, err
		}
	}
	if err := c.Subscribe(resourcev3.EndpointType, names...); err != nil {
		return nil, err
	}
	for have := map[string]bool{}; len(have) < len(names); {
		resp, err := c.Next(ctx, resourcev3.EndpointType)
		if err != nil {
			return nil, fmt.Errorf("delta EDS, %d of %d: %w", len(have), len(names), err)
		}
		for _, r := range resp.Resources {
			have[r.Name] = true
		}
		if err := c.Ack(resp); err != nil {
			return nil, err
		}
	}
	return &deltaEnvoy{c: c}, nil
}

// waitEndpoint waits for the ClusterLoadAssignment holding addr, ACKing
// what comes before, and returns when it arrived.
func (d *deltaEnvoy) waitEndpoint(ctx context.Context, addr string) (time.Time, error) {
	for {
		resp, err := d.c.Next(ctx, resourcev3.EndpointType)
		at := time.Now()
		if err != nil {
			return at, fmt.Errorf("delta endpoint %s: %w", addr, err)
		}
		if err := d.c.Ack(resp); err != nil {
			return at, err
		}
		for _, r := range resp.Resources {
			m, err := r.GetResource().UnmarshalNew()
			if err != nil {
				return at, err
			}
			for _, l := range m.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
				for _, ep := range l.GetLbEndpoints() {
					if ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress() == addr {
						return at, nil
					}
				}
			}
		}
	}
}
