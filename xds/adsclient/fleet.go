package adsclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/xds/pki"
	"github.com/berthnet/berth/xds/provision"
	"github.com/berthnet/berth/xds/server"
)

// Fleet names the Envoy fleet of a node group: where its objects live.
type Fleet struct {
	Group           string
	Namespace, Name string
}

// GatewayFleet is the fleet of a Gateway, in the controller's namespace.
func GatewayFleet(controllerNamespace, namespace, name string) Fleet {
	return Fleet{Group: pki.GatewayGroup(namespace, name), Namespace: controllerNamespace, Name: provision.GatewayFleetName(namespace, name)}
}

// IngressFleet is the fleet of an IngressClass, in the controller's namespace.
func IngressFleet(controllerNamespace, class string) Fleet {
	return Fleet{Group: pki.IngressGroup(class), Namespace: controllerNamespace, Name: provision.ObjectName("ingress", class)}
}

// FetchFleet reads the fleet's xDS client certificate from its Secret (so
// the caller needs read access to it), connects to the xDS server at addr
// as an observer of the group, and returns what the group is served.
// serverName is the name the server's certificate must carry (default:
// addr's host). opts add to the connection's (e.g. a dialer that enters a
// node's network namespace, where the xDS Service's ClusterIP answers).
func FetchFleet(ctx context.Context, c client.Reader, f Fleet, addr, serverName string, opts ...grpc.DialOption) (Config, Versions, error) {
	var sec corev1.Secret
	key := types.NamespacedName{Namespace: f.Namespace, Name: provision.SecretName(f.Name)}
	if err := c.Get(ctx, key, &sec); err != nil {
		return nil, nil, fmt.Errorf("xDS client Secret %s of %s (has the controller provisioned it?): %w", key, f.Group, err)
	}
	cert, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, nil, fmt.Errorf("secret %s: %w", key, err)
	}
	roots, err := pki.DecodeCertsPEM(sec.Data["ca.crt"])
	if err != nil {
		return nil, nil, fmt.Errorf("secret %s: ca.crt: %w", key, err)
	}
	if serverName == "" {
		serverName = hostOf(addr)
	}
	conn, err := Dial(addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pki.Pool(roots...), ServerName: serverName, MinVersion: tls.VersionTLS13}, opts...)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	cl, err := Open(ctx, conn, &core.Node{Id: "berthctl", Cluster: f.Group, Metadata: server.ObserverMetadata()})
	if err != nil {
		return nil, nil, fmt.Errorf("xDS server %s: %w", addr, err)
	}
	defer cl.Close()
	cfg, versions, err := cl.Fetch(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("xDS server %s, group %s: %w", addr, f.Group, err)
	}
	return cfg, versions, nil
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
