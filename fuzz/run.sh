#!/usr/bin/env bash
# Bounded fuzzing run of every target. Usage: fuzz/run.sh [seconds per target]
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept the sanitizer flags. Findings land in fuzz/artifacts/<target>/ and make
# the run fail; turn each into a regression test before deleting it.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
export RUSTC_BOOTSTRAP=1
found=()
for t in config_json user_json channel_json query_json snapshot_json c_abi_ops; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t (${secs}s)"
    cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -timeout=10 -max_len=4096 -print_final_stats=1 2>&1 \
        | grep -E "^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE|==[0-9]+==|SUMMARY|Test unit written|thread .* panicked)" || true
    echo "   corpus: $(ls "corpus/$t" | wc -l) files"
    for f in artifacts/"$t"/{crash,timeout,oom,leak}-*; do
        [ -e "$f" ] && found+=("$f")
    done
done
if ((${#found[@]})); then
    echo "fuzzing found ${#found[@]} failing input(s): ${found[*]}"
    exit 1
fi
echo "fuzzing: no failing input in ${secs}s per target"
