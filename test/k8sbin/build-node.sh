#!/usr/bin/env bash
# Builds what a real lab node runs into the folder given as $1 (default
# ../../bin/node): the kubelet (k8s.io/kubernetes cmd/kubelet at the control
# plane's version, module kubelet/), containerd, containerd-shim-runc-v2 and
# ctr (containerd v2) and runc (module runtime/). A stamp of the inputs makes
# a second run instant. See docs/lab.md, "Real nodes".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../bin/node}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stamp="$(cat "$here/kubelet/go.mod" "$here/kubelet/go.sum" "$here/runtime/go.mod" "$here/runtime/go.sum" "$here/build-node.sh" | sha256sum | cut -d' ' -f1)"
if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]]; then
	echo "k8sbin: $out is up to date"
	exit 0
fi
k8s_version="$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
kubelet_version="$(cd "$here/kubelet" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
if [[ "$k8s_version" != "$kubelet_version" ]]; then
	echo "k8sbin: kubelet/go.mod has k8s.io/kubernetes $kubelet_version, the control plane $k8s_version: make them equal" >&2
	exit 1
fi
containerd_version="$(cd "$here/runtime" && go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"
runc_version="$(cd "$here/runtime" && go list -m -f '{{.Version}}' github.com/opencontainers/runc)"
pkg="k8s.io/component-base/version"
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$k8s_version" | cut -d. -f2) -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
rm -f "$out/.stamp"
echo "k8sbin: building kubelet $k8s_version, containerd $containerd_version and runc $runc_version into $out"
(cd "$here/kubelet" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/" k8s.io/kubernetes/cmd/kubelet)
cd "$here/runtime"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$containerd_version" -o "$out/" \
	github.com/containerd/containerd/v2/cmd/containerd \
	github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
	github.com/containerd/containerd/v2/cmd/ctr
# runc's nsenter is C (cgo), and its seccomp support links libseccomp
# (libseccomp-dev, hack/debian-deps.sh): containerd's CRI gives every pod
# sandbox a seccomp profile, which a runc without it refuses.
CGO_ENABLED=1 go build -trimpath -tags "seccomp urfave_cli_no_docs" -ldflags "-s -w -X main.version=${runc_version#v}" -o "$out/runc" github.com/opencontainers/runc
echo "$stamp" > "$out/.stamp"
echo "k8sbin: done"
