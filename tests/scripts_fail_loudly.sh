#!/usr/bin/env bash
# The scripts fail loudly: run-benchmarks exits non-zero when a benchmark's --json run fails (and leaves no
# stale JSON behind) or a benchmark is not built; run-all refuses --seed without a value.
#   tests/scripts_fail_loudly.sh SOURCE_DIR
set -euo pipefail
src="$1"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sdeuq-scripts.XXXXXX")"
trap 'rm -rf -- "$tmp"' EXIT
fails=0
check() { # check WANT_STATUS PATTERN CMD...
    local want="$1" pat="$2" got=0; shift 2
    "$@" > "$tmp/out" 2>&1 || got=$?
    if [[ "$got" != "$want" ]] || ! grep -qF -- "$pat" "$tmp/out"; then
        echo "FAILED: $* -> exit $got (want $want)"; sed 's/^/    /' "$tmp/out" | tail -5; fails=$((fails + 1))
    else
        echo "ok: exit $got: $(grep -F -- "$pat" "$tmp/out" | head -1)"
    fi
}
# Fake benchmarks: all succeed except bench_brownian, whose --json run fails.
mkdir -p "$tmp/build/bench"
for b in gemm tape_overhead train_step brownian sde_grad conv_step; do
    printf '#!/bin/sh\n[ "$1" = --json ] && echo "{\\"ok\\": 1}"\nexit 0\n' > "$tmp/build/bench/bench_$b"
done
printf '#!/bin/sh\n[ "$1" = --json ] && exit 3\nexit 0\n' > "$tmp/build/bench/bench_brownian"
chmod +x "$tmp/build/bench"/*
mkdir -p "$tmp/out_json" && echo '{"stale": 1}' > "$tmp/out_json/brownian.json"
check 1 "bench_brownian --json failed" env SDEUQ_BUILD="$tmp/build" bash "$src/scripts/run-benchmarks" "$tmp/out_json"
[[ ! -e "$tmp/out_json/brownian.json" ]] || { echo "FAILED: stale brownian.json left"; fails=$((fails + 1)); }
# All succeed, with a fake PyTorch peer: every JSON file carries the provenance (commit, dirty flag).
printf '#!/bin/sh\n[ "$1" = --json ] && echo "{\\"ok\\": 1}"\nexit 0\n' > "$tmp/build/bench/bench_brownian"
printf 'import sys\nprint("{\\"torch_us_per_step\\": 1.0}")\n' > "$tmp/peer_ok.py"
check 0 "== PyTorch peer" env SDEUQ_BUILD="$tmp/build" SDEUQ_TORCH_PEER="$tmp/peer_ok.py" \
    bash "$src/scripts/run-benchmarks" "$tmp/out_json"
for f in "$tmp"/out_json/*.json; do
    [[ "$(basename "$f")" == provenance.json ]] && continue
    python3 -c 'import json, sys; p = json.load(open(sys.argv[1]))["provenance"]
assert len(p["commit"]) == 40 and isinstance(p["dirty"], bool), p' "$f" \
        || { echo "FAILED: $f has no provenance (commit, dirty)"; fails=$((fails + 1)); }
done
[[ -e "$tmp/out_json/train_step_torch.json" ]] || { echo "FAILED: no train_step_torch.json"; fails=$((fails + 1)); }
# The peer fails (e.g. torch missing): the run fails and leaves no stale peer file.
printf 'import sys\nsys.exit("No module named torch")\n' > "$tmp/peer_bad.py"
check 1 "the PyTorch peer $tmp/peer_bad.py --json failed" env SDEUQ_BUILD="$tmp/build" \
    SDEUQ_TORCH_PEER="$tmp/peer_bad.py" bash "$src/scripts/run-benchmarks" "$tmp/out_json"
[[ ! -e "$tmp/out_json/train_step_torch.json" ]] || { echo "FAILED: stale train_step_torch.json left"; fails=$((fails + 1)); }
rm "$tmp/build/bench/bench_sde_grad" "$tmp/build/bench/bench_brownian"
check 1 "bench_brownian not built" env SDEUQ_BUILD="$tmp/build" bash "$src/scripts/run-benchmarks" "$tmp/out_json"
check 2 "--seed needs a value" bash "$src/scripts/run-all" --seed
check 2 "--seed '--full': expected a non-negative integer" bash "$src/scripts/run-all" --seed --full
check 2 "--seed '-1': expected a non-negative integer" bash "$src/scripts/run-all" --seed -1
[[ "$fails" == 0 ]] || exit 1
echo "scripts fail loudly"
