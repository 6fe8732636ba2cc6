package realnode

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// containerdConfig is containerd v2's configuration (version 3) for a node:
// standard paths (private to the node's mount namespace), the CRI with runc
// under cgroupfs, CNI from the node's /etc/cni/net.d and /opt/cni/bin, and the
// sandbox image that is imported, never pulled. The lab has no registry:
// every image is imported, and a pull of any other image fails at once on
// the node itself (registryHosts), never asking a resolver or a registry
// off the machine.
func (c Config) containerdConfig() string {
	return `version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "` + c.socket() + `"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = ` + strconv.Quote(c.registryDir()) + `
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = ` + strconv.Quote(c.SandboxImage) + `

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  # This host withholds CAP_SYS_RESOURCE: no pod may lower its OOM score
  # below containerd's (the pause container asks for -998).
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = ` + strconv.Quote(filepath.Join(c.BinDir, "runc")) + `
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
    use_internal_loopback = true
`
}

// registryDir holds containerd's registry host configuration (hosts.toml
// per registry, _default for all).
func (c Config) registryDir() string { return filepath.Join(c.Dir, "registry") }

// registryHosts sends every registry's requests to a closed port of the
// node's own loopback: a pull of an image that was not imported fails with
// "connection refused" at once.
const registryHosts = `# A lab node has no registry: every image it runs is imported.
server = "https://127.0.0.1:9"
`

// kubeletConfig is the KubeletConfiguration: cgroup v1 allowed (this host has
// no unified hierarchy), cgroupfs under CgroupRoot, serving on the node's
// address with webhook authentication and authorization, no eviction or image
// garbage collection (the lab's disks are shared with the host).
func (c Config) kubeletConfig() string {
	a := strconv.Quote(c.Address.String())
	clientCA := ""
	if c.ClientCAFile != "" {
		clientCA = "\n  x509:\n    clientCAFile: " + strconv.Quote(c.ClientCAFile)
	}
	return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ` + a + `
port: 10250
readOnlyPort: 0
healthzBindAddress: ` + a + `
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true` + clientCA + `
authorization:
  mode: Webhook
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: ` + strconv.Quote(c.CgroupRoot()) + `
containerRuntimeEndpoint: unix://` + c.socket() + `
resolvConf: ` + strconv.Quote(filepath.Join(c.Dir, "resolv.conf")) + `
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
` + c.dnsConfig()
}

// dnsConfig is the kubelet's cluster DNS: the addresses pods of dnsPolicy
// ClusterFirst get as nameservers, and the search domain.
func (c Config) dnsConfig() string {
	if len(c.ClusterDNS) == 0 {
		return ""
	}
	domain := c.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	s := "clusterDomain: " + strconv.Quote(domain) + "\nclusterDNS:\n"
	for _, a := range c.ClusterDNS {
		s += "  - " + strconv.Quote(a.String()) + "\n"
	}
	return s
}

// writeFiles lays out the node's state folder.
func (c Config) writeFiles() error {
	for _, p := range privatePaths {
		if err := os.MkdirAll(c.Private(p), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(c.mntns()), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.registryDir(), "_default"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.registryDir(), "_default", "hosts.toml"), []byte(registryHosts), 0o644); err != nil {
		return err
	}
	files := map[string]string{
		"containerd.toml": c.containerdConfig(),
		"kubelet.yaml":    c.kubeletConfig(),
		"resolv.conf":     "# lab node " + c.Name + ": no cluster DNS yet\n",
	}
	for n, body := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, n), []byte(body), 0o644); err != nil {
			return fmt.Errorf("node %s: %w", c.Name, err)
		}
	}
	return nil
}
