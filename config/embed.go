// Package config embeds the manifests `make manifests` generates, so that
// tools such as the lab apply exactly what the release ships.
package config

import _ "embed"

// AgentRole is berth-agent's ClusterRole.
//
//go:embed rbac/agent/role.yaml
var AgentRole []byte
