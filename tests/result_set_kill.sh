#!/usr/bin/env bash
# A result set is written as a whole (experiments/common.hpp commit_results): SIGKILL a quick run
# (mnist_baselines, tiny) at random points, ten times, into a --out that holds an earlier run's set. After
# every kill the result files parse and belong together (all the earlier set's bytes, or all the new
# set's), no other file appears; a resumed run then equals an uninterrupted run byte for byte and leaves
# no temporary file. Every other kill lands inside the commit (SDEUQ_RESULTS_PAUSE widens it).
#   tests/result_set_kill.sh BUILD_DIR/experiments
set -euo pipefail
exe="$1/mnist_baselines"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sdeuq-kill.XXXXXX")"
trap 'rm -rf -- "$tmp"' EXIT
# A small cut of the data sets (the first 256 training and 128 test images of each, plain IDX), so that a run
# takes a second or two and the kills land in training, evaluation and the commit, not in loading.
real="${SDEUQ_DATA:-$(dirname "$0")/../data}"
python3 - "$real" "$tmp/data" <<'PY'
import gzip, os, struct, sys
src, dst = sys.argv[1:]
for ds in ("mnist", "fashion-mnist"):
    os.makedirs(os.path.join(dst, ds))
    for split, n in (("train", 256), ("t10k", 128)):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            name = f"{split}-{kind}"
            path = os.path.join(src, ds, name)
            raw = gzip.open(path + ".gz").read() if not os.path.exists(path) else open(path, "rb").read()
            rank = raw[3]
            dims = list(struct.unpack(f">{rank}I", raw[4:4 + 4 * rank]))
            item = 1
            for d in dims[1:]:
                item *= d
            body = raw[4 + 4 * rank:4 + 4 * rank + n * item]
            with open(os.path.join(dst, ds, name), "wb") as f:
                f.write(raw[:4] + struct.pack(f">{rank}I", n, *dims[1:]) + body)
PY
flags=(--train-subset 128 --eval-subset 64 --ensemble 2 --mc-samples 2 --width 4 --groups 2 --threads 1
       --epochs 2 --data "$tmp/data")
set_files=(results.json results.csv run.json)
ms() { date +%s%3N; }

t0=$(ms)
"$exe" "${flags[@]}" --seed 2 --out "$tmp/ref" > /dev/null 2>&1     # the uninterrupted run
dur=$(( $(ms) - t0 ))
# The earlier set in --out: another seed (its checkpoints would be refused as foreign, so they go).
"$exe" "${flags[@]}" --seed 1 --out "$tmp/out" > /dev/null 2>&1
rm -rf "$tmp/out/checkpoints"
cp -a "$tmp/out" "$tmp/old"
if cmp -s "$tmp/old/results.json" "$tmp/ref/results.json"; then
    echo "FAILED: seeds 1 and 2 give equal results (the test could not tell the sets apart)"; exit 1
fi
listing() { (cd "$1" && ls -A | grep -v -x -e checkpoints -e .lock | sort); }
want_listing="$(listing "$tmp/old")"

check() {  # check WHAT: the set in $tmp/out parses and is entirely the old one or entirely the new one
    local f which=""
    for f in "${set_files[@]}"; do
        [[ -f "$tmp/out/$f" ]] || { echo "FAILED ($1): $f missing"; exit 1; }
    done
    python3 - "$tmp/out" <<'PY' || { echo "FAILED ($1): a result file does not parse"; exit 1; }
import csv, json, sys
d = sys.argv[1]
json.load(open(d + "/results.json")); json.load(open(d + "/run.json"))
rows = list(csv.reader(open(d + "/results.csv")))
assert len(rows) > 1 and all(len(r) == len(rows[0]) for r in rows)
PY
    if cmp -s "$tmp/out/results.json" "$tmp/old/results.json"; then
        which=old
        for f in results.csv run.json; do
            cmp -s "$tmp/out/$f" "$tmp/old/$f" \
                || { echo "FAILED ($1): old results.json beside a new $f"; exit 1; }
        done
    elif cmp -s "$tmp/out/results.json" "$tmp/ref/results.json"; then
        which=new
        cmp -s "$tmp/out/results.csv" "$tmp/ref/results.csv" \
            || { echo "FAILED ($1): new results.json beside another results.csv"; exit 1; }
        grep -q '"seed": 2' "$tmp/out/run.json" \
            || { echo "FAILED ($1): new results.json beside an old run.json"; exit 1; }
    else
        echo "FAILED ($1): results.json is neither the earlier set's nor the uninterrupted run's"; exit 1
    fi
    [[ "$(listing "$tmp/out")" == "$want_listing" ]] \
        || { echo "FAILED ($1): other files in --out:"; ls -A "$tmp/out"; exit 1; }
    echo "ok: $1: the $which set, whole"
}

# Odd kills: at a random time within an uninterrupted run's duration (loading, training, evaluation, or
# after the end). Even kills: inside the commit, with SDEUQ_RESULTS_PAUSE=0.3 between its steps (5 steps:
# before and after each of the 3 files, before the old set is removed): at a random time within 1.6 s of
# the new set's directory appearing beside --out.
msleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
for k in $(seq 1 10); do
    pause=""
    (( k % 2 == 0 )) && pause=0.3
    SDEUQ_RESULTS_PAUSE="$pause" "$exe" "${flags[@]}" --seed 2 --out "$tmp/out" > /dev/null 2> "$tmp/err" &
    pid=$!
    if [[ -z "$pause" ]]; then
        delay=$(( (RANDOM * 32768 + RANDOM) % (dur + 1) ))
    else
        for _ in $(seq 600); do
            compgen -G "$tmp/.out.set.$pid" > /dev/null && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        delay=$(( (RANDOM * 32768 + RANDOM) % 1601 ))
    fi
    msleep "$delay"
    kill -KILL "$pid" 2>/dev/null || true
    status=0
    { wait "$pid"; } 2>/dev/null || status=$?  # (without bash's "Killed" line)
    if [[ "$status" != 0 && "$status" != 137 ]]; then
        echo "FAILED: run $k exited $status:"; cat "$tmp/err"; exit 1
    fi
    check "kill $k after ${delay} ms (pause '${pause}', exit $status)"
done

"$exe" "${flags[@]}" --seed 2 --out "$tmp/out" > /dev/null 2>&1    # resumed to the end
check "resumed run"
for f in "$tmp/ref"/*; do
    name="$(basename "$f")"
    [[ -f "$f" && "$name" != run.json ]] || continue
    cmp -s "$f" "$tmp/out/$name" \
        || { echo "FAILED: $name of the resumed run differs from the uninterrupted run's"; exit 1; }
done
leftover="$(find "$tmp" -maxdepth 1 -name '.out.set.*'; find "$tmp/out" -name '*.tmp*')"
[[ -z "$leftover" ]] || { echo "FAILED: temporary files left: $leftover"; exit 1; }
echo "result_set_kill: 10 kills, the set always whole; resumed run equals the uninterrupted one"
