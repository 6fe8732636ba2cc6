package privilege_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthnet/berth/test/netnstest"
)

// TestAgentCapabilities runs berth-agent, after `berth-agent init`, with
// exactly the chart's capabilities and then with each of them taken away.
// With NET_ADMIN and NET_RAW it is ready and has done its work: the pod
// bridge with the node's gateway address, the CNI plugin and config
// installed, the nftables tables of the pod network, service proxy and
// NetworkPolicy, and ARP answered for the Service's address on the LAN.
// Without NET_RAW the pod network still works but layer 2 fails with
// "operation not permitted"; without NET_ADMIN the pod network fails so,
// and no bridge or table is made. Without `berth-agent init` first, it
// fails on IPv4 forwarding, which it may not set.
func TestAgentCapabilities(t *testing.T) {
	r := newRig(t)

	t.Run("NET_ADMIN and NET_RAW", func(t *testing.T) {
		n := r.newNode(t, "priv-full", "10.244.1.0/24")
		r.initKernel(t, n)
		r.startAgent(t, n, chartCaps)
		waitFor(t, n, "agent ready", func() (bool, string) {
			code, body, err := readyz(n)
			if err != nil {
				return false, err.Error()
			}
			return code == http.StatusOK, body + "\n" + n.agentLog()
		})
		if got := bridgeAddrs(n); !slices.Equal(got, []string{"10.244.1.1/24"}) {
			t.Errorf("berth0 addresses %v, want [10.244.1.1/24]", got)
		}
		for _, f := range []string{filepath.Join(n.conf, "10-berth.conflist"), filepath.Join(n.bin, "berth-cni")} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("CNI install: %v", err)
			}
		}
		tabs := tables(t, n)
		for _, want := range []string{"table inet berth-podnet", "table inet berth-proxy", "table inet berth-netpol"} {
			if !strings.Contains(tabs, want) {
				t.Errorf("nft lists %q, want %q among them", tabs, want)
			}
		}
		waitFor(t, n, "ARP answered for "+lbAddr, func() (bool, string) { return arpAnswered(t, n) })

		// Probes and metrics on the node's address alone (the chart's
		// --serve-address=$(HOST_IP)); metrics over HTTPS, refused without a token.
		if resp, err := netnstest.HTTPClient(n.ns).Get("http://127.0.0.1:" + probePort + "/readyz"); err == nil {
			resp.Body.Close()
			t.Errorf("probes answer on 127.0.0.1 too (%s)", resp.Status)
		}
		c := netnstest.HTTPClient(n.ns)
		c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		resp, err := c.Get("https://" + net.JoinHostPort(nodeAddr, "9190") + "/metrics")
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("metrics without a token: %s, want 401", resp.Status)
		}
	})

	t.Run("without NET_RAW", func(t *testing.T) {
		n := r.newNode(t, "priv-no-raw", "10.244.2.0/24")
		r.initKernel(t, n)
		r.startAgent(t, n, []string{"net_admin"})
		waitFor(t, n, "layer 2 fails for want of NET_RAW", func() (bool, string) {
			msg := r.nodeEvent(n, "L2AnnouncementFailed")
			return strings.Contains(msg, "operation not permitted"), msg + "\n" + n.agentLog()
		})
		waitFor(t, n, "the pod network in place all the same", func() (bool, string) {
			_, body, _ := readyz(n)
			return strings.Contains(body, "[+]podnet ok") && strings.Contains(body, "[-]l2 failed"), body
		})
		if got := bridgeAddrs(n); !slices.Equal(got, []string{"10.244.2.1/24"}) {
			t.Errorf("berth0 addresses %v, want [10.244.2.1/24]", got)
		}
	})

	// /proc/sys is read-only in the agent's container: without the init
	// container a fresh node's forwarding stays off and the agent says so.
	t.Run("without the init container", func(t *testing.T) {
		n := r.newNode(t, "priv-no-init", "10.244.4.0/24")
		// A new namespace takes IPv4 forwarding from the host's: off here.
		if err := n.ns.Sysctl("net/ipv4/ip_forward", "0"); err != nil {
			t.Fatal(err)
		}
		r.startAgent(t, n, chartCaps)
		waitFor(t, n, "the pod network fails on forwarding", func() (bool, string) {
			msg := r.nodeEvent(n, "PodNetworkFailed")
			return strings.Contains(msg, "ip_forward") && strings.Contains(msg, "read-only file system"), msg + "\n" + n.agentLog()
		})
	})

	t.Run("without NET_ADMIN", func(t *testing.T) {
		n := r.newNode(t, "priv-no-admin", "10.244.3.0/24")
		r.initKernel(t, n)
		r.startAgent(t, n, []string{"net_raw"})
		waitFor(t, n, "the pod network fails for want of NET_ADMIN", func() (bool, string) {
			msg := r.nodeEvent(n, "PodNetworkFailed")
			return strings.Contains(msg, "operation not permitted"), msg + "\n" + n.agentLog()
		})
		if got := bridgeAddrs(n); len(got) != 0 {
			t.Errorf("berth0 addresses %v without NET_ADMIN", got)
		}
		if tabs := tables(t, n); strings.Contains(tabs, "berth-podnet") {
			t.Errorf("nft lists %q without NET_ADMIN", tabs)
		}
		if code, body, err := readyz(n); err != nil || code == http.StatusOK {
			t.Errorf("readyz %d %v without NET_ADMIN:\n%s", code, err, body)
		}
	})
}
