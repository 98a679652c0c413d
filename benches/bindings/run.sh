#!/usr/bin/env bash
# Binding benchmarks with same-run baselines (figures for the binding READMEs):
#  - C#: events/s and managed bytes/event through PresenceEngine.Pump() under Mono, against
#    the raw P/Invoke path;
#  - C++: ns per event through a presence.hpp listener, against a raw C listener.
# Needs `cargo build --release` and the C#/C++ suites' tools. PRESENCE_BENCH_SCALE=0.1
# shrinks every workload.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BUILD="target/bindings-bench"
mkdir -p "$BUILD"
NEWTONSOFT="${NEWTONSOFT:-/usr/lib/cli/Newtonsoft.Json-5.0/Newtonsoft.Json.dll}"

mcs -nologo -optimize+ -unsafe -r:"$NEWTONSOFT" -out:"$BUILD/PumpBench.exe" \
    bindings/csharp/Runtime/*.cs benches/bindings/PumpBench.cs
cp target/release/libpresence.so "$NEWTONSOFT" "$BUILD/"
LD_LIBRARY_PATH="$ROOT/$BUILD" mono --optimize=all "$BUILD/PumpBench.exe"

g++ -std=c++17 -O2 -DNDEBUG -fno-exceptions -fno-rtti -I include -I bindings/cpp \
    benches/bindings/listener_bench.cpp -o "$BUILD/listener_bench" target/release/libpresence.a -lpthread -ldl -lm
"$BUILD/listener_bench"
