#!/usr/bin/env bash
# Runs Berth's benchmarks and prints their figures beside the goals, with
# ratios against baselines measured in the same run. Figures, not verdicts:
# nothing here fails on time.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

echo "== ipam: allocator (go test -bench, 5 runs each)"
go test -run '^$' -bench 'Assign100k|BaselineMapInsert100k|Restore10k' -benchtime 5x -benchmem ./ipam/ | tee -a "$out" | grep '^Benchmark' || true
echo "== controllers: 2,000 Services through the real API server (1 run)"
go test -run '^$' -bench 'Controller2000Services' -benchtime 1x -timeout 20m ./controllers/ | tee -a "$out" | grep '^Benchmark' || true

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
