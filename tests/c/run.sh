#!/usr/bin/env bash
# Builds and runs the C test suite against the release library, four ways:
#   (a) linked against target/release/libpresence.so (rpath),
#   (b) linked against target/release/libpresence.a,
#   (c) against the .a with -fsanitize=address,undefined (leak checking on),
#   (d) the .so build once more under valgrind --error-exitcode=1 --leak-check=full,
# then builds examples/c/lobby.c with the README's one-line gcc command and runs it.
# Assumes `cargo build --release` has run; exits non-zero on any failure and ends with a
# total "N passed, M failed" line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

LIBDIR="target/release"
SO="$LIBDIR/libpresence.so"
A="$LIBDIR/libpresence.a"
BUILD="tests/c/build"
CC="${CC:-gcc}"
CFLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Werror -g -O1 -I include)
TESTS=(test_api test_scenario test_threads test_typed)

die() {
    echo "tests/c/run.sh: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

[[ -f include/presence.h ]] || die "include/presence.h is missing (PRESENCE_BLESS=1 cargo test --test header)"
# A source newer than the library means a stale build, unless cargo's list of the library's
# sources (libpresence.d) leaves it out: test-only modules do not go into the library.
DEPS="$LIBDIR/libpresence.d"
newer_source() {
    local f
    while IFS= read -r f; do
        if [[ ! -f "$DEPS" ]] || grep -qF "/$f" "$DEPS"; then
            echo "$f"
            return
        fi
    done < <(find src -type f -newer "$1")
}
for lib in "$SO" "$A"; do
    [[ -f "$lib" ]] || die "$lib is missing: run \`cargo build --release\` first"
    stale="$(newer_source "$lib")"
    [[ -z "$stale" ]] || die "$lib is older than $stale: run \`cargo build --release\` first"
done

rm -rf "$BUILD"
mkdir -p "$BUILD"/{shared,static,asan,valgrind}

passed=0
failed=0
failures=()

# run NAME CMD...: runs a test program, adds the counts of its last line to the totals.
run() {
    local name="$1"
    shift
    local log="$BUILD/$name.log"
    echo "+ $*"
    local status=0
    "$@" >"$log" 2>&1 || status=$?
    local last
    last="$(tail -n 1 "$log")"
    local ok=0 fail=1
    if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        ok="${BASH_REMATCH[1]}"
        fail="${BASH_REMATCH[2]}"
        # A crash or a sanitizer report after a clean summary still counts as a failure.
        if [[ $status -ne 0 && $fail -eq 0 ]]; then
            fail=1
        fi
    fi
    passed=$((passed + ok))
    failed=$((failed + fail))
    if [[ $fail -ne 0 ]]; then
        failures+=("$name")
        echo "---- $name failed (exit $status); output:"
        cat "$log"
        echo "----"
    else
        echo "  $name: $last"
    fi
}

echo "== (a) against $SO"
for t in "${TESTS[@]}"; do
    "$CC" "${CFLAGS[@]}" "tests/c/$t.c" -o "$BUILD/shared/$t" \
        -L "$LIBDIR" -Wl,-rpath,"$ROOT/$LIBDIR" -lpresence -lpthread
    run "shared/$t" "$BUILD/shared/$t"
done

echo "== (b) against $A"
for t in "${TESTS[@]}"; do
    "$CC" "${CFLAGS[@]}" "tests/c/$t.c" -o "$BUILD/static/$t" "$A" -lpthread -ldl -lm
    run "static/$t" "$BUILD/static/$t"
done

echo "== (c) against $A with AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer"
SAN=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
for t in "${TESTS[@]}"; do
    "$CC" "${CFLAGS[@]}" "${SAN[@]}" "tests/c/$t.c" -o "$BUILD/asan/$t" "$A" -lpthread -ldl -lm
    run "asan/$t" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$BUILD/asan/$t"
done

echo "== (d) the $SO build under valgrind"
if ! command -v valgrind >/dev/null; then
    die "valgrind is not installed (apt-get install valgrind)"
fi
for t in "${TESTS[@]}"; do
    run "valgrind/$t" valgrind -q --error-exitcode=1 --leak-check=full \
        --errors-for-leak-kinds=definite,possible --show-leak-kinds=definite,possible \
        "$BUILD/shared/$t"
done

echo "== examples/c/lobby.c, built with the README's command"
# Keep this line identical to the README's C quick start (only the output path differs).
gcc -std=c11 -Iinclude examples/c/lobby.c target/release/libpresence.a -lpthread -ldl -lm -o "$BUILD/lobby"
lobby_log="$BUILD/lobby.log"
echo "+ $BUILD/lobby"
if "$BUILD/lobby" >"$lobby_log" 2>&1 && grep -q '^summary:' "$lobby_log"; then
    passed=$((passed + 1))
    sed 's/^/  | /' "$lobby_log"
else
    failed=$((failed + 1))
    failures+=("lobby")
    echo "---- examples/c/lobby.c failed; output:"
    cat "$lobby_log"
    echo "----"
fi
# The examples also build cleanly with the suite's strict flags.
"$CC" "${CFLAGS[@]}" examples/c/lobby.c -o "$BUILD/lobby-strict" "$A" -lpthread -ldl -lm

echo "== examples/c/quickstart.c (the README's C quick start)"
"$CC" "${CFLAGS[@]}" examples/c/quickstart.c -o "$BUILD/quickstart" "$A" -lpthread -ldl -lm
if "$BUILD/quickstart" | tee "$BUILD/quickstart.log" | sed 's/^/  | /' && grep -q '^PRESENCE_ERR_NOT_FOUND: ' "$BUILD/quickstart.log"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    failures+=("quickstart")
fi

if ((${#failures[@]})); then
    echo "FAILED: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))
