package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The control plane runs on the host: etcd and the controller manager's and
// scheduler's health ports on loopback, kube-apiserver on the host's LAN
// address so the node namespaces reach it.

func (c Config) bin(name string) string { return filepath.Join(c.K8sBinDir, name) }

// checkBinaries says what to run when the Kubernetes binaries are missing.
func (c Config) checkBinaries() error {
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} {
		if _, err := os.Stat(c.bin(b)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make test-deps` to build the control plane, or pass --k8s-bin-dir", b, c.K8sBinDir)
		}
	}
	return nil
}

// agentReady asks node i's agent (host network, the chart's health port)
// for readiness over the LAN.
func (c Config) agentReady(i int) func(context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		return getOK(ctx, client, "http://"+net.JoinHostPort(c.NodeAddr(i).String(), "9191")+"/readyz", "ok")
	}
}

func (c Config) etcdSpec(p Ports) procSpec {
	client := "http://127.0.0.1:" + strconv.Itoa(p.Etcd)
	peer := "http://127.0.0.1:" + strconv.Itoa(p.EtcdPeer)
	return procSpec{name: "etcd", path: c.bin("etcd"), args: []string{
		"--name=" + c.Name,
		"--data-dir=" + filepath.Join(c.StateDir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=" + c.Name + "=" + peer,
		"--listen-metrics-urls=",
		"--log-level=warn",
	}}
}

func (c Config) apiServerSpec(p Ports) procSpec {
	return procSpec{name: "kube-apiserver", path: c.bin("kube-apiserver"), args: []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(p.Etcd),
		"--bind-address=" + c.HostLAN().String(),
		"--advertise-address=" + c.HostLAN().String(),
		"--secure-port=" + strconv.Itoa(p.APIServer),
		"--cert-dir=" + filepath.Join(c.StateDir, "apiserver"),
		"--tls-cert-file=" + c.pki("apiserver.crt"),
		"--tls-private-key-file=" + c.pki("apiserver.key"),
		"--client-ca-file=" + c.pki("ca.crt"),
		"--service-account-key-file=" + c.pki("sa.pub"),
		"--service-account-signing-key-file=" + c.pki("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=" + c.ServiceCIDR.String() + "," + c.ServiceCIDR6.String(),
		"--kubelet-client-certificate=" + c.pki(kubeletClientCert+".crt"),
		"--kubelet-client-key=" + c.pki(kubeletClientCert+".key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}}
}

// clientComponentArgs are the flags the controller manager and the scheduler
// share: their kubeconfig, and health served on a loopback port.
func (c Config) clientComponentArgs(name string, port int) []string {
	return []string{
		"--kubeconfig=" + c.kubeconfig(name),
		"--authentication-kubeconfig=" + c.kubeconfig(name),
		"--authorization-kubeconfig=" + c.kubeconfig(name),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.StateDir, name),
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	}
}

func (c Config) controllerManagerSpec(p Ports) procSpec {
	return procSpec{name: "kube-controller-manager", path: c.bin("kube-controller-manager"), args: append(
		c.clientComponentArgs("controller-manager", p.ControllerManager),
		"--allocate-node-cidrs=true",
		// Dual-stack: a podCIDR of each family for every node.
		"--cluster-cidr="+c.ClusterCIDR.String()+","+c.ClusterCIDR6.String(),
		"--node-cidr-mask-size-ipv4="+strconv.Itoa(c.NodeCIDRMaskSize),
		"--node-cidr-mask-size-ipv6="+strconv.Itoa(c.NodeCIDRMaskSize6),
		"--service-cluster-ip-range="+c.ServiceCIDR.String()+","+c.ServiceCIDR6.String(),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+c.pki("sa.key"),
		"--root-ca-file="+c.pki("ca.crt"),
		"--cluster-signing-cert-file="+c.pki("ca.crt"),
		"--cluster-signing-key-file="+c.pki("ca.key"),
		"--controllers=*",
	)}
}

func (c Config) schedulerSpec(p Ports) procSpec {
	return procSpec{name: "kube-scheduler", path: c.bin("kube-scheduler"), args: c.clientComponentArgs("scheduler", p.Scheduler)}
}

// writePKI issues the CA, the API server's serving certificate, the client
// certificates of the admin, the controller manager, the scheduler and each
// node, the service-account key, and a kubeconfig for each client.
func (c Config) writePKI(p Ports) error {
	if err := os.MkdirAll(c.pkiDir(), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(c.kubeconfigDir(), 0o700); err != nil {
		return err
	}
	authority, err := newCA(c.pkiDir(), "berth-lab-"+c.Name+"-ca")
	if err != nil {
		return err
	}
	specs := []certSpec{
		{file: "apiserver", cn: "kube-apiserver", server: true,
			ips: []net.IP{net.IP(c.HostLAN().AsSlice()), net.IP(c.FirstServiceIP().AsSlice())},
			dns: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{file: "admin", cn: "berth-lab-admin", orgs: []string{"system:masters"}},
		{file: "controller-manager", cn: "system:kube-controller-manager"},
		{file: "scheduler", cn: "system:kube-scheduler"},
		// The API server's client certificate for the kubelets (logs, exec,
		// port-forward), bound to system:kubelet-api-admin, as kubeadm's
		// apiserver-kubelet-client.
		{file: kubeletClientCert, cn: kubeletClientUser},
	}
	for i := 1; i <= c.Nodes; i++ {
		specs = append(specs, certSpec{file: c.NodeName(i), cn: "system:node:" + c.NodeName(i), orgs: []string{"system:nodes"}})
	}
	for _, s := range specs {
		if err := authority.issue(c.pkiDir(), s); err != nil {
			return err
		}
	}
	if err := writeServiceAccountKey(c.pkiDir()); err != nil {
		return err
	}
	server := c.APIServerURL(p.APIServer)
	for _, s := range specs[1:] {
		if err := c.writeKubeconfig(s.file, s.file, server); err != nil {
			return err
		}
	}
	return nil
}

// httpsClient trusts the lab CA and, when cert is set, presents that client
// certificate. With insecure set it accepts any serving certificate: the
// controller manager and scheduler serve health on self-signed ones.
func (c Config) httpsClient(cert string, insecure bool) (*http.Client, error) {
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(c.pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool.AppendCertsFromPEM(caPEM)
	tc := &tls.Config{RootCAs: pool, InsecureSkipVerify: insecure} //nolint:gosec // loopback health ports with self-signed certificates
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(c.pki(cert+".crt"), c.pki(cert+".key"))
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}, nil
}

// getOK fetches url and wants a 200 whose body contains want.
func getOK(ctx context.Context, client *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// healthChecks returns the check for each control-plane component by name.
func (c Config) healthChecks(p Ports) (map[string]func(context.Context) error, error) {
	admin, err := c.httpsClient("admin", false)
	if err != nil {
		return nil, err
	}
	self, err := c.httpsClient("", true)
	if err != nil {
		return nil, err
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	checks := map[string]func(context.Context) error{
		"etcd": func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(p.Etcd)+"/health", nil)
			if err != nil {
				return err
			}
			resp, err := plain.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var h struct {
				Health string `json:"health"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
				return err
			}
			if h.Health != "true" {
				return fmt.Errorf("etcd reports health %q", h.Health)
			}
			return nil
		},
		"kube-apiserver": func(ctx context.Context) error {
			return getOK(ctx, admin, c.APIServerURL(p.APIServer)+"/readyz", "ok")
		},
		"kube-controller-manager": func(ctx context.Context) error {
			return getOK(ctx, self, "https://127.0.0.1:"+strconv.Itoa(p.ControllerManager)+"/healthz", "ok")
		},
		"kube-scheduler": func(ctx context.Context) error {
			return getOK(ctx, self, "https://127.0.0.1:"+strconv.Itoa(p.Scheduler)+"/healthz", "ok")
		},
	}
	return checks, nil
}
