#!/usr/bin/env bash
# Fuzzing campaign: runs each cargo-fuzz target for SECONDS, one at a time, at the lowest CPU
# priority on one core, and writes a summary table (executions, final cov/ft, crashes) to
# fuzz/campaign-results.md (or $RESULTS).
#
#   fuzz/run-campaign.sh [SECONDS] [TARGET...]      # default: 600 s, every target
#
# Each target reads the committed seeds (fuzz/corpus/T, fuzz/regressions/T) and writes what it
# finds to fuzz/corpus-tmp/T (gitignored), so campaigns never grow the repository. Crash, timeout
# and out-of-memory inputs land in fuzz/artifacts/T (gitignored); a crash ends that target's run
# and the campaign goes on with the next. Full logs: fuzz/corpus-tmp/logs/T.log.
# Needs a nightly toolchain and cargo-fuzz (`cargo +nightly fuzz`).
set -u

cd "$(dirname "$0")" || exit 2
secs=${1:-600}
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
results=${RESULTS:-campaign-results.md}
mkdir -p corpus-tmp/logs

nice -n 19 cargo +nightly fuzz build >corpus-tmp/logs/build.log 2>&1 || {
    echo "cargo fuzz build failed, see fuzz/corpus-tmp/logs/build.log" >&2
    exit 2
}

started=$(date -u +%Y-%m-%dT%H:%MZ)
rows=()

write_results() {
    {
        echo "# Fuzzing campaign results"
        echo
        echo "Started $started on $(nproc) cores ($(uname -m)), one target at a time at nice 19,"
        echo "\`-max_total_time=$secs -rss_limit_mb=2048 -timeout=10\`, seeds from fuzz/corpus and"
        echo "fuzz/regressions. Reproduce: \`fuzz/run-campaign.sh $secs [TARGET...]\`."
        echo "\`cov\`/\`ft\` are libFuzzer's final coverage figures (edges / features); \`corpus\` the"
        echo "inputs kept in fuzz/corpus-tmp at the end."
        echo
        echo "| target | seconds | executions | exec/s | cov | ft | corpus | crashes | result |"
        echo "|---|---|---|---|---|---|---|---|---|"
        for row in "${rows[@]}"; do echo "$row"; done
    } >"$results"
}

for t in "${targets[@]}"; do
    mkdir -p "corpus-tmp/$t" "artifacts/$t"
    seeds=("corpus-tmp/$t")
    [ -d "corpus/$t" ] && seeds+=("corpus/$t")
    [ -d "regressions/$t" ] && seeds+=("regressions/$t")
    before=$(find "artifacts/$t" -type f | wc -l)
    log="corpus-tmp/logs/$t.log"
    t0=$(date +%s)
    nice -n 19 cargo +nightly fuzz run "$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - t0))
    # The last status line: "#N  DONE|pulse|...  cov: C ft: F corp: ..."
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    done_runs=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/p' "$log" | tail -n 1)
    done_secs=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/p' "$log" | tail -n 1)
    [ -n "$done_runs" ] && execs=$done_runs
    # Fuzzing time as libFuzzer reports it (the wall time also counts a rebuild).
    [ -n "$done_secs" ] && elapsed=$done_secs
    rate=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$last")
    corpus=$(find "corpus-tmp/$t" -type f | wc -l)
    after=$(find "artifacts/$t" -type f | wc -l)
    crashes=$((after - before))
    if [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ]; then
        result="ok"
    else
        found=$(grep -oE 'artifacts/[^ ]+/(crash|timeout|oom|leak|slow-unit)-[0-9a-f]+' "$log" | head -n 1)
        result="FAILED (exit $rc) ${found:-see $log}"
    fi
    rows+=("| $t | $elapsed | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $corpus | $crashes | $result |")
    write_results
    echo "$t: ${rows[-1]}"
done
echo "results: $results (relative to fuzz/)"
