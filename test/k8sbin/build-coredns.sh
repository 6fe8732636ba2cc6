#!/usr/bin/env bash
# Builds CoreDNS, the lab's cluster DNS, into the folder given as $1 (default
# ../../bin/node): module coredns/ (github.com/coredns/coredns with only the
# plugins a cluster's Corefile uses), static, stamped with its version and
# with the module's sum in place of a git commit. A stamp of the inputs makes
# a second run instant. `make images` wraps it as
# registry.k8s.io/coredns/coredns:<version> (docs/images.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../bin/node}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stamp="$(cat "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go" "$here/build-coredns.sh" | sha256sum | cut -d' ' -f1)"
if [[ -x "$out/coredns" && -f "$out/.stamp-coredns" && "$(cat "$out/.stamp-coredns")" == "$stamp" ]]; then
	echo "k8sbin: $out/coredns is up to date"
	exit 0
fi
cd "$here/coredns"
version="$(go list -m -f '{{.Version}}' github.com/coredns/coredns)"
sum="$(go list -m -f '{{.Sum}}' github.com/coredns/coredns)"
rm -f "$out/.stamp-coredns"
echo "k8sbin: building coredns $version into $out"
# grpcnotrace: as upstream's Makefile builds it (no x/net/trace in gRPC).
CGO_ENABLED=0 go build -trimpath -tags grpcnotrace \
	-ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$version-$sum" -o "$out/coredns" .
echo "$stamp" > "$out/.stamp-coredns"
echo "k8sbin: done"
