#!/usr/bin/env bash
# Builds kube-proxy from the Kubernetes release this module pins into the
# folder given as $1 (default ../../bin/k8s), for the service proxy benchmark
# (test/proxybench). It has its own stamp, so it never invalidates the
# control plane that build.sh caches, and `make test` never needs it.
#
# kube-proxy needs a few modules the control plane does not (netlink,
# knftables, ipvs). Their checksums are in kube-proxy.sum; the build reads a
# copy of go.mod and go.sum with those lines added (-modfile), so this
# module's own go.mod and go.sum, and build.sh's stamp, stay as they are.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../bin/k8s}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stamp="$(cat "$here/go.mod" "$here/go.sum" "$here/kube-proxy.sum" "$here/build-kube-proxy.sh" | sha256sum | cut -d' ' -f1)"
if [[ -x "$out/kube-proxy" && -f "$out/.stamp-kube-proxy" && "$(cat "$out/.stamp-kube-proxy")" == "$stamp" ]]; then
	echo "k8sbin: $out/kube-proxy is up to date"
	exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$here/go.mod" "$tmp/kube-proxy.mod"
cat "$here/go.sum" "$here/kube-proxy.sum" > "$tmp/kube-proxy.sum"
cd "$here"
k8s_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
pkg="k8s.io/component-base/version"
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$k8s_version" | cut -d. -f2) -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
rm -f "$out/.stamp-kube-proxy"
echo "k8sbin: building kube-proxy $k8s_version into $out (a few minutes on 2 cores)"
CGO_ENABLED=0 go build -mod=mod -modfile="$tmp/kube-proxy.mod" -trimpath -ldflags "$ldflags" -o "$out/" k8s.io/kubernetes/cmd/kube-proxy
echo "$stamp" > "$out/.stamp-kube-proxy"
echo "k8sbin: done"
