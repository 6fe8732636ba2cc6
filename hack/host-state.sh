#!/usr/bin/env bash
# Records the host's own network namespace, to prove the tests leave it as
# they found it: every test that runs a Berth component must run it in a
# namespace it made.
#
#   hack/host-state.sh snapshot FILE   record the state in FILE
#   hack/host-state.sh compare FILE    fail, with a diff, if the state now
#                                      differs from FILE
#
# Run as root (nft needs it), in the namespace the tests run in, e.g.
#   hack/host-state.sh snapshot /tmp/host.before && make test; \
#   hack/host-state.sh compare /tmp/host.before
#
# Recorded: the nftables ruleset, links (name, flags, state, MTU, master,
# address), addresses, IPv4 and IPv6 routes of every table, policy rules, the
# net.* sysctls Berth writes, and the named network namespaces. Left out, each
# because it changes on its own, with no test involved: packet and byte
# counters; address and route lifetimes; IPv6 temporary (privacy) addresses.
set -euo pipefail

usage() {
	echo "usage: $0 snapshot|compare FILE" >&2
	exit 2
}

# The sysctls Berth writes (grep -rn 'sysctl.Ensure\|Sysctl(' --include=*.go):
# the pod network turns forwarding on, NetworkPolicy turns bridge filtering
# on, and IPv6 addresses skip duplicate address detection. A key the kernel
# does not have (bridge-nf-* before br_netfilter is loaded) is recorded as
# absent, so loading the module shows too.
sysctls=(
	net.ipv4.ip_forward
	net.ipv4.conf.all.forwarding
	net.ipv4.conf.default.forwarding
	net.ipv6.conf.all.forwarding
	net.ipv6.conf.default.forwarding
	net.ipv6.conf.default.accept_dad
	net.bridge.bridge-nf-call-iptables
	net.bridge.bridge-nf-call-ip6tables
	# Host-wide, not per namespace: the kubelet of a lab/realnode node sets
	# these at start; the runner puts them back when its last node stops.
	vm.overcommit_memory
	vm.panic_on_oom
	kernel.panic
	kernel.panic_on_oops
	kernel.keys.root_maxkeys
	kernel.keys.root_maxbytes
)

state() {
	echo "## nft list ruleset (stateless: counters and quotas move with traffic)"
	nft --stateless list ruleset
	echo
	echo "## links (ifindex, statistics left out)"
	# -o: one line a link; the leading index is dropped so a diff names links.
	ip -o link show | sed -E 's/^[0-9]+: //; s/\\ +/ /g'
	echo
	echo "## addresses (lifetimes left out: DHCP and SLAAC count them down;"
	echo "## temporary IPv6 addresses left out: privacy extensions rotate them)"
	ip -o addr show | grep -v ' temporary ' | sed -E 's/^[0-9]+: //; s/\\.*$//; s/ +$//'
	echo
	echo "## IPv4 routes, every table"
	ip -4 route show table all
	echo
	echo "## IPv6 routes, every table (expiry left out: router advertisements count it down)"
	ip -6 route show table all | sed -E 's/ expires [0-9]+sec//'
	echo
	echo "## rules"
	ip -4 rule show
	ip -6 rule show
	echo
	echo "## sysctls"
	local key
	for key in "${sysctls[@]}"; do
		local path=/proc/sys/${key//.//}
		if [[ -r $path ]]; then
			echo "$key = $(<"$path")"
		else
			echo "$key absent"
		fi
	done
	echo
	echo "## named network namespaces (/run/netns): a test's must go with it"
	if [[ -d /run/netns ]]; then
		ls -1 /run/netns
	fi
}

[[ $# -eq 2 ]] || usage
file=$2
case $1 in
snapshot)
	state >"$file"
	echo "host-state: recorded the host's network namespace in $file"
	;;
compare)
	[[ -r $file ]] || {
		echo "host-state: no snapshot $file; take one first: $0 snapshot $file" >&2
		exit 2
	}
	now=$(mktemp)
	trap 'rm -f "$now"' EXIT
	state >"$now"
	if ! diff -u --label "before ($file)" --label "after" "$file" "$now"; then
		echo >&2
		echo "host-state: the host's network namespace changed (- before, + after)." >&2
		echo "A test changed the host instead of a namespace it made (netnstest.New)," >&2
		echo "or its cleanup did not run. Remove what it left, then find the test." >&2
		exit 1
	fi
	echo "host-state: the host's network namespace is as recorded in $file"
	;;
*)
	usage
	;;
esac
