#!/usr/bin/env bash
# Work shared by --part I/N processes (sdenet_active_learning's (seed, method) runs, sdenet_adversarial's
# attacks): each part writes checkpoints and no results; the same command without --part then writes result
# files equal to an undivided run's byte for byte. And sdenet_adversarial --models-from: it attacks the
# models sdenet_mnist trained (read from its checkpoints), whose clean test accuracy and NLL are the ones
# sdenet_mnist measured on the same images (the baselines behind their pixel-space standardisation); it
# refuses flags that set how models are trained, and an unfinished checkpoint, naming them.
#   tests/experiment_parts.sh BUILD_DIR/experiments
set -euo pipefail
bin="$1"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sdeuq-parts.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; exit 1; }

# Runs "$exe" flags... in parts 0/2 and 1/2 into $out, then without --part; compares with an undivided run.
check_parts() {
    local name="$1" exe="$2"
    shift 2
    "$exe" "$@" --out "$tmp/$name-a" > "$tmp/$name-a.log" 2>&1 || fail "$name undivided: $(tail -3 "$tmp/$name-a.log")"
    for p in 0 1; do
        "$exe" "$@" --part "$p/2" --out "$tmp/$name-b" > "$tmp/$name-p$p.log" 2>&1 ||
            fail "$name --part $p/2: $(tail -3 "$tmp/$name-p$p.log")"
        [ ! -e "$tmp/$name-b/results.json" ] || fail "$name --part $p/2 wrote results"
    done
    "$exe" "$@" --out "$tmp/$name-b" > "$tmp/$name-b.log" 2>&1 || fail "$name after the parts: $(tail -3 "$tmp/$name-b.log")"
    for f in results.json results.csv; do
        cmp -s "$tmp/$name-a/$f" "$tmp/$name-b/$f" || fail "$name: $f after --part 0/2 and 1/2 differs from the undivided run's"
    done
    "$exe" "$@" --part 2/2 --out "$tmp/$name-c" > "$tmp/$name-c.log" 2>&1 && fail "$name accepted --part 2/2"
    grep -q "0 <= I < N" "$tmp/$name-c.log" || fail "$name: unclear error for --part 2/2: $(cat "$tmp/$name-c.log")"
}

al=(--seed 1 --threads 1 --seeds 2 --rounds 2 --acquire 5 --pool 100 --test-subset 50 --train-steps 3 --width 8
    --groups 2 --sdenet-width 8 --sdenet-groups 2 --eval-passes 2)
check_parts active_learning "$bin/sdenet_active_learning" "${al[@]}"

# scripts/run-parts (what scripts/regenerate runs): the parts side by side, each in its own --out (a run locks
# its --out), then the undivided command; the same results, and no part directories left.
run_parts="$(dirname "$0")/../scripts/run-parts"
"$run_parts" 2 "$tmp/al-r" "$bin/sdenet_active_learning" "${al[@]}" > "$tmp/al-r.log" 2>&1 ||
    fail "run-parts: $(tail -5 "$tmp/al-r.log")"
for f in results.json results.csv; do
    cmp -s "$tmp/active_learning-a/$f" "$tmp/al-r/$f" || fail "run-parts: $f differs from the undivided run's"
done
[ ! -e "$tmp/al-r/part-0" ] && [ ! -e "$tmp/al-r/part-1" ] || fail "run-parts left its part directories in $tmp/al-r"
# A run carried across sessions: the checkpoints in OUT/checkpoints are resumed by the parts, not redone (the
# per-round seconds in run.json are then the carried ones).
mkdir -p "$tmp/al-c/checkpoints"
cp "$tmp"/active_learning-b/checkpoints/*.json "$tmp/al-c/checkpoints/"
"$run_parts" 2 "$tmp/al-c" "$bin/sdenet_active_learning" "${al[@]}" > "$tmp/al-c.log" 2>&1 ||
    fail "run-parts with carried checkpoints: $(tail -5 "$tmp/al-c.log")"
cmp -s "$tmp/active_learning-a/results.json" "$tmp/al-c/results.json" || fail "run-parts with carried checkpoints: other results"
/usr/bin/env python3 - "$tmp/active_learning-b/run.json" "$tmp/al-c/run.json" <<'EOF' || fail "run-parts redid the carried runs"
import json, sys
a, b = (json.load(open(p))["timings"] for p in sys.argv[1:])
assert a == b, (a, b)
EOF
"$run_parts" 2 "$tmp/al-e" "$bin/sdenet_active_learning" "${al[@]}" --part 0/2 > "$tmp/al-e.log" 2>&1 &&
    fail "run-parts accepted --part"
grep -q -- "--part: run-parts sets --part and --out itself" "$tmp/al-e.log" || fail "run-parts: unclear error for --part: $(cat "$tmp/al-e.log")"
"$run_parts" 2 "$tmp/al-f" "$bin/sdenet_active_learning" "${al[@]}" --rounds x > "$tmp/al-f.log" 2>&1 &&
    fail "run-parts succeeded although its parts failed"
grep -q "run-parts: part 0/2 of .* failed" "$tmp/al-f.log" || fail "run-parts: no word of the failed part: $(cat "$tmp/al-f.log")"

# sdenet_mnist's MNIST-in models (tiny), trained to checkpoints and evaluated on the first 64 test images.
"$bin/sdenet_mnist" --seed 2 --threads 1 --dataset mnist --epochs 1 --train-subset 256 --eval-subset 64 \
    --noise-images 32 --passes 2 --width 8 --max-groups 2 --ensemble 2 --mc-samples 2 --baseline-width 8 \
    --baseline-groups 2 --baseline-epochs 1 --grid-steps 20000 --out "$tmp/mnist" > "$tmp/mnist.log" 2>&1 ||
    fail "sdenet_mnist: $(tail -3 "$tmp/mnist.log")"
adv=(--seed 1 --threads 1 --attack-subset 64 --epsilons 0.1 0.3 --pgd-steps 2
     --attack-passes 2 --eval-passes 2)
check_parts adversarial "$bin/sdenet_adversarial" "${adv[@]}" --models-from "$tmp/mnist/checkpoints"
/usr/bin/env python3 - "$tmp/mnist/results.json" "$tmp/adversarial-a/results.json" <<'EOF' || fail "sdenet_adversarial --models-from: the models differ from sdenet_mnist's"
import json, sys
m = json.load(open(sys.argv[1]))["results"]["mnist"]["metrics"]["classification"]
a = json.load(open(sys.argv[2]))
r = a["results"]
files = a["provenance"]["config"]["models_from"]["files"]
assert sorted(files) == ["mnist_dropout.ckpt", "mnist_member0.ckpt", "mnist_member1.ckpt", "mnist_sdenet.ckpt"], files
for method in ("deterministic", "deep_ensemble"):
    want, got = m[method + "/max_prob"], r[method]["clean"]
    print(method, "accuracy", want["accuracy"], got["accuracy"], "nll", want["nll"], got["nll"])
    assert want["accuracy"] == got["accuracy"], method
    assert abs(want["nll"] - got["nll"]) < 1e-4 * max(1.0, want["nll"]), method
EOF

"$bin/sdenet_adversarial" "${adv[@]}" --models-from "$tmp/mnist/checkpoints" --width 16 --out "$tmp/e1" > "$tmp/e1.log" 2>&1 && fail "--models-from with --width was accepted"
grep -q -- "--width sets how a model is trained" "$tmp/e1.log" || fail "unclear error for --models-from --width: $(cat "$tmp/e1.log")"
# Rewrites a checkpoint's metadata (key=value JSON), recomputing its length and CRC-32 in the container's
# layout of nn/checkpoint.hpp.
set_meta() {
    /usr/bin/env python3 - "$1" "$2" "$3" <<'EOF'
import json, struct, sys, zlib
path, key, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
b = open(path, "rb").read()
magic, version, count, nbytes, crc, reserved = struct.unpack("<8sIIQII", b[:32])
payload = b[32:]
n = struct.unpack("<Q", payload[:8])[0]
meta = json.loads(payload[8:8 + n])
meta[key] = value
m = json.dumps(meta).encode()
payload = struct.pack("<Q", len(m)) + m + payload[8 + n:]
open(path, "wb").write(struct.pack("<8sIIQII", magic, version, count, len(payload), zlib.crc32(payload), reserved) + payload)
EOF
}
# The models are identified by their weights, not by the files' bytes: other wall times in the metadata
# (as a retrained run has) leave the configuration's weights_crc32 as it is.
cp -r "$tmp/mnist/checkpoints" "$tmp/retimed"
for f in "$tmp"/retimed/*.ckpt; do set_meta "$f" epoch_seconds '[1.5]'; done
"$bin/sdenet_adversarial" "${adv[@]}" --models-from "$tmp/retimed" --out "$tmp/retimed-out" > "$tmp/retimed.log" 2>&1 ||
    fail "--models-from with retimed checkpoints: $(tail -3 "$tmp/retimed.log")"
/usr/bin/env python3 - "$tmp/adversarial-a/results.json" "$tmp/retimed-out/results.json" <<'EOF' || fail "the weights' CRC-32 or the results depend on the checkpoints' metadata"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
fa, fb = (x["provenance"]["config"]["models_from"]["files"] for x in (a, b))
assert fa == fb, (fa, fb)
assert all(len(v["weights_crc32"]) == 8 for v in fa.values()), fa
assert a["results"] == b["results"]
EOF
# An unfinished checkpoint (member 1's metadata rewritten to 0 epochs done) is refused, naming the file and
# the epochs.
cp -r "$tmp/mnist/checkpoints" "$tmp/short"
set_meta "$tmp/short/mnist_member1.ckpt" epochs_done 0
"$bin/sdenet_adversarial" "${adv[@]}" --models-from "$tmp/short" --out "$tmp/e2" > "$tmp/e2.log" 2>&1 &&
    fail "--models-from with an unfinished checkpoint was accepted"
grep -q "mnist_member1.ckpt holds 0 of its 1 training epochs" "$tmp/e2.log" ||
    fail "unclear error for an unfinished checkpoint: $(cat "$tmp/e2.log")"
echo "sdenet_active_learning and sdenet_adversarial: --part 0/2 and 1/2 (one after the other, and side by side by scripts/run-parts), then the undivided command: results byte-identical to an undivided run; --models-from attacks sdenet_mnist's models"
