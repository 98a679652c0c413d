#!/usr/bin/env bash
# Bounded fuzzing run of every target (issue 7). Usage: fuzz/run.sh [seconds per target]
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept the sanitizer flags. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
export RUSTC_BOOTSTRAP=1
for t in config_json user_json channel_json query_json snapshot_json c_abi_ops; do
    mkdir -p "corpus/$t"
    echo "== $t (${secs}s)"
    cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -timeout=10 -max_len=4096 -print_final_stats=1 2>&1 \
        | grep -E "^(stat::|#[0-9]+ +DONE|==[0-9]+==|SUMMARY|Test unit written|thread .* panicked)" || true
    if compgen -G "artifacts/$t/crash-*" > /dev/null; then
        echo "!! crash found for $t: $(ls artifacts/$t/crash-*)"
    fi
done
