#!/usr/bin/env bash
# Copy the presence headers and static libraries into the plugin's ThirdParty folder, the
# paths Presence.Build.cs links from. Usage:
#   bindings/unreal/stage.sh [PLUGIN_DIR] [PLATFORM=LIBRARY ...]
# PLUGIN_DIR defaults to bindings/unreal/Presence. Without PLATFORM=LIBRARY pairs it stages
# this machine's target/release/libpresence.a as Linux; name others explicitly, e.g.
#   stage.sh Plugins/Presence Win64=presence.lib Android/arm64-v8a=libpresence.a
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PLUGIN="${1:-$ROOT/bindings/unreal/Presence}"
shift || true
THIRD_PARTY="$PLUGIN/Source/ThirdParty/PresenceLibrary"

mkdir -p "$THIRD_PARTY/include"
cp "$ROOT/include/presence.h" "$ROOT/bindings/cpp/presence.hpp" "$THIRD_PARTY/include/"
if [[ $# -eq 0 ]]; then
    set -- "Linux=$ROOT/target/release/libpresence.a"
fi
for pair in "$@"; do
    platform="${pair%%=*}"
    library="${pair#*=}"
    if [[ ! -f "$library" ]]; then
        echo "stage.sh: $library is missing (cargo build --release --target ...)" >&2
        exit 1
    fi
    mkdir -p "$THIRD_PARTY/lib/$platform"
    cp "$library" "$THIRD_PARTY/lib/$platform/"
    echo "staged $library as lib/$platform/$(basename "$library")"
done
