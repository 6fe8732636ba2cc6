#!/usr/bin/env bash
# Copies what the chart must not drift from into charts/berth: the CRDs
# (Berth's and the Gateway API ones Berth serves) into crds/, and the RBAC
# roles controller-gen writes from the kubebuilder markers into files/rbac/,
# which the chart's templates render as they are. `make manifests` runs it
# after generating config/, and `make verify` fails when a copy is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/berth
mkdir -p "$chart/crds" "$chart/files/rbac"
rm -f "$chart"/crds/*.yaml "$chart"/files/rbac/*.yaml
for f in config/crd/bases/*.yaml config/crd/gateway-api/*.yaml; do
	install -m 0644 "$f" "$chart/crds/"
done
for c in controller agent; do
	install -m 0644 "config/rbac/$c/role.yaml" "$chart/files/rbac/$c.yaml"
done
