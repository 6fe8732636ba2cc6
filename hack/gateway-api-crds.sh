#!/usr/bin/env bash
# Copies the Gateway API standard-channel CRDs Berth serves from the module
# go.mod pins into config/crd/gateway-api, so the lab, the tests and the
# chart install exactly the version the code was built against.
set -euo pipefail
cd "$(dirname "$0")/.."
src="$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard"
dst=config/crd/gateway-api
mkdir -p "$dst"
rm -f "$dst"/*.yaml
for k in gatewayclasses gateways httproutes grpcroutes referencegrants; do
	install -m 0644 "$src/gateway.networking.k8s.io_$k.yaml" "$dst/"
done
