#!/usr/bin/env bash
# Runs an experiment twice with the same seed, once with 1 and once with 2 threads, in a small
# configuration, and requires byte-identical result files (timings live in run.json and are not compared).
#   tests/reproducible.sh EXPERIMENT_BINARY [flags...]
set -euo pipefail
exe="$1"; shift
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$exe" --seed 3 --threads 1 --out "$tmp/a" "$@" > "$tmp/a.log"
"$exe" --seed 3 --threads 2 --out "$tmp/b" "$@" > "$tmp/b.log"
n=0
for f in "$tmp/a"/*; do
    name="$(basename "$f")"
    [ "$name" = run.json ] && continue
    case "$name" in *.tmp*|checkpoint*) continue ;; esac
    if ! cmp -s "$f" "$tmp/b/$name"; then
        echo "FAILED: $name differs between 1 and 2 threads ($(basename "$exe") $*)"
        diff <(head -c 2000 "$f") <(head -c 2000 "$tmp/b/$name") | head -20
        exit 1
    fi
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "FAILED: $(basename "$exe") wrote no result files"; exit 1; }
echo "$(basename "$exe"): $n result files byte-identical with 1 and 2 threads"
