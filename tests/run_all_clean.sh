#!/usr/bin/env bash
# `bash scripts/run-all` (quick) in a clean clone leaves every tracked file as it was (issue 14): quick
# results and reports go to reports/quick/ (ignored by git), never over the committed full-mode ones, and
# nothing else is written into the tree. Runs the real script on a fresh repository made of this tree's
# tracked files, with the experiment the issue caught rewriting committed results (sde_convergence, quick,
# the build given) and without setup, build and benchmarks (--no-setup --no-bench --only).
#   tests/run_all_clean.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src="$(cd "$1" && pwd)"
build="$(cd "$2" && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sdeuq-run-all.XXXXXX")"
trap 'rm -rf -- "$tmp"' EXIT
clone="$tmp/clone"
mkdir "$clone"
# The tracked files as they are in the working tree (so that uncommitted edits of the scripts are tested).
git -C "$src" ls-files -z | (cd "$src" && tar --null -T - -cf -) | tar -xf - -C "$clone"
cd "$clone"
git init -q
git add -A
git -c user.name=test -c user.email=test@localhost commit -qm "clean clone" --no-gpg-sign
committed="$(sha256sum reports/results/sde_convergence/results.json)"
SDEUQ_BUILD="$build" bash scripts/run-all --no-setup --no-bench --only sde_convergence > "$tmp/log" 2>&1 || {
    echo "FAILED: scripts/run-all exited non-zero:"; tail -20 "$tmp/log"; exit 1; }
fails=0
changed="$(git status --porcelain)"
if [[ -n "$changed" ]]; then
    echo "FAILED: scripts/run-all (quick) changed the tree (git status --porcelain):"
    echo "$changed" | sed 's/^/    /' | head -20
    fails=$((fails + 1))
fi
[[ "$(sha256sum reports/results/sde_convergence/results.json)" == "$committed" ]] ||
    { echo "FAILED: the committed full-mode sde_convergence results were rewritten"; fails=$((fails + 1)); }
for f in reports/quick/results/sde_convergence/results.json reports/quick/sde_convergence.md reports/quick/README.md; do
    [[ -s "$f" ]] || { echo "FAILED: run-all wrote no $f"; fails=$((fails + 1)); }
done
python3 -c 'import json, sys; p = json.load(open(sys.argv[1]))["provenance"]; assert p["mode"] == "quick", p' \
    reports/quick/results/sde_convergence/results.json || { echo "FAILED: the quick results say another mode"; fails=$((fails + 1)); }
grep -q "results go to reports/quick/results/" "$tmp/log" ||
    { echo "FAILED: run-all does not say where the quick results go"; fails=$((fails + 1)); }
# A bad --only is refused before anything runs.
if SDEUQ_BUILD="$build" bash scripts/run-all --no-setup --only nonexistent > "$tmp/bad" 2>&1; then
    echo "FAILED: --only nonexistent accepted"; fails=$((fails + 1))
elif ! grep -q "unknown experiment 'nonexistent'" "$tmp/bad"; then
    echo "FAILED: --only nonexistent: $(cat "$tmp/bad")"; fails=$((fails + 1))
fi
# scripts/regenerate knows every committed result and every experiment run-all runs.
listed="$(python3 scripts/regenerate --list | awk '$1 != "total" {print $1}' | sort)"
wanted="$( (ls reports/results; sed -n '/^experiments="/,/"$/p' scripts/run-all | tr -d '"' | sed 's/experiments=//' |
            tr ' ' '\n'; echo uq_benchmark) | grep -v '^$' | sort -u)"
missing="$(comm -13 <(echo "$listed") <(echo "$wanted"))"
[[ -z "$missing" ]] || { echo "FAILED: scripts/regenerate does not know: $missing"; fails=$((fails + 1)); }
[[ "$fails" == 0 ]] || exit 1
echo "run-all (quick) in a clean clone wrote reports/quick/ only; tracked files unchanged; scripts/regenerate" \
    "covers the $(echo "$listed" | wc -l) committed results and experiments"
