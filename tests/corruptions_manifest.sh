#!/usr/bin/env bash
# Regeneration gives the committed bytes: regenerates four corruptions (random, geometric, and translate and
# contrast, written with xtensor) of both test sets with one worker thread into a temporary directory and
# compares the uncompressed files with scripts/corruptions.sha256 (scripts/make-corruptions generated the
# manifest with two threads).
#   tests/corruptions_manifest.sh MAKE_CORRUPTIONS_BINARY SOURCE_ROOT
set -euo pipefail
exe="$1"; root="$2"
data="${SDEUQ_DATA:-$root/data}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for d in mnist fashion-mnist; do ln -s "$(cd "$data/$d" && pwd)" "$tmp/$d"; done
"$exe" --data "$tmp" --jobs 1 --corruption shot_noise --corruption rotate --corruption translate \
    --corruption contrast > /dev/null
n=0
while read -r sum rel; do
    case "$rel" in */shot_noise/*|*/rotate/*|*/translate/*|*/contrast/*) ;; *) continue ;; esac
    got="$(gzip -dc -- "$tmp/$rel.gz" | sha256sum | cut -d' ' -f1)"
    [[ "$got" == "$sum" ]] || { echo "FAILED: $rel: sha256 $got, manifest $sum"; exit 1; }
    n=$((n + 1))
done < "$root/scripts/corruptions.sha256"
[[ $n == 80 ]] || { echo "FAILED: expected 80 manifest entries for the four corruptions, found $n"; exit 1; }
echo "corruptions: $n regenerated files match scripts/corruptions.sha256"
