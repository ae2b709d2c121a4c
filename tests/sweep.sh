#!/usr/bin/env bash
# scripts/sweep with the local back end: the aggregate (mean, sample std, n) equals an independent
# computation from the runs' results.json; an interrupted sweep resumes (finished runs are skipped, a
# missing run is run again) and gives a byte-identical aggregate.json; a run of another commit is redone;
# bad flags are named errors.
#   tests/sweep.sh SOURCE_ROOT
set -euo pipefail
src="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
args=(sde_convergence --seeds 0-2 --quick --set paths=20 --set k-max=5,6 --set k-ref=8 --out "$tmp/out")
python3 "$src/scripts/sweep" "${args[@]}" > "$tmp/first.log"
grep -q "6 runs (2 grid point(s) x 3 seeds), 0 finished, 6 to run" "$tmp/first.log" \
    || { echo "FAILED: expected 6 runs to run"; cat "$tmp/first.log"; exit 1; }
python3 - "$tmp/out" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
agg = json.load(open(os.path.join(out, "aggregate.json")))
prov = agg["provenance"]
assert prov["command"].startswith("scripts/sweep sde_convergence --seeds 0-2 --quick"), prov
assert len(agg["points"]) == 2
checked = 0
for point in agg["points"]:
    kmax = point["set"]["k-max"]
    runs = [json.load(open(os.path.join(out, "runs", f"seed{s}_paths=20_k-max={kmax}_k-ref=8",
                                        "results.json"))) for s in (0, 1, 2)]
    for i in range(len(runs[0]["runs"])):
        vals = [r["runs"][i]["slope"] for r in runs]
        m = point["metrics"][f"runs.{i}.slope"]
        assert m["n"] == 3, m
        assert abs(m["mean"] - statistics.fmean(vals)) <= 1e-12 * max(1.0, abs(m["mean"])), (m, vals)
        assert abs(m["std"] - statistics.stdev(vals)) <= 1e-12 * max(1.0, m["std"]), (m, vals)
        checked += 1
    dts = point["metrics"]["runs.0.dts.0"]
    assert dts["std"] == 0.0 and dts["mean"] == 0.125, dts
print(f"sweep: {checked} aggregated slopes equal mean and sample std computed from the runs")
PY
cp "$tmp/out/aggregate.json" "$tmp/first.json"
# Interrupted: one run lost its results (as if killed before writing them).
rm "$tmp/out/runs/seed1_paths=20_k-max=6_k-ref=8/results.json"
python3 "$src/scripts/sweep" "${args[@]}" > "$tmp/second.log"
grep -q "5 finished, 1 to run" "$tmp/second.log" || { echo "FAILED: resume"; cat "$tmp/second.log"; exit 1; }
cmp "$tmp/first.json" "$tmp/out/aggregate.json" || { echo "FAILED: the resumed aggregate differs"; exit 1; }
# A run made by another commit is stale: redone, never aggregated with the others.
stale="$tmp/out/runs/seed2_paths=20_k-max=5_k-ref=8/results.json"
sed -i 's/"commit": "[0-9a-f]*"/"commit": "0000000000000000000000000000000000000000"/' "$stale"
python3 "$src/scripts/sweep" "${args[@]}" > "$tmp/third.log"
grep -q "5 finished, 1 to run" "$tmp/third.log" || { echo "FAILED: stale run"; cat "$tmp/third.log"; exit 1; }
cmp "$tmp/first.json" "$tmp/out/aggregate.json" || { echo "FAILED: the redone aggregate differs"; exit 1; }
# Bad input: named errors, exit 2.
for bad in "--seeds 3-1" "--seeds x" "--set noequals" "--set seed=1"; do
    # shellcheck disable=SC2086
    if python3 "$src/scripts/sweep" sde_convergence $bad --out "$tmp/bad" 2> "$tmp/err.log"; then
        echo "FAILED: sweep accepted $bad"; exit 1
    fi
    grep -q "^sweep: " "$tmp/err.log" \
        || { echo "FAILED: no named error for $bad"; cat "$tmp/err.log"; exit 1; }
done
echo "sweep: resumed sweep byte-identical; bad flags rejected"
