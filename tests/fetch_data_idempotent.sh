#!/usr/bin/env bash
# scripts/fetch-data is idempotent: on a data directory where every file is present and verified it fetches
# nothing, changes nothing and exits 0. Runs on a private copy (symlinks to the real files) with npm and
# apt-get out of PATH, so it can neither download nor write into the source tree. The real data must be
# present (scripts/run-tests and CI fetch it first): a missing data set fails the test, not skips it.
#   tests/fetch_data_idempotent.sh PATH/TO/scripts/fetch-data
set -euo pipefail
fetch="$1"
repo="$(cd "$(dirname "$fetch")/.." && pwd)"
src="${SDEUQ_DATA:-$repo/data}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sdeuq-fetch-idem.XXXXXX")"
trap 'rm -rf -- "$tmp"' EXIT
files=(mnist/train-images-idx3-ubyte mnist/train-labels-idx1-ubyte mnist/t10k-images-idx3-ubyte
       mnist/t10k-labels-idx1-ubyte fashion-mnist/train-images-idx3-ubyte.gz
       fashion-mnist/train-labels-idx1-ubyte.gz fashion-mnist/t10k-images-idx3-ubyte.gz
       fashion-mnist/t10k-labels-idx1-ubyte.gz boston/boston_house_prices.csv)
for f in "${files[@]}"; do
    [[ -f "$src/$f" ]] || { echo "FAILED: $src/$f missing: run scripts/fetch-data first"; exit 1; }
    mkdir -p "$tmp/data/$(dirname "$f")"
    ln -s "$(readlink -f "$src/$f")" "$tmp/data/$f"
done
# A PATH with bash's basic tools but no npm and no apt-get: any download attempt fails loudly.
mkdir "$tmp/bin"
for t in sha256sum cut dirname mktemp rm id sed find head xargs; do
    ln -s "$(command -v "$t")" "$tmp/bin/$t"
done
before="$(cd "$tmp/data" && find . | sort)"
PATH="$tmp/bin" "$(command -v bash)" "$fetch" --data "$tmp/data" > "$tmp/log" 2>&1 || {
    echo "FAILED: fetch-data on a complete data directory exited $?"; cat "$tmp/log"; exit 1; }
after="$(cd "$tmp/data" && find . | sort)"
[[ "$before" == "$after" ]] || { echo "FAILED: fetch-data changed the data directory"; exit 1; }
grep -q "all data present and verified" "$tmp/log" || { echo "FAILED: unexpected output:"; cat "$tmp/log"; exit 1; }
echo "fetch-data: idempotent on a complete data directory (nothing fetched, nothing changed)"
