#!/usr/bin/env bash
# Builds the C library and installs what a C or C++ developer expects under a prefix:
#
#   PREFIX/lib/libpresence.so.VERSION      shared library, SONAME libpresence.so.0
#   PREFIX/lib/libpresence.so.0, .so       the usual symlinks
#   PREFIX/lib/libpresence.a               static library
#   PREFIX/include/presence.h              the C ABI
#   PREFIX/include/presence.hpp            the header-only C++ layer
#   PREFIX/lib/pkgconfig/presence.pc       pkg-config: `pkg-config --cflags --libs presence`
#   PREFIX/lib/cmake/presence/             CMake: find_package(presence) -> presence::presence
#                                          (shared) and presence::presence_static
#
# Usage: scripts/install.sh [--prefix DIR] [--libdir SUBDIR]   (defaults: /usr/local, lib)
#
# It does what cargo-c does for this crate, with nothing to install first: one release build
# in its own target folder (CARGO_TARGET_DIR or target, then /install) that links the shared
# library with its SONAME. The SONAME stays libpresence.so.0 for as long as the ABI only grows
# (every ABI version keeps the previous one's functions); the file name carries the crate
# version. Linux only (ELF SONAMEs).
set -euo pipefail

prefix=/usr/local
libsub=lib
while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --libdir) libsub="${2:?--libdir needs a folder under the prefix}"; shift 2 ;;
        --libdir=*) libsub="${1#--libdir=}"; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "scripts/install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ "$(uname -s)" != Linux ]]; then
    echo "scripts/install.sh: only Linux is supported (ELF SONAMEs); use target/release/ by hand elsewhere" >&2
    exit 1
fi
case "$libsub" in /*|*..*) echo "scripts/install.sh: --libdir is a folder under the prefix, like lib64" >&2; exit 2 ;; esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
soname=libpresence.so.0
target="${CARGO_TARGET_DIR:-$root/target}/install"

# --print native-static-libs names what a static link needs besides libpresence.a; cargo
# replays the note when the build is fresh.
build_log="$(mktemp)"
trap 'rm -f "$build_log"' EXIT
cargo rustc --release --lib -p presence-engine --target-dir "$target" \
    -- -C "link-arg=-Wl,-soname,$soname" --print native-static-libs 2>&1 | tee "$build_log" >&2
static_libs="$(sed -n 's/.*native-static-libs: //p' "$build_log" | tail -n1)"
static_libs="${static_libs:--lgcc_s -lutil -lrt -lpthread -lm -ldl -lc}"

prefix="$(mkdir -p "$prefix" && cd "$prefix" && pwd)"
libdir="$prefix/$libsub"
includedir="$prefix/include"
mkdir -p "$libdir/pkgconfig" "$libdir/cmake/presence" "$includedir"

install -m 755 "$target/release/libpresence.so" "$libdir/libpresence.so.$version"
ln -sf "libpresence.so.$version" "$libdir/$soname"
ln -sf "$soname" "$libdir/libpresence.so"
install -m 644 "$target/release/libpresence.a" "$libdir/libpresence.a"
# The static library carries the standard library's debug info (about 8 MB); release
# artifacts ship without it, as the shared library does.
if command -v strip >/dev/null; then
    strip --strip-debug "$libdir/libpresence.a"
else
    echo "install.sh: strip (binutils) not found: libpresence.a keeps its debug info" >&2
fi
install -m 644 include/presence.h "$includedir/presence.h"
install -m 644 bindings/cpp/presence.hpp "$includedir/presence.hpp"

# pkg-config; paths relative to the .pc file (pcfiledir) so the prefix can be moved.
up="$(echo "$libsub/pkgconfig" | sed 's|[^/][^/]*|..|g')"
cat > "$libdir/pkgconfig/presence.pc" <<PC
prefix=\${pcfiledir}/$up
libdir=\${prefix}/$libsub
includedir=\${prefix}/include

Name: presence
Description: Embeddable user-presence engine (C ABI)
Version: $version
Libs: -L\${libdir} -lpresence
Libs.private: $static_libs
Cflags: -I\${includedir}
PC

# CMake config package, relocatable the same way.
cmake_static_libs="$(echo "$static_libs" | sed 's/-l//g; s/ /;/g')"
up="$(echo "$libsub/cmake/presence" | sed 's|[^/][^/]*|..|g')"
cat > "$libdir/cmake/presence/presenceConfig.cmake" <<CMAKE
# find_package(presence) for the presence engine's C library, installed by scripts/install.sh.
# Targets: presence::presence (shared, SONAME $soname) and presence::presence_static.
get_filename_component(_presence_prefix "\${CMAKE_CURRENT_LIST_DIR}/$up" ABSOLUTE)

if(NOT TARGET presence::presence)
  add_library(presence::presence SHARED IMPORTED)
  set_target_properties(presence::presence PROPERTIES
    IMPORTED_LOCATION "\${_presence_prefix}/$libsub/libpresence.so.$version"
    IMPORTED_SONAME "$soname"
    INTERFACE_INCLUDE_DIRECTORIES "\${_presence_prefix}/include")
endif()

if(NOT TARGET presence::presence_static)
  add_library(presence::presence_static STATIC IMPORTED)
  set_target_properties(presence::presence_static PROPERTIES
    IMPORTED_LOCATION "\${_presence_prefix}/$libsub/libpresence.a"
    INTERFACE_INCLUDE_DIRECTORIES "\${_presence_prefix}/include"
    INTERFACE_LINK_LIBRARIES "$cmake_static_libs")
endif()

unset(_presence_prefix)
CMAKE
cat > "$libdir/cmake/presence/presenceConfigVersion.cmake" <<CMAKE
# Any requested version up to this one is compatible: the ABI only grows.
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
CMAKE

echo "installed presence $version under $prefix (lib: $libdir)"
