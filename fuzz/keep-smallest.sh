#!/usr/bin/env bash
# Copies the smallest inputs of a campaign corpus (fuzz/corpus-tmp/T, best run `cargo fuzz cmin T
# corpus-tmp/T` first) into the committed corpus fuzz/corpus/T, up to KB kilobytes in all, so the
# repository keeps a small set that still adds coverage to the seeds.
#   fuzz/keep-smallest.sh TARGET [KB]      # default 32 KB
set -eu
cd "$(dirname "$0")"
t=$1
budget=$((${2:-32} * 1024))
mkdir -p "corpus/$t"
total=0
kept=0
while read -r size file; do
    [ $((total + size)) -gt "$budget" ] && break
    cp "$file" "corpus/$t/$(basename "$file")"
    total=$((total + size))
    kept=$((kept + 1))
done < <(find "corpus-tmp/$t" -type f -printf '%s %p\n' | sort -n)
echo "$t: kept $kept inputs, $total bytes, in fuzz/corpus/$t"
