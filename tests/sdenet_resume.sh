#!/usr/bin/env bash
# A killed sdenet_mnist run resumes: SIGKILL right after its first epoch's checkpoint is written, the same
# command resumes after that epoch (it says so), and its result files equal an uninterrupted run's byte for
# byte (model, both optimizers, the noise, pseudo-OOD and shuffle state all restored).
#   tests/sdenet_resume.sh BUILD_DIR/experiments/sdenet_mnist
set -euo pipefail
exe="$1"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sdeuq-sdenet-resume.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
flags=(--seed 5 --threads 1 --dataset mnist --epochs 4 --train-subset 2048 --eval-subset 64 --noise-images 32
       --passes 2 --width 8 --max-groups 2 --no-baselines --grid-steps 20000)

"$exe" "${flags[@]}" --out "$tmp/a" > "$tmp/a.log" 2>&1 || fail "uninterrupted run: $(tail -3 "$tmp/a.log")"

"$exe" "${flags[@]}" --out "$tmp/b" > "$tmp/b1.log" 2>&1 &
pid=$!
ckpt="$tmp/b/checkpoints/mnist_sdenet.ckpt"
while [ ! -e "$ckpt" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
[ -e "$ckpt" ] || fail "no checkpoint after the first epoch: $(tail -3 "$tmp/b1.log")"
# Three more epochs and the evaluation were left when the checkpoint appeared: the kill landed before the end.
[ ! -e "$tmp/b/results.json" ] || fail "the run finished before it was killed (the test needs a slower run)"

"$exe" "${flags[@]}" --out "$tmp/b" > "$tmp/b2.log" 2>&1 || fail "resumed run: $(tail -3 "$tmp/b2.log")"
grep -q "resuming .*mnist_sdenet.ckpt after epoch [1-3]" "$tmp/b2.log" ||
    fail "the second run did not resume from the checkpoint: $(head -3 "$tmp/b2.log")"
for f in results.json results.csv; do
    cmp -s "$tmp/a/$f" "$tmp/b/$f" || fail "$f of the resumed run differs from the uninterrupted run's"
done
echo "sdenet_mnist: killed after epoch 1 of 4, resumed ($(grep -o 'after epoch [0-9]*' "$tmp/b2.log")), results byte-identical"
