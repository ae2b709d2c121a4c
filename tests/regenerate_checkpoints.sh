#!/usr/bin/env bash
# scripts/regenerate removes the checkpoints under reports/results/NAME before NAME runs (a resumed run would
# reuse what an older build trained), and keeps them with --resume. Run on a copy of the script in a
# scratch repository whose build directory has nothing to build and no experiment programs: the removal
# happens before the (failing) run.
#   tests/regenerate_checkpoints.sh SOURCE_ROOT
set -euo pipefail
src="$1"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sdeuq-regenerate.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
mkdir -p "$tmp/scripts" "$tmp/build" "$tmp/reports/results/sdenet_mnist/checkpoints" \
    "$tmp/reports/results/sdebnn_toy1d_study/sde/checkpoints"
cp "$src/scripts/regenerate" "$tmp/scripts/"
printf 'rule nothing\n  command = true\n' > "$tmp/build/build.ninja"
touch "$tmp/reports/results/sdenet_mnist/checkpoints/mnist_sdenet.ckpt" \
    "$tmp/reports/results/sdebnn_toy1d_study/sde/checkpoints/model.ckpt"
git -C "$tmp" init -q && git -C "$tmp" add scripts && git -C "$tmp" -c user.name=t -c user.email=t@t commit -qm init
run() { (cd "$tmp" && python3 scripts/regenerate --build build "$@") > "$tmp/out.log" 2>&1; }

run --dry-run sdenet_mnist sdebnn_toy1d_study || fail "--dry-run: $(cat "$tmp/out.log")"
grep -q "would remove reports/results/sdenet_mnist/checkpoints" "$tmp/out.log" || fail "--dry-run names no removal: $(cat "$tmp/out.log")"
grep -q "would remove reports/results/sdebnn_toy1d_study/sde/checkpoints" "$tmp/out.log" ||
    fail "--dry-run misses a study's nested checkpoints: $(cat "$tmp/out.log")"

run --resume sdenet_mnist && fail "a run of a missing program succeeded"
[ -e "$tmp/reports/results/sdenet_mnist/checkpoints/mnist_sdenet.ckpt" ] || fail "--resume removed the checkpoints"
grep -q "keeping reports/results/sdenet_mnist/checkpoints" "$tmp/out.log" || fail "--resume: $(cat "$tmp/out.log")"

run sdenet_mnist && fail "a run of a missing program succeeded"
[ ! -e "$tmp/reports/results/sdenet_mnist/checkpoints" ] || fail "the checkpoints were not removed: $(cat "$tmp/out.log")"
grep -q "removing reports/results/sdenet_mnist/checkpoints" "$tmp/out.log" || fail "no removal message: $(cat "$tmp/out.log")"
[ -e "$tmp/reports/results/sdebnn_toy1d_study/sde/checkpoints/model.ckpt" ] || fail "another experiment's checkpoints were removed"
echo "scripts/regenerate: checkpoints removed before a run, kept with --resume, listed by --dry-run"
