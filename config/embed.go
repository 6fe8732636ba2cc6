// Package config embeds the manifests `make manifests` generates, so that
// tools such as the lab apply exactly what the release ships.
package config

import _ "embed"

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
