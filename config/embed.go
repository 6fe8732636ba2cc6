// Package config embeds the manifests `make manifests` generates, so that
// tools such as the lab apply exactly what the release ships.
package config

import "embed"

// AgentRole is berth-agent's ClusterRole.
//
//go:embed rbac/agent/role.yaml
var AgentRole []byte

// ControllerRole is berth-controller's ClusterRole and its Role for the
// leader lease in berth-system.
//
//go:embed rbac/controller/role.yaml
var ControllerRole []byte

// IPPoolCRD is the IPPool CustomResourceDefinition.
//
//go:embed crd/bases/berth.dev_ippools.yaml
var IPPoolCRD []byte

// L2AnnouncementCRD is the L2Announcement CustomResourceDefinition.
//
//go:embed crd/bases/berth.dev_l2announcements.yaml
var L2AnnouncementCRD []byte

// BGPPeerCRD is the BGPPeer CustomResourceDefinition.
//
//go:embed crd/bases/berth.dev_bgppeers.yaml
var BGPPeerCRD []byte

// BGPAnnouncementCRD is the BGPAnnouncement CustomResourceDefinition.
//
//go:embed crd/bases/berth.dev_bgpannouncements.yaml
var BGPAnnouncementCRD []byte

// GatewayAPICRDs are the Gateway API standard-channel CRDs Berth serves
// (GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant), at the
// version go.mod pins, copied by `make manifests`.
//
//go:embed crd/gateway-api
var GatewayAPICRDs embed.FS

// GatewayAPIManifests returns GatewayAPICRDs as one multi-document YAML, in
// file-name order.
func GatewayAPIManifests() []byte {
	entries, err := GatewayAPICRDs.ReadDir("crd/gateway-api")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	var out []byte
	for _, e := range entries {
		b, err := GatewayAPICRDs.ReadFile("crd/gateway-api/" + e.Name())
		if err != nil {
			panic(err)
		}
		out = append(append(out, "\n---\n"...), b...)
	}
	return out
}
