package lab

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/lab/netns"
)

// XDSEndpoint is where berthctl reaches the lab's xDS server: the berth-xds
// Service's ClusterIP, dialled from node1's network namespace (the host is
// not a node: Berth's service proxy is not on it), with the name the chart's
// server certificate carries.
func (c Config) XDSEndpoint(ctx context.Context) (addr, serverName string, opts []grpc.DialOption, done func(), err error) {
	client, err := AdminClient(c)
	if err != nil {
		return "", "", nil, nil, err
	}
	svc, err := client.CoreV1().Services(Namespace).Get(ctx, "berth-xds", metav1.GetOptions{})
	if err != nil {
		return "", "", nil, nil, fmt.Errorf("the xDS Service: %w", err)
	}
	if len(svc.Spec.Ports) == 0 {
		return "", "", nil, nil, fmt.Errorf("service %s/berth-xds has no port", Namespace)
	}
	ns, err := netns.Open(c.NodeNamespace(1))
	if err != nil {
		return "", "", nil, nil, err
	}
	dial := func(ctx context.Context, addr string) (conn net.Conn, err error) {
		err = ns.Do(func() error {
			var d net.Dialer
			conn, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return conn, err
	}
	addr = net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
	return addr, "berth-xds." + Namespace + ".svc", []grpc.DialOption{grpc.WithContextDialer(dial)}, func() { ns.Close() }, nil
}
