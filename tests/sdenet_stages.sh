#!/usr/bin/env bash
# sdenet_mnist's staged training: --stage sdenet and --stage baselines, run at the same time as two processes
# with their own --out and --checkpoints naming the final run's <out>/checkpoints, write no results; the
# same command with --stage all (the default) then only evaluates (it resumes every network after its last
# epoch) and its result files equal an unstaged run's byte for byte.
#   tests/sdenet_stages.sh BUILD_DIR/experiments/sdenet_mnist
set -euo pipefail
exe="$1"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sdeuq-sdenet-stages.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
flags=(--seed 3 --threads 1 --dataset mnist --epochs 2 --train-subset 256 --eval-subset 64 --noise-images 32
       --passes 2 --width 8 --max-groups 2 --ensemble 2 --mc-samples 2 --baseline-width 8 --baseline-groups 2
       --baseline-epochs 1 --grid-steps 20000)

"$exe" "${flags[@]}" --out "$tmp/a" > "$tmp/a.log" 2>&1 || fail "unstaged run: $(tail -3 "$tmp/a.log")"

"$exe" "${flags[@]}" --stage sdenet --out "$tmp/s1" --checkpoints "$tmp/b/checkpoints" > "$tmp/s1.log" 2>&1 &
p1=$!
"$exe" "${flags[@]}" --stage baselines --out "$tmp/s2" --checkpoints "$tmp/b/checkpoints" > "$tmp/s2.log" 2>&1 ||
    fail "--stage baselines: $(tail -3 "$tmp/s2.log")"
wait "$p1" || fail "--stage sdenet: $(tail -3 "$tmp/s1.log")"
for d in s1 s2; do
    [ ! -e "$tmp/$d/results.json" ] || fail "a --stage run wrote results ($d)"
done
[ -e "$tmp/b/checkpoints/mnist_sdenet.ckpt" ] || fail "--stage sdenet left no SDE-Net checkpoint"
for m in member0 member1 dropout; do
    [ -e "$tmp/b/checkpoints/mnist_$m.ckpt" ] || fail "--stage baselines left no $m checkpoint"
done

"$exe" "${flags[@]}" --out "$tmp/b" > "$tmp/b.log" 2>&1 ||
    fail "evaluation run: $(tail -3 "$tmp/b.log")"
n=$(grep -c "resuming .* after epoch" "$tmp/b.log" || true)
[ "$n" -ge 4 ] || fail "the evaluation run resumed $n of the 4 networks: $(head -5 "$tmp/b.log")"
for f in results.json results.csv; do
    cmp -s "$tmp/a/$f" "$tmp/b/$f" || fail "$f of the staged run differs from the unstaged run's"
done
"$exe" "${flags[@]}" --stage baselines --no-baselines --out "$tmp/c" > "$tmp/c.log" 2>&1 && fail "--stage baselines --no-baselines was accepted"
grep -q "contradicts --no-baselines" "$tmp/c.log" || fail "unclear error for --stage baselines --no-baselines: $(cat "$tmp/c.log")"
echo "sdenet_mnist: --stage sdenet and --stage baselines in parallel, then --stage all: results byte-identical to an unstaged run"
