#!/usr/bin/env bash
# Runs Berth's benchmarks and prints their figures beside the goals, with
# ratios against baselines measured in the same run. Figures, not verdicts:
# nothing here fails on time.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

# The upstream CNI pair the plugin is measured against, and iperf3.
upstream="bin/tools/cni-plugins-v1.10.0"
if [[ ! -x "$upstream/bridge" || ! -x "$upstream/host-local" ]]; then
	GOBIN="$PWD/$upstream" go install github.com/containernetworking/plugins/plugins/main/bridge@v1.10.0 github.com/containernetworking/plugins/plugins/ipam/host-local@v1.10.0
fi
if ! command -v iperf3 >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3 >/dev/null
fi

echo "== ipam: allocator (go test -bench, 5 runs each)"
go test -run '^$' -bench 'Assign100k|BaselineMapInsert100k|Restore10k' -benchtime 5x -benchmem ./ipam/ | tee -a "$out" | grep '^Benchmark' || true
echo "== controllers: 2,000 Services through the real API server (1 run)"
go test -run '^$' -bench 'Controller2000Services' -benchtime 1x -timeout 20m ./controllers/ | tee -a "$out" | grep '^Benchmark' || true

echo "== cni: ADD/DEL through libcni, berth-cni and upstream bridge + host-local (300 cycles each)"
BERTH_UPSTREAM_CNI_DIR="$PWD/$upstream" go test -run '^$' -bench 'AddDel' -benchtime 300x ./cni/ | tee -a "$out" | grep '^Benchmark' || true
echo "== podnet: pod-to-pod TCP throughput across nodes, iperf3 (7 rounds of 3 s per path, interleaved)"
go test -run '^$' -bench 'PodThroughput' -benchtime 7x ./cni/podnet/ | tee -a "$out" | grep '^Benchmark' || true

# metric NAME UNIT: the value before UNIT on NAME's line.
metric() { awk -v n="$1" -v u="$2" '$1 ~ n { for (i = 2; i <= NF; i++) if ($i == u) print $(i-1) }' "$out" | head -1; }

base=$(metric BaselineMapInsert100k ns/op)
echo
echo "== summary"
for b in Assign100kIPv4Slash16 Assign100kIPv6Slash112; do
	ns=$(metric "$b" ns/op)
	bytes=$(metric "$b" B/op)
	awk -v b="$b" -v ns="$ns" -v by="$bytes" -v base="$base" 'BEGIN {
		printf "%-28s %7.1f ms for 100,000 assignments (goal < 1000 ms), %5.0f B/assignment, %.1fx the map-insert baseline\n", b, ns/1e6, by/100000, ns/base }'
done
r=$(metric Restore10k ns/op)
awk -v r="$r" -v base="$base" 'BEGIN { printf "%-28s %7.1f ms for 10,000 Services (goal < 200 ms)\n", "Restore10k", r/1e6 }'
alloc=$(metric Controller2000Services s/2000-allocated)
basec=$(metric Controller2000Services s/2000-baseline-created)
rss=$(metric Controller2000Services MiB-rss)
if [[ -n "$alloc" ]]; then
	awk -v a="$alloc" -v b="$basec" -v rss="$rss" 'BEGIN {
		printf "%-28s %7.1f s until 2,000 Services had addresses; creating 2,000 ClusterIP Services took %.1f s (%.1fx); controller RSS %.0f MiB\n", "Controller2000Services", a, b, a/b, rss }'
fi
for m in add del; do
	b50=$(metric 'AddDel/berth' $m-p50-ms); b99=$(metric 'AddDel/berth' $m-p99-ms)
	u50=$(metric 'AddDel/upstream' $m-p50-ms); u99=$(metric 'AddDel/upstream' $m-p99-ms)
	if [[ -n "$b50" && -n "$u50" ]]; then
		awk -v m="$m" -v b50="$b50" -v b99="$b99" -v u50="$u50" -v u99="$u99" 'BEGIN {
			printf "CNI %-24s berth p50 %.1f ms p99 %.1f ms; upstream p50 %.1f ms p99 %.1f ms; p50 ratio %.2f (goal <= 0.50)\n", toupper(m), b50, b99, u50, u99, b50/u50 }'
	fi
done
k50=$(metric 'AddDel/kernel-veth-del' del-p50-ms); u50=$(metric 'AddDel/upstream' del-p50-ms)
if [[ -n "$k50" && -n "$u50" ]]; then
	awk -v k="$k50" -v u="$u50" 'BEGIN {
		printf "CNI DEL floor                 deleting the veth pair alone (kernel) p50 %.1f ms = %.2fx the upstream DEL%s\n", k, k/u, (k/u > 0.5 ? ": the 0.50 goal is below what the kernel alone takes" : "") }'
fi
bare=$(metric 'PodThroughput/paths' bare-Gbit/s)
wire=$(metric 'PodThroughput/paths' wire-Gbit/s)
for mode in routed vxlan; do
	g=$(metric 'PodThroughput/paths' "$mode-Gbit/s")
	rb=$(metric 'PodThroughput/paths' "$mode/bare")
	rw=$(metric 'PodThroughput/paths' "$mode/wire")
	goal=0.95; [[ $mode == vxlan ]] && goal=0.85
	if [[ -n "$g" && -n "$rb" ]]; then
		awk -v m="$mode" -v g="$g" -v b="$bare" -v w="$wire" -v rb="$rb" -v rw="$rw" -v goal="$goal" 'BEGIN {
			printf "pod-to-pod %-19s %.2f Gbit/s, bare veth %.2f Gbit/s: median ratio %.2f (goal >= %s); against node-to-node over the lab LAN (%.2f Gbit/s) %.2f\n", m, g, b, rb, goal, w, rw }'
	fi
done
# The same paths built by hand with no Berth code: what the kernel gives
# each design (floor-p2p: no bridge, the fewest hops veth pairs allow).
for shape in bridged vxlan p2p; do
	g=$(metric 'PodThroughput/paths' "floor-$shape-Gbit/s")
	rb=$(metric 'PodThroughput/paths' "floor-$shape/bare")
	if [[ -n "$g" && -n "$rb" ]]; then
		awk -v s="$shape" -v g="$g" -v rb="$rb" 'BEGIN {
			printf "kernel floor %-17s %.2f Gbit/s, built by hand with no Berth code: median ratio to bare veth %.2f\n", s, g, rb }'
	fi
done
for pr in routed/floor-bridged vxlan/floor-vxlan; do
	r=$(metric 'PodThroughput/paths' "$pr")
	if [[ -n "$r" ]]; then
		awk -v p="$pr" -v r="$r" 'BEGIN { printf "Berth against its floor        %-22s median ratio %.2f\n", p, r }'
	fi
done
ratio=$(metric 'PodThroughput/routed-clusterip' clusterip/direct)
if [[ -n "$ratio" ]]; then
	awk -v r="$ratio" -v c="$(metric 'PodThroughput/routed-clusterip' clusterip-Gbit/s)" -v d="$(metric 'PodThroughput/routed-clusterip' direct-Gbit/s)" 'BEGIN {
		printf "pod -> ClusterIP -> pod        %.2f Gbit/s, pod -> pod %.2f Gbit/s: ratio %.2f (goal >= 0.95)\n", c, d, r }'
fi

# Service proxy against upstream kube-proxy (nftables mode), same API server,
# same objects, each in its own network namespace (test/proxybench). Sizes
# from $BERTH_PROXYBENCH_SIZES; 1k, 5k and 10k take about 5 minutes here.
echo
echo "== proxy: Berth's service proxy against kube-proxy v1.37 (nftables), N Services x 10 endpoints (1 run)"
test/k8sbin/build-kube-proxy.sh bin/k8s
sizes="${BERTH_PROXYBENCH_SIZES:-1000,5000,10000}"
BERTH_PROXYBENCH_SIZES="$sizes" go test -run '^$' -bench '^BenchmarkProxy$' -benchtime 1x -timeout 90m ./test/proxybench/ | tee -a "$out" | grep '^Benchmark' || true
echo
echo "== summary: service proxy (goals at 10k Services: full sync and one change <= 0.10x kube-proxy, RSS <= 0.50x; Berth linear in Services)"
# k: 1k for 1000, else the number, as the sub-benchmarks are named.
k() { if (($1 % 1000 == 0)); then echo "$(($1 / 1000))k"; else echo "$1"; fi; }
for n in ${sizes//,/ }; do
	s=$(k "$n")
	for f in s-full-sync MiB-rss s-one-service-change s-one-endpoint-change; do
		b=$(metric "Proxy/berth-$s-" "$f"); u=$(metric "Proxy/kube-proxy-$s-" "$f")
		if [[ -z "$b" || -z "$u" ]]; then continue; fi
		goal="<= 0.10"
		if [[ $f == MiB-rss ]]; then goal="<= 0.50"; fi
		awk -v s="$s" -v f="$f" -v b="$b" -v u="$u" -v goal="$goal" 'BEGIN {
			printf "proxy %-4s %-22s berth %9.3f, kube-proxy %9.3f: ratio %5.2f (goal %s at 10k)\n", s, f, b, u, b/u, goal }'
	done
done
line=""
for n in ${sizes//,/ }; do
	per=$(metric "Proxy/berth-$(k "$n")-" s-per-1k-services)
	if [[ -n "$per" ]]; then line+="$(printf ' %s: %.3f s' "$(k "$n")" "$per")"; fi
done
if [[ -n "$line" ]]; then echo "proxy berth full sync per 1k Services (linear when flat):$line"; fi

# Layer-2 announcement in a three-node lab (test/l2bench): failover seen from
# a LAN client sending a UDP request and an ARP who-has every 10 ms.
echo
echo "== l2: failover of the announcing node, ${BERTH_L2BENCH_ROUNDS:-10} rounds each; 1,000 announced addresses (1 run)"
go test -run '^$' -bench '^BenchmarkL2$' -benchtime 1x -timeout 60m ./test/l2bench/ | tee -a "$out" | grep '^Benchmark' || true
echo
echo "== summary: layer-2 announcement (goals: SIGKILL and link down < 1000 ms, graceful restart <= 50 ms and never two answerers)"
for f in kill link-down restart; do
	med=$(metric BenchmarkL2 "ms-$f-gap-median"); worst=$(metric BenchmarkL2 "ms-$f-gap-worst"); two=$(metric BenchmarkL2 "$f-two-answerers")
	goal=1000; [[ $f == restart ]] && goal=50
	if [[ -n "$med" ]]; then
		awk -v f="$f" -v m="$med" -v w="$worst" -v t="$two" -v g="$goal" 'BEGIN {
			printf "l2 %-10s longest gap median %6.0f ms, worst %6.0f ms: worst/goal %.2f (goal %d ms); ARP requests answered by two nodes: %d\n", f, m, w, w/g, g, t }'
	fi
done
first=$(metric BenchmarkL2 s-service-to-first-answer)
rss=$(metric BenchmarkL2 MiB-rss-1000); base=$(metric BenchmarkL2 MiB-rss-baseline); all=$(metric BenchmarkL2 s-1000-announced)
if [[ -n "$first" ]]; then
	awk -v f="$first" -v r="$rss" -v b="$base" -v a="$all" 'BEGIN {
		printf "l2 Service created -> first answer on the LAN: %.2f s; 1,000 more addresses announced in %.1f s; agent RSS %.0f MiB, %.2fx its %.0f MiB before\n", f, a, r, r/b, b }'
fi

# BGP announcement in a three-node lab peered with its router (test/bgpbench).
echo
echo "== bgp: three nodes peered with the lab router (BIRD) (1 run)"
go test -run '^$' -bench '^BenchmarkBGP$' -benchtime 1x -timeout 40m ./test/bgpbench/ | tee -a "$out" | grep '^Benchmark' || true
echo
echo "== summary: BGP (goals: Service -> route < 500 ms; graceful stop -> withdrawn < 1 s; node gone -> withdrawn within the hold time)"
med=$(metric BenchmarkBGP ms-service-to-route-median)
if [[ -n "$med" ]]; then
	awk -v m="$med" -v w="$(metric BenchmarkBGP ms-service-to-route-worst)" -v a="$(metric BenchmarkBGP ms-service-to-address-median)" 'BEGIN {
		printf "bgp Service created -> prefix at the router: median %.0f ms (%.2fx the goal), worst %.0f ms; of which the address (IPAM) median %.0f ms\n", m, m/500, w, a }'
	awk -v g="$(metric BenchmarkBGP ms-graceful-withdraw)" -v k="$(metric BenchmarkBGP ms-kill-withdraw)" -v n="$(metric BenchmarkBGP s-node-down-withdraw)" -v h="$(metric BenchmarkBGP s-negotiated-hold-time)" 'BEGIN {
		printf "bgp withdrawn at the router: graceful stop %.0f ms (%.2fx the goal), agent killed %.0f ms, node link down %.1f s (%.2fx the %.0f s hold time the router negotiated)\n", g, g/1000, k, n, n/h, h }'
	awk -v r="$(metric BenchmarkBGP s-1000-in-rib)" -v a="$(metric BenchmarkBGP s-1000-assigned)" -v m="$(metric BenchmarkBGP MiB-rss-1000)" -v b="$(metric BenchmarkBGP MiB-rss-baseline)" 'BEGIN {
		printf "bgp 1,000 addresses at the router in %.1f s, %.2fx the %.1f s until all had addresses; agent RSS %.0f MiB, %.2fx its %.0f MiB before\n", r, r/a, a, m, m/b, b }'
fi

# BGP: a router whose daemon restarts, against the speaker alone (test/bgpbench/peerrestart).
echo
echo "== bgp: the router's BGP daemon restarted (BIRD, 10 restarts per case)"
go test -run '^$' -bench '^BenchmarkPeerRestart$' -benchtime 1x -timeout 20m ./test/bgpbench/peerrestart/ | tee -a "$out" | grep '^Benchmark' || true
pr=$(metric BenchmarkPeerRestart ms-peer-restart-routes-back-median)
if [[ -n "$pr" ]]; then
	awk -v m="$pr" -v w="$(metric BenchmarkPeerRestart ms-peer-restart-routes-back-worst)" -v bm="$(metric BenchmarkPeerRestart ms-peer-restart-routes-back-idle5s-median)" -v bw="$(metric BenchmarkPeerRestart ms-peer-restart-routes-back-idle5s-worst)" -v r="$(metric BenchmarkPeerRestart ms-bird-restart-median)" 'BEGIN {
		printf "bgp router daemon restarted -> routes back (goal 2 s): median %.0f ms (%.2fx the goal), worst %.0f ms; with GoBGP'"'"'s own 5 s idle hold median %.0f ms, worst %.0f ms (%.2fx); BIRD itself back in %.0f ms\n", m, m/2000, w, bm, bw, bm/m, r }'
fi

# NetworkPolicy (netpol/bench_test.go): the agent's syncer against the kernel
# in a throwaway namespace, for one node of three; throughput over berth0.
echo
echo "== netpol: 1,000 policies over 2,000 pods on 3 nodes, one node's table (1 run); pod-to-pod throughput, iperf3 (6 pairs of 3 s runs)"
go test -run '^$' -bench 'NetpolSync' -benchtime 1x ./netpol/ | tee -a "$out" | grep '^Benchmark' || true
go test -run '^$' -bench 'NetpolThroughput' -benchtime 6x ./netpol/ | tee -a "$out" | grep '^Benchmark' || true
echo
echo "== summary: NetworkPolicy (goal: throughput with 1,000 policies >= 0.95x with none)"
full=$(metric NetpolSync s-full-sync)
if [[ -n "$full" ]]; then
	awk -v f="$full" -v b="$(metric NetpolSync s-baseline-no-policies)" -v c="$(metric NetpolSync s-compile)" -v r="$(metric NetpolSync rules)" -v e="$(metric NetpolSync set-elements)" 'BEGIN {
		printf "netpol full sync %.2f s (compile %.2f s; %d rules, %d set elements), %.1fx the %.3f s of the same pods with no policy\n", f, c, r, e, f/b, b }'
	awk -v p="$(metric NetpolSync s-pod-added)" -v q="$(metric NetpolSync s-policy-changed)" -v f="$full" 'BEGIN {
		printf "netpol pod added -> enforced %.3f s (%.2fx the full sync); policy changed -> enforced %.3f s (%.2fx)\n", p, p/f, q, q/f }'
	awk -v r="$(metric NetpolSync MiB-rss)" -v g="$(metric NetpolSync MiB-rss-growth)" 'BEGIN {
		printf "netpol syncer RSS %.0f MiB after the runs, of which the full sync grew %.0f MiB\n", r, g }'
fi
ratio=$(metric NetpolThroughput policies/none)
if [[ -n "$ratio" ]]; then
	awk -v r="$ratio" -v n="$(metric NetpolThroughput none-Gbit/s)" -v p="$(metric NetpolThroughput policies-Gbit/s)" 'BEGIN {
		printf "netpol pod-to-pod with 1,000 policies %.2f Gbit/s, with none %.2f Gbit/s: median ratio %.2f (goal >= 0.95)\n", p, n, r }'
fi

# Gateway API -> IR -> xDS for the benchmark input (xds/benchgen) (xds/benchgen): everything the
# controller does per full sync before it hands a group to the server.
echo
echo "== xds: translation pipeline, 1,000 and 5,000 HTTPRoutes (10 runs each)"
go test -run '^$' -bench '^BenchmarkPipeline$' -benchtime 10x ./xds/ | tee -a "$out" | grep '^Benchmark' || true
echo
echo "== summary: xds translation (goals: 5,000 routes <= 200 ms; linear in routes)"
total=$(metric 'Pipeline/routes=5000' ms-total)
if [[ -n "$total" ]]; then
	awk -v t="$total" -v s1="$(metric 'Pipeline/routes=5000' ms-stage1)" -v s2="$(metric 'Pipeline/routes=5000' ms-stage2)" \
		-v p1="$(metric 'Pipeline/routes=1000' ns/route)" -v p5="$(metric 'Pipeline/routes=5000' ns/route)" \
		-v dc="$(metric 'Pipeline/routes=5000' total/deepcopy)" -v v="$(metric 'Pipeline/routes=5000' ms-validate)" 'BEGIN {
		printf "xds 5,000 routes: %.1f ms (Gateway API -> IR %.1f ms, IR -> xDS %.1f ms): %.2fx the 200 ms goal, %.1fx a deep copy of the input; per route 5,000 vs 1,000: %.2f (linear when ~1.0); ValidateAll where served %.1f ms more\n", t, s1, s2, t/200, dc, p5/p1, v }'
fi

# Gateway API through the real API server (test/gwbench): the benchmark input (xds/benchgen),
# berth-controller as a process, an ADS client playing the Gateway's Envoy
# with the fleet's certificate; baselines from the same API server.
echo
echo "== gateway: 5,000 HTTPRoutes and 10,000 endpoints through the API server (1 run)"
go test -run '^$' -bench '^BenchmarkGateway$' -benchtime 1x -timeout 40m ./test/gwbench/ | tee -a "$out" | grep '^Benchmark' || true
echo
echo "== summary: gateway (goals: controller RSS <= 200 MiB; one HTTPRoute changed -> routes sent <= 50 ms; one endpoint changed -> EDS sent <= 20 ms)"
full=$(metric BenchmarkGateway s-full-config)
if [[ -n "$full" ]]; then
	awk -v f="$full" -v l="$(metric BenchmarkGateway s-list-baseline)" -v s="$(metric BenchmarkGateway s-status-all)" 'BEGIN {
		printf "gateway controller start -> client has all 5,000 routes %.2f s, %.1fx a plain LIST of the same objects (%.3f s); every route Accepted after %.1f s\n", f, f/l, l, s }'
	awk -v r="$(metric BenchmarkGateway MiB-rss)" -v i="$(metric BenchmarkGateway MiB-rss-idle)" -v a="$(metric BenchmarkGateway MiB-rss-at-full)" -v h="$(metric BenchmarkGateway MiB-hwm)" 'BEGIN {
		printf "gateway controller RSS %.0f MiB at steady state (%.2fx the 200 MiB goal), %.0f MiB when the client had everything, peak %.0f MiB; %.0f MiB serving the Gateway with no routes\n", r, r/200, a, h, i }'
	for c in route endpoint; do
		goal=50; [[ $c == endpoint ]] && goal=20
		awk -v c="$c" -v g="$goal" -v m="$(metric BenchmarkGateway ms-$c-change-median)" -v w="$(metric BenchmarkGateway ms-$c-change-worst)" \
			-v bm="$(metric BenchmarkGateway ms-$c-watch-median)" -v bw="$(metric BenchmarkGateway ms-$c-watch-worst)" 'BEGIN {
			printf "gateway one %-8s change -> client: median %6.1f ms, worst %6.1f ms (%.2fx the %d ms goal); the API server'"'"'s plain watch median %.1f ms, worst %.1f ms: %.1fx\n", c, m, w, m/g, g, bm, bw, m/bm }'
	done
	awk -v m="$(metric BenchmarkGateway ms-endpoint-delta-change-median)" -v w="$(metric BenchmarkGateway ms-endpoint-delta-change-worst)" -v bm="$(metric BenchmarkGateway ms-endpoint-watch-median)" 'BEGIN {
		printf "gateway one endpoint change -> delta client (as Envoy connects): median %6.1f ms, worst %6.1f ms (%.2fx the 20 ms goal); %.1fx the plain watch median\n", m, w, m/20, m/bm }'
	awk -v r="$(metric BenchmarkGateway MiB-rss-end)" 'BEGIN { printf "gateway controller RSS after every change %.0f MiB\n", r }'
fi
echo
echo "== netpol: three-node lab, 1,000 policies through the API server (1 run)"
go test -run '^$' -bench '^BenchmarkNetpolLab$' -benchtime 1x -timeout 40m ./test/netpolbench/ | tee -a "$out" | grep '^Benchmark' || true
enf=$(metric BenchmarkNetpolLab s-1000-enforced)
if [[ -n "$enf" ]]; then
	awk -v e="$enf" -v c="$(metric BenchmarkNetpolLab s-1000-created)" -v r="$(metric BenchmarkNetpolLab MiB-rss-1000)" -v b="$(metric BenchmarkNetpolLab MiB-rss-baseline)" 'BEGIN {
		printf "netpol lab: 1,000 policies enforced on node1 %.1f s after the first was created, %.2fx the %.1f s the API server took for all; agent RSS %.0f MiB, %.2fx its %.0f MiB before\n", e, e/c, c, r, r/b, b }'
	awk -v p="$(metric BenchmarkNetpolLab ms-pod-enforced-median)" -v r="$(metric BenchmarkNetpolLab ms-pod-ready-median)" -v q="$(metric BenchmarkNetpolLab ms-policy-enforced-median)" 'BEGIN {
		printf "netpol lab: pod created -> in its node table median %.0f ms (%.2fx the %.0f ms until Ready); policy changed -> in the table median %.0f ms\n", p, p/r, r, q }'
fi

# Pod startup on the lab's real nodes (test/podbench): two nodes with the same
# kubelet, containerd and settings, one with berth-cni as berth-agent
# installs it, one with the upstream bridge + host-local pair built above,
# same podCIDR, rounds interleaved; then berthctl lab up of real nodes.
echo
echo "== pods: create -> Ready on real nodes, berth-cni against upstream bridge + host-local (${BERTH_PODBENCH_ROUNDS:-3} interleaved rounds of ${BERTH_PODBENCH_PODS:-5} pods one at a time and as many at once, per node)"
BERTH_UPSTREAM_CNI_DIR="$PWD/$upstream" go test -run '^$' -bench '^BenchmarkPodReady$' -benchtime 1x -timeout 30m ./test/podbench/ | tee -a "$out" | grep '^Benchmark' || true
echo "== lab: berthctl lab up of real nodes, default topology, cold then warm after a down (1 run)"
go test -run '^$' -bench '^BenchmarkLabUp$' -benchtime 1x -timeout 40m ./test/podbench/ | tee -a "$out" | grep '^Benchmark' || true
echo
echo "== summary: pod startup (goal: Berth's CNI adds at most 20% to pod create -> Ready: p50 ratio <= 1.2)"
for mode in one burst; do
	b50=$(metric BenchmarkPodReady "berth-$mode-p50-ms")
	if [[ -z "$b50" ]]; then continue; fi
	what="one at a time"; [[ $mode == burst ]] && what="${BERTH_PODBENCH_PODS:-5} at once"
	awk -v w="$what" -v b50="$b50" -v b90="$(metric BenchmarkPodReady "berth-$mode-p90-ms")" \
		-v u50="$(metric BenchmarkPodReady "upstream-$mode-p50-ms")" -v u90="$(metric BenchmarkPodReady "upstream-$mode-p90-ms")" \
		-v n="$(metric BenchmarkPodReady "pods-$mode-each")" 'BEGIN {
		printf "pod create -> Ready %-14s berth p50 %5.0f ms p90 %5.0f ms; upstream p50 %5.0f ms p90 %5.0f ms (%d pods each): p50 ratio %.2f (goal <= 1.20), p90 ratio %.2f\n", w, b50, b90, u50, u90, n, b50/u50, b90/u90 }'
done
cold=$(metric BenchmarkLabUp s-up-cold)
if [[ -n "$cold" ]]; then
	awk -v c="$cold" -v w="$(metric BenchmarkLabUp s-up-warm)" -v d="$(metric BenchmarkLabUp s-down)" 'BEGIN {
		printf "lab up (real nodes, 3, default flags): cold %.1f s (fresh lab name, images never imported), warm %.1f s after a down (%.2fx cold); down %.1f s\n", c, w, w/c, d }'
fi
