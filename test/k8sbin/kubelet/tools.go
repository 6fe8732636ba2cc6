//go:build tools

// Package kubelet pins the kubelet that `make test-deps` builds into bin/node.
package kubelet

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
)
