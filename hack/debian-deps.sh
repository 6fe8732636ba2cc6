#!/usr/bin/env bash
# Installs the Debian packages the lab and the tests run, when any is missing:
# bird2 (the lab router and BGP test peer), frr and gobgpd (the other BGP test
# peers), iproute2 (`ip netns exec`), nftables (the tests list the kernel's
# rules back with nft), gcc (the race detector `make test` runs needs cgo),
# libseccomp-dev and pkg-config (the lab nodes' runc, test/k8sbin/build-node.sh),
# busybox-static (the lab's toolbox image, hack/images).
# Does nothing when all are there.
set -euo pipefail
missing=()
command -v bird >/dev/null || missing+=(bird2)
[[ -x /usr/lib/frr/bgpd ]] || missing+=(frr)
command -v gobgpd >/dev/null || missing+=(gobgpd)
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
[[ -e /usr/include/seccomp.h ]] || missing+=(libseccomp-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
if ((${#missing[@]} == 0)); then
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "missing Debian packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
