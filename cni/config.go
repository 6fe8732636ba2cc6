// Package cni is the logic of the berth-cni plugin: its configuration, the
// on-disk address store, and the ADD, DEL, CHECK, STATUS and GC verbs. The
// binary in cmd/berth-cni only hands it the runtime's request.
package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
)

// PluginType is the "type" the conflist names the plugin by.
const PluginType = "berth-cni"

// Defaults the agent writes and the plugin falls back to.
const (
	DefaultBridge  = "berth0"
	DefaultDataDir = "/var/lib/berth/cni"
)

// NetConf is berth-cni's entry in the network configuration list.
type NetConf struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	// Bridge is the node's pod bridge, created by berth-agent.
	Bridge string `json:"bridge,omitempty"`
	// MTU of the pod's interface and its host end; 0: the bridge's.
	MTU int `json:"mtu,omitempty"`
	// PodCIDRs are the node's pod ranges, one per family; berth-agent
	// writes them from the Node's spec.podCIDRs.
	PodCIDRs []string `json:"podCIDRs"`
	// DataDir holds the address store.
	DataDir string `json:"dataDir,omitempty"`
	// DNS is passed through to the result.
	DNS struct {
		Nameservers []string `json:"nameservers,omitempty"`
		Domain      string   `json:"domain,omitempty"`
		Search      []string `json:"search,omitempty"`
		Options     []string `json:"options,omitempty"`
	} `json:"dns,omitempty"`

	// Set by the runtime.
	RawPrevResult json.RawMessage `json:"prevResult,omitempty"`
	RuntimeConfig struct{}        `json:"runtimeConfig,omitempty"`
	// ValidAttachments is what GC must keep (CNI 1.1).
	ValidAttachments []Attachment `json:"cni.dev/valid-attachments,omitempty"`

	// Ranges are the parsed PodCIDRs.
	Ranges []netip.Prefix `json:"-"`
}

// Attachment names one interface of one container.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

var ifNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// ParseConfig reads and checks the plugin's configuration. Each error says
// what to fix.
func ParseConfig(raw []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(raw, conf); err != nil {
		return nil, fmt.Errorf("network configuration is not valid JSON: %w", err)
	}
	if conf.Name == "" {
		return nil, fmt.Errorf(`network configuration has no "name"`)
	}
	if conf.Bridge == "" {
		conf.Bridge = DefaultBridge
	}
	if !ifNameRE.MatchString(conf.Bridge) {
		return nil, fmt.Errorf("bridge %q is not a valid interface name (1-15 letters, digits, _ . -)", conf.Bridge)
	}
	if conf.MTU != 0 && (conf.MTU < 576 || conf.MTU > 65535) {
		return nil, fmt.Errorf("mtu %d: use 576 to 65535, or leave it out to use the bridge's", conf.MTU)
	}
	if conf.DataDir == "" {
		conf.DataDir = DefaultDataDir
	}
	if !filepath.IsAbs(conf.DataDir) {
		return nil, fmt.Errorf("dataDir %q must be an absolute path", conf.DataDir)
	}
	if len(conf.PodCIDRs) == 0 {
		return nil, fmt.Errorf("no podCIDRs in the network configuration: the node has no podCIDR yet, or berth-agent has not written it (check the Node's spec.podCIDRs and the agent's log)")
	}
	if len(conf.PodCIDRs) > 2 {
		return nil, fmt.Errorf("podCIDRs %v: at most one per family", conf.PodCIDRs)
	}
	seen := map[bool]bool{}
	for _, c := range conf.PodCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("podCIDR %q: %w", c, err)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("podCIDR %q has host bits set", c)
		}
		if p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return nil, fmt.Errorf("podCIDR %q: use a plain IPv4 or IPv6 prefix", c)
		}
		if seen[p.Addr().Is4()] {
			return nil, fmt.Errorf("podCIDRs %v: at most one per family", conf.PodCIDRs)
		}
		seen[p.Addr().Is4()] = true
		if hostBits := p.Addr().BitLen() - p.Bits(); hostBits < 2 {
			return nil, fmt.Errorf("podCIDR %q is too small for a gateway and a pod", c)
		}
		conf.Ranges = append(conf.Ranges, p)
	}
	return conf, nil
}

// Gateway is the bridge's address in a pod range: its first host address.
func Gateway(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }
