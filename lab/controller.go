package lab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/berthnet/berth/config"
)

// The lab runs berth-controller on the host as the chart's ServiceAccount
// with the chart's roles (rbac.go), and Berth's CRDs installed from the same
// generated manifests.

// berthNamespace is where the controller holds its leader lease.
const berthNamespace = `
apiVersion: v1
kind: Namespace
metadata:
  name: berth-system
`

// kubectl runs the lab's kubectl as cluster admin, with stdin.
func (c Config) kubectl(ctx context.Context, stdin []byte, args ...string) error {
	cmd := childCommand(ctx, c.bin("kubectl"), append([]string{"--kubeconfig", c.AdminKubeconfig()}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := runChild(cmd)
	if err != nil {
		return fmt.Errorf("kubectl %v: %v: %s", args, err, out)
	}
	return nil
}

// installBerth applies Berth's CRDs, the Gateway API CRDs Berth serves and
// the components' ServiceAccounts and RBAC.
func (c Config) installBerth(ctx context.Context) error {
	rbac, err := RBACManifests()
	if err != nil {
		return err
	}
	manifests := bytes.Join([][]byte{[]byte(berthNamespace), config.IPPoolCRD, config.L2AnnouncementCRD, config.BGPPeerCRD, config.BGPAnnouncementCRD, config.GatewayAPIManifests(), rbac}, []byte("\n---\n"))
	if err := c.kubectl(ctx, manifests, "apply", "--server-side", "--field-manager=berth-lab", "-f", "-"); err != nil {
		return err
	}
	return c.kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/ippools.berth.dev", "crd/l2announcements.berth.dev",
		"crd/bgppeers.berth.dev", "crd/bgpannouncements.berth.dev", "crd/gateways.gateway.networking.k8s.io", "crd/httproutes.gateway.networking.k8s.io",
		"crd/grpcroutes.gateway.networking.k8s.io", "crd/referencegrants.gateway.networking.k8s.io", "crd/gatewayclasses.gateway.networking.k8s.io")
}

func (c Config) controllerSpec(p Ports) procSpec {
	return procSpec{name: "berth-controller", path: filepath.Join(c.BerthBinDir, "berth-controller"), args: []string{
		"--kubeconfig=" + c.kubeconfig("controller"),
		"--leader-election-namespace=berth-system",
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(p.ControllerMetrics),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(p.ControllerProbe),
		"--service-cidrs=" + c.ServiceCIDR.String() + "," + c.ServiceCIDR6.String(),
		"--cluster-cidrs=" + c.ClusterCIDR.String() + "," + c.ClusterCIDR6.String(),
		"--namespace=berth-system",
		"--xds-bind-address=" + c.XDSAddress(p),
		"--xds-address=" + c.XDSAddress(p),
		"--xds-server-names=" + c.HostLAN().String() + ",127.0.0.1",
	}}
}

// XDSAddress is where the lab's xDS server listens and the Envoys of its
// Gateways would dial: the host's LAN address, reachable from every node.
func (c Config) XDSAddress(p Ports) string {
	return net.JoinHostPort(c.HostLAN().String(), strconv.Itoa(p.ControllerXDS))
}

func controllerReady(p Ports) func(context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		return getOK(ctx, client, "http://127.0.0.1:"+strconv.Itoa(p.ControllerProbe)+"/readyz", "ok")
	}
}
