#!/usr/bin/env bash
# Compile and run the Unreal plugin's engine-independent core (bindings/unreal) as plain
# C++17 the way Unreal builds modules (-fno-exceptions -fno-rtti), against
# tests/unreal/stub/CoreMinimal.h and target/release/libpresence.a, under ASan/UBSan.
# The UObject parts (UPresenceSubsystem, the module) need Unreal and are not compiled here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

LIB="target/release/libpresence.a"
BUILD="tests/unreal/build"
CXX="${CXX:-g++}"
PLUGIN="bindings/unreal/Presence/Source/Presence"
if [[ ! -f "$LIB" ]]; then
    echo "tests/unreal/run.sh: $LIB is missing (run cargo build --release)" >&2
    exit 1
fi
mkdir -p "$BUILD"
FLAGS=(-std=c++17 -fno-exceptions -fno-rtti -Wall -Wextra -Werror -g
       -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -I tests/unreal/stub -I "$PLUGIN/Public" -I include -I bindings/cpp)
echo "+ $CXX ${FLAGS[*]} tests/unreal/test_adapter.cpp -o $BUILD/test_adapter $LIB -lpthread -ldl -lm"
"$CXX" "${FLAGS[@]}" tests/unreal/test_adapter.cpp -o "$BUILD/test_adapter" "$LIB" -lpthread -ldl -lm
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
"$BUILD/test_adapter"
