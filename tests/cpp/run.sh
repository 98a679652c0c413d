#!/usr/bin/env bash
# Build and run the C++ binding tests and examples against target/release/libpresence.a,
# twice: once as Unreal builds modules (-fno-exceptions -fno-rtti) and once with
# exceptions (which adds the throwing layer's tests), both under ASan/UBSan.
# Assumes `cargo build --release` has run. Exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

LIB="target/release/libpresence.a"
BUILD="tests/cpp/build"
CXX="${CXX:-g++}"
CXXFLAGS=(-std=c++17 -Wall -Wextra -Werror -g -fsanitize=address,undefined
          -fno-sanitize-recover=undefined -I include -I bindings/cpp)
LIBS=("$LIB" -lpthread -ldl -lm)

if [[ ! -f include/presence.h ]]; then
    echo "tests/cpp/run.sh: include/presence.h is missing" >&2
    exit 1
fi
if [[ ! -f "$LIB" ]]; then
    echo "tests/cpp/run.sh: $LIB is missing (run cargo build --release)" >&2
    exit 1
fi
mkdir -p "$BUILD"

# The README's quick start must be examples/cpp/quickstart.cpp verbatim.
snippet() { # README FILE: the fenced block that follows "<!-- snippet: FILE -->"
    awk -v marker="<!-- snippet: $2 -->" '
        $0 == marker { armed = 1; next }
        armed && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "$1"
}
if ! diff -u examples/cpp/quickstart.cpp <(snippet bindings/cpp/README.md examples/cpp/quickstart.cpp); then
    echo "tests/cpp/run.sh: bindings/cpp/README.md quick start differs from examples/cpp/quickstart.cpp" >&2
    exit 1
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

for mode in no-exceptions exceptions; do
    MODE_FLAGS=()
    if [[ $mode == no-exceptions ]]; then
        MODE_FLAGS=(-fno-exceptions -fno-rtti)
    fi
    build() { # OUT SRC
        echo "+ $CXX ${CXXFLAGS[*]} ${MODE_FLAGS[*]} $2 -o $BUILD/$1-$mode ${LIBS[*]}"
        "$CXX" "${CXXFLAGS[@]}" "${MODE_FLAGS[@]}" "$2" -o "$BUILD/$1-$mode" "${LIBS[@]}"
    }
    build test_presence tests/cpp/test_presence.cpp
    build quickstart examples/cpp/quickstart.cpp
    build lobby examples/cpp/lobby.cpp
    for program in quickstart lobby test_presence; do
        echo "+ $program ($mode)"
        "$BUILD/$program-$mode"
    done
done
