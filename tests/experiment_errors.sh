#!/usr/bin/env bash
# Experiments fail with one clear line and exit status 1 (bad data or state) or 2 (bad usage), never with
# std::terminate; checkpoints are resumed only by the run they belong to.
#   tests/experiment_errors.sh BUILD_DIR/experiments
set -euo pipefail
bin="$1"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sdeuq-errors.XXXXXX")"
trap 'rm -rf -- "$tmp"' EXIT
fails=0
# expect STATUS PATTERN CMD...: CMD exits STATUS, its stderr has PATTERN, and no "terminate".
expect() {
    local want="$1" pat="$2"; shift 2
    local got=0
    "$@" > "$tmp/out" 2> "$tmp/err" || got=$?
    if [[ "$got" != "$want" ]] || { [[ -n "$pat" ]] && ! grep -qF -- "$pat" "$tmp/err"; } \
            || grep -q terminate "$tmp/err"; then
        echo "FAILED: $* -> exit $got (want $want), stderr:"; sed 's/^/    /' "$tmp/err" | tail -5
        fails=$((fails + 1))
    else
        echo "ok: exit $got: $(grep -F -- "$pat" "$tmp/err" | head -1 | cut -c1-160)"
    fi
}
tm=("$bin/two_moons" --epochs 1 --ensemble 1 --mc-samples 1)
# Strict flag values.
expect 2 "--seed" "${tm[@]}" --seed -1 --out "$tmp/tm"
expect 2 "--seed" "${tm[@]}" --seed 36893488147419103232 --out "$tmp/tm"
expect 2 "--seed" "${tm[@]}" --seed "" --out "$tmp/tm"
expect 2 "--full" "${tm[@]}" --quick --full --out "$tmp/tm"
expect 2 "--lr" "${tm[@]}" --lr nan --out "$tmp/tm"
expect 2 "--lr" "${tm[@]}" --lr inf --out "$tmp/tm"
expect 2 "--train-subset" "$bin/mnist_baselines" --train-subset -5 --out "$tmp/mb"
expect 2 "--threads" "$bin/sde_convergence" --threads 100000 --out "$tmp/sc"
expect 2 "--k-ref 6 must exceed --k-max 8" "$bin/sde_convergence" --k-max 8 --k-ref 6 --out "$tmp/sc"
# Environment and --out.
expect 2 "SDEUQ_THREADS='abc'" env SDEUQ_THREADS=abc "${tm[@]}" --out "$tmp/tm"
expect 2 "SDEUQ_ANOMALY='yes'" env SDEUQ_ANOMALY=yes "${tm[@]}" --out "$tmp/tm"
touch "$tmp/afile"
expect 2 "--out $tmp/afile: exists and is not a directory" "${tm[@]}" --out "$tmp/afile"
# A full disk while the results are written: one line naming the file, exit 1, and the previous result set
# left whole (commit_results builds the new set beside it). On a tiny tmpfs filled up where mounting is
# allowed (root), and always with a file-size limit (ulimit -f, SIGXFSZ ignored so that write fails EFBIG).
tiny=("$bin/two_moons" --epochs 1 --ensemble 1 --mc-samples 1 --threads 1)
full_disk_left_whole() { # DIR: the earlier run's results are still there and parse, no half-built set
    local dir="$1"
    if ! cmp -s "$dir/results.json" "$tmp/full_disk_before.json" \
            || ! python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$dir/results.json" \
            || compgen -G "$(dirname "$dir")/.$(basename "$dir").set.*" > /dev/null; then
        echo "FAILED: a failed write on a full disk did not leave the earlier result set whole in $dir"
        fails=$((fails + 1))
    fi
}
mnt="$tmp/tmpfs"
mkdir -p "$mnt"
if mount -t tmpfs -o size=4m tmpfs "$mnt" 2> /dev/null; then
    trap 'umount "$mnt" 2> /dev/null || true; rm -rf -- "$tmp"' EXIT
    expect 0 "" "${tiny[@]}" --out "$mnt/out"
    cp "$mnt/out/results.json" "$tmp/full_disk_before.json"
    dd if=/dev/zero of="$mnt/filler" bs=64k 2> /dev/null || true   # until the disk is full
    expect 1 "No space left on device" "${tiny[@]}" --out "$mnt/out"
    full_disk_left_whole "$mnt/out"
    umount "$mnt"
    trap 'rm -rf -- "$tmp"' EXIT   # (under set -e a second, failing umount would set the exit status)
else
    echo "note: cannot mount a tmpfs here (not root?): the full-disk case runs with ulimit -f only"
fi
expect 0 "" "${tiny[@]}" --out "$tmp/fsize"
cp "$tmp/fsize/results.json" "$tmp/full_disk_before.json"
expect 1 "File too large" bash -c 'trap "" XFSZ; ulimit -f 2; exec "$@"' limited "${tiny[@]}" --out "$tmp/fsize"
full_disk_left_whole "$tmp/fsize"
# A diverging loss stops at once with the epoch, the batch and the hint.
expect 1 "rerun with --anomaly" "${tm[@]}" --lr 1e300 --out "$tmp/tm"
expect 1 "anomaly" "${tm[@]}" --lr 1e300 --anomaly --out "$tmp/tm"

# Checkpoints (mnist_baselines, tiny): a run, then the issue's three foreign-checkpoint scenarios.
mb=("$bin/mnist_baselines" --train-subset 128 --eval-subset 64 --ensemble 2 --mc-samples 2
    --width 4 --groups 2 --threads 1)
expect 0 "" "${mb[@]}" --epochs 1 --out "$tmp/mb"
ck="$tmp/mb/checkpoints"
cp "$ck/mnist_member0.ckpt" "$tmp/member0.orig"
expect 0 "resuming" "${mb[@]}" --epochs 1 --out "$tmp/mb"                       # its own checkpoints: resumed
cp "$ck/mnist_member1.ckpt" "$ck/mnist_member0.ckpt"                 # member 1 over member 0
expect 1 "/slot is \"member1\" in the checkpoint, \"member0\" in this run" "${mb[@]}" --epochs 1 --out "$tmp/mb"
cp "$tmp/member0.orig" "$ck/mnist_member0.ckpt"
cp "$ck/fashion_mnist_member0.ckpt" "$tmp/fm0.orig"
cp "$ck/mnist_member0.ckpt" "$ck/fashion_mnist_member0.ckpt"         # MNIST over Fashion-MNIST
expect 1 "/dataset is \"mnist\" in the checkpoint" "${mb[@]}" --epochs 1 --out "$tmp/mb"
cp "$tmp/fm0.orig" "$ck/fashion_mnist_member0.ckpt"
# Other settings: refused, and the earlier run's checkpoint is left as it was.
expect 1 "/config/epochs is 1 in the checkpoint, 2 in this run" "${mb[@]}" --epochs 2 --out "$tmp/mb"
cmp -s "$tmp/member0.orig" "$ck/mnist_member0.ckpt" || { echo "FAILED: checkpoint overwritten"; fails=$((fails + 1)); }
# Trained on other data files (labels shifted by one), then rerun on the real data.
real="${SDEUQ_DATA:-$(dirname "$0")/../data}"
mkdir -p "$tmp/data/mnist" "$tmp/data/fashion-mnist"
for f in "$real"/mnist/* "$real"/fashion-mnist/*; do ln -s "$(readlink -f "$f")" "$tmp/data/${f#"$real"/}"; done
lab="$(readlink -f "$real"/mnist/train-labels-idx1-ubyte*)"
rm "$tmp/data/mnist/$(basename "$lab")"
# IDX labels: an 8-byte header, then one byte per label: shift each by one (mod 10).
{ head -c 8 "$lab"; tail -c +9 "$lab" | tr '\000-\011' '\001-\011\000'; } > "$tmp/data/mnist/$(basename "$lab")"
expect 0 "" "${mb[@]}" --epochs 1 --data "$tmp/data" --out "$tmp/shifted"
expect 1 "/data_files/train-labels-idx1-ubyte" "${mb[@]}" --epochs 1 --out "$tmp/shifted"
# Starting over is explicit: --no-resume overwrites.
expect 0 "" "${mb[@]}" --epochs 2 --no-resume --out "$tmp/mb"
# A truncated checkpoint names the file.
head -c 100 "$ck/mnist_member0.ckpt" > "$tmp/t" && mv "$tmp/t" "$ck/mnist_member0.ckpt"
expect 1 "$ck/mnist_member0.ckpt" "${mb[@]}" --epochs 2 --out "$tmp/mb"
# One run per --out (a lock), and a killed run's temporary files are cleaned by the next one.
mkdir -p "$tmp/locked" && echo partial > "$tmp/locked/results.json.tmp.99999"
"$bin/two_moons" --epochs 400 --ensemble 1 --mc-samples 1 --threads 1 --out "$tmp/locked" > /dev/null 2>&1 &
first=$!
for _ in $(seq 100); do [[ -s "$tmp/locked/.lock" ]] && break; sleep 0.1; done
expect 1 "another run (pid $first) is writing there" "${tm[@]}" --out "$tmp/locked"
# An experiment whose main goes through experiment::run_main (docs/pending.md lists those that do not yet):
# one line, "NAME: error: --out DIR: another run ...", exit 1, not std::terminate.
expect 1 "sdenet_active_learning: error: --out $tmp/locked: another run (pid $first)" \
    "$bin/sdenet_active_learning" --rounds 0 --seeds 1 --out "$tmp/locked"
[[ ! -e "$tmp/locked/results.json.tmp.99999" ]] || { echo "FAILED: leftover temporary file"; fails=$((fails + 1)); }
kill "$first" 2>/dev/null || true
wait "$first" 2>/dev/null || true
expect 0 "" "${tm[@]}" --out "$tmp/locked"   # the lock died with its process
[[ "$fails" == 0 ]] || { echo "$fails failed"; exit 1; }
echo "all error and checkpoint-identity cases behave"
