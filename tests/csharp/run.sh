#!/usr/bin/env bash
# Build the C# runtime, its NUnit tests (bindings/csharp/Tests, the same files Unity's Test
# Framework runs) and the examples with Mono's mcs, then run them against
# target/release/libpresence.so; the tests run under Debian's nunit-console (NUnit 2.6).
# Assumes `cargo build --release` has run. Needs the Debian packages mono-mcs,
# mono-runtime, nunit-console and libnewtonsoft-json-cil-dev. Exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

LIB="target/release/libpresence.so"
BUILD="tests/csharp/build"
MCS="${MCS:-mcs}"
MONO="${MONO:-mono}"
NUNIT="${NUNIT:-nunit-console}"
NEWTONSOFT="${NEWTONSOFT:-/usr/lib/cli/Newtonsoft.Json-5.0/Newtonsoft.Json.dll}"
NUNIT_FRAMEWORK="${NUNIT_FRAMEWORK:-/usr/lib/cli/nunit.framework-2.6.3/nunit.framework.dll}"
MCSFLAGS=(-warn:4 -warnaserror -nologo -debug -unsafe -r:"$NEWTONSOFT")
APT="apt-get install -y mono-mcs mono-runtime nunit-console libnewtonsoft-json-cil-dev"

for tool in "$MCS" "$MONO" "$NUNIT"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "tests/csharp/run.sh: $tool not found ($APT)" >&2
        exit 1
    fi
done
for dll in "$NEWTONSOFT" "$NUNIT_FRAMEWORK"; do
    if [[ ! -f "$dll" ]]; then
        echo "tests/csharp/run.sh: $dll not found ($APT)" >&2
        exit 1
    fi
done
if [[ ! -f "$LIB" ]]; then
    echo "tests/csharp/run.sh: $LIB is missing (run cargo build --release)" >&2
    exit 1
fi
mkdir -p "$BUILD"
RUNTIME=(bindings/csharp/Runtime/*.cs)

# The README's quick start must be examples/csharp/QuickStart.cs verbatim.
snippet() { # README FILE: the fenced block that follows "<!-- snippet: FILE -->"
    awk -v marker="<!-- snippet: $2 -->" '
        $0 == marker { armed = 1; next }
        armed && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "$1"
}
if ! diff -u examples/csharp/QuickStart.cs <(snippet bindings/csharp/README.md examples/csharp/QuickStart.cs); then
    echo "tests/csharp/run.sh: bindings/csharp/README.md quick start differs from examples/csharp/QuickStart.cs" >&2
    exit 1
fi

compile() { # OUT ARGS...
    local out="$1"
    shift
    echo "+ $MCS ${MCSFLAGS[*]} -out:$BUILD/$out $*"
    "$MCS" "${MCSFLAGS[@]}" -out:"$BUILD/$out" "$@"
}
# The runtime on its own, as plain .NET and as Unity would see it on iOS
# (UNITY_5_3_OR_NEWER: Unity's AOT attribute, stubbed here; "__Internal").
compile Presence.Runtime.dll -target:library "${RUNTIME[@]}"
compile Presence.Runtime.Unity.dll -target:library -define:UNITY_5_3_OR_NEWER -define:UNITY_IOS \
    "${RUNTIME[@]}" tests/csharp/UnityStubs.cs
compile Presence.Tests.dll -target:library -r:"$BUILD/Presence.Runtime.dll" -r:"$NUNIT_FRAMEWORK" \
    bindings/csharp/Tests/Editor/*.cs
compile QuickStart.exe "${RUNTIME[@]}" tests/csharp/UnityStubs.cs examples/csharp/QuickStart.cs \
    tests/csharp/QuickStartDriver.cs
compile Lobby.exe "${RUNTIME[@]}" examples/csharp/Lobby.cs

# DllImport("presence") resolves to libpresence.so beside the exe or on LD_LIBRARY_PATH.
cp "$LIB" "$NEWTONSOFT" "$NUNIT_FRAMEWORK" "$BUILD/"
export LD_LIBRARY_PATH="$ROOT/$BUILD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "+ mono QuickStart.exe"
"$MONO" --debug "$BUILD/QuickStart.exe"
echo "+ mono Lobby.exe"
"$MONO" --debug "$BUILD/Lobby.exe"
echo "+ $NUNIT Presence.Tests.dll"
# nunit-console exits non-zero on any failure or error; the IL2CPP scan reads the sources.
PRESENCE_CSHARP_RUNTIME="$ROOT/bindings/csharp/Runtime" \
    "$NUNIT" -nologo -noshadow -labels -result="$BUILD/TestResult.xml" "$BUILD/Presence.Tests.dll"
