#!/usr/bin/env bash
# scripts/check-reports on a temporary repository: passes for results made from a clean commit with HEAD's
# source (committed in a later commit that touches only reports/) or with changes only outside the
# experiment's dependency closure, and fails, naming the problem, for each failure mode: a file of the
# closure changed since the results' commit (source, included header, meson.build), a dirty tree, a
# report whose numbers differ from what render.py makes of its results, a stale report, a result without
# provenance. The temporary
# repository has its own tiny render.py (no matplotlib needed).
#   tests/check_reports.sh SOURCE_ROOT
set -euo pipefail
src="$1"
unset SDEUQ_BUILD  # check-reports reads the temporary repository's build/
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
repo="$tmp/repo"
mkdir -p "$repo/scripts" "$repo/reports/results/exp"
cp "$src/scripts/check-reports" "$repo/scripts/"
cat > "$repo/reports/render.py" <<'PY'
import argparse, json, os
ap = argparse.ArgumentParser()
ap.add_argument("--results"); ap.add_argument("--out")
a = ap.parse_args()
for name in sorted(os.listdir(a.results)):
    r = json.load(open(os.path.join(a.results, name, "results.json")))
    open(os.path.join(a.out, name + ".md"), "w").write(f"# {name}\n\nvalue {r['value']:.3f}\n")
PY
# A tiny Meson project with two programs, experiments/exp (whose results are committed; it includes
# common.hpp) and experiments/other, built so that check-reports can read exp's dependency closure.
mkdir -p "$repo/experiments"
printf "project('t', 'cpp')\nsubdir('experiments')\n" > "$repo/meson.build"
printf "executable('exp', 'exp.cpp')\nexecutable('other', 'other.cpp')\n" > "$repo/experiments/meson.build"
echo "inline int answer() { return 0; }" > "$repo/experiments/common.hpp"
printf '#include "common.hpp"\nint main() { return answer(); }\n' > "$repo/experiments/exp.cpp"
echo "int main() { return 0; }" > "$repo/experiments/other.cpp"
echo "# t" > "$repo/README.md"
echo "build/" > "$repo/.gitignore"
cd "$repo"
git init -q . && git config user.email t@t && git config user.name t
git add . && git commit -qm code
meson setup build > /dev/null && ninja -C build > /dev/null
run() {  # the experiment: results of the current commit
    local dirty=false
    [ -n "$(git status --porcelain --untracked-files=no -- . ':(exclude)reports')" ] && dirty=true
    printf '{"provenance": {"commit": "%s", "dirty": %s, "experiment": "exp"}, "value": %s}\n' \
        "$(git rev-parse HEAD)" "$dirty" "$1" > reports/results/exp/results.json
    python3 reports/render.py --results reports/results --out reports
}
py=python3
expect_pass() {
    if ! out="$(scripts/check-reports --python "$py" 2>&1)"; then
        echo "FAILED: check-reports should pass ($1):"; echo "$out"; exit 1
    fi
    echo "ok: passes: $1"
}
expect_fail() {  # expect_fail WHAT PATTERN
    if out="$(scripts/check-reports --python "$py" 2>&1)"; then
        echo "FAILED: check-reports should fail ($1):"; echo "$out"; exit 1
    fi
    if ! grep -q -- "$2" <<<"$out"; then
        echo "FAILED: check-reports failed ($1) without saying '$2':"; echo "$out"; exit 1
    fi
    echo "ok: fails: $1"
}

run 0.5 && git add . && git commit -qm results
expect_pass "results from a clean commit, committed in a later commit touching only reports/"

# Only what exp is built from counts: another program, the README, or a file outside the build do not
# make its results stale; without the build directory's dependency information everything counts.
echo "int main() { return 1; }" > experiments/other.cpp && echo "more" >> README.md && echo x > notes.txt
git add . && git commit -qm "unrelated changes"
expect_pass "another program's source, the README and a new unrelated file changed"
if out="$(scripts/check-reports --python "$py" --build "$tmp/none" 2>&1)" \
        || ! grep -q "README.md" <<<"$out"; then
    echo "FAILED: without a build directory every file should count:"; echo "$out"; exit 1
fi
echo "ok: fails without a build directory (whole tree compared)"
echo "inline int answer() { return 1; }" > experiments/common.hpp && git commit -qam "header change"
expect_fail "a header exp includes changed" \
    "experiments/exp is built from differs from HEAD.*experiments/common.hpp"
run 0.5 && git add reports && git commit -qm "results regenerated"
echo "# flags" >> experiments/meson.build && git commit -qam "build file change"
expect_fail "the meson.build of exp's directory changed" "in 1 file(s): experiments/meson.build"
run 0.5 && git add reports && git commit -qm "results regenerated"

printf '#include "common.hpp"\nint main() { return answer() + 1; }\n' > experiments/exp.cpp
git commit -qam "code change"
expect_fail "source changed since the results' commit" "differs from HEAD.*experiments/exp.cpp"

echo "// uncommitted" >> experiments/exp.cpp && run 0.5
git add reports && git commit -qm "results from a dirty tree"
expect_fail "results from a dirty tree" "dirty tree"

git checkout -q experiments/exp.cpp && run 0.5 && git add reports && git commit -qm "results regenerated"
expect_pass "regenerated from the clean commit"

sed -i 's/value 0.500/value 0.600/' reports/exp.md && git commit -qam "report edited by hand"
expect_fail "a report's numbers differ from its results" "differs from what render.py makes"
git checkout -q HEAD~1 -- reports && git commit -qm "undo"

echo "# old" > reports/old.md && git add reports && git commit -qm "stale report"
expect_fail "a report render.py does not make" "reports/old.md: not made by render.py"
git rm -q reports/old.md && git commit -qm "no stale report"

printf '{"value": 0.5}\n' > reports/results/exp/results.json && git commit -qam "no provenance"
expect_fail "a result without provenance" "no provenance commit"
printf '{"provenance": {"commit": "%s", "dirty": false}, "value": 0.5}\n' \
    0123456789abcdef0123456789abcdef01234567 > reports/results/exp/results.json
git commit -qam "unknown commit"
expect_fail "a commit not in the repository" "is not in this repository"
echo "check_reports: all failure modes detected"
