#!/usr/bin/env bash
# Grows a fuzz target's committed seed corpus: fuzzes it for a while, then
# copies up to N of the inputs the fuzzer found interesting (new coverage)
# from Go's fuzz cache into the package's testdata/fuzz/<target>, where
# `go test` runs them on every run. Review and commit what it adds.
#
#   hack/fuzz-corpus.sh ./ipam FuzzParseRange [seconds=20] [n=16]
set -euo pipefail
pkg="${1:?package, like ./ipam}"
target="${2:?fuzz target, like FuzzParseRange}"
secs="${3:-20}"
n="${4:-16}"
cd "$(dirname "$0")/.."
go test -run '^$' -fuzz "^${target}\$" -fuzztime "${secs}s" "$pkg" >/dev/null
import="$(go list "$pkg")"
cache="$(go env GOCACHE)/fuzz/$import/$target"
dest="$pkg/testdata/fuzz/$target"
mkdir -p "$dest"
# The smallest inputs first: they are the easiest to read in a review.
added=0
while read -r f; do
	[[ -e "$dest/$(basename "$f")" ]] && continue
	cp "$f" "$dest/"
	added=$((added + 1))
	[[ $added -ge $n ]] && break
done < <(find "$cache" -type f -printf '%s %p\n' 2>/dev/null | sort -n | cut -d' ' -f2-)
echo "$dest: $added inputs added, $(find "$dest" -type f | wc -l) in all"
