#!/usr/bin/env bash
# The size-optimised `feed` for small devices: the lite profile only
# (SQLite + usearch, no SIMD kernels, no embedder), built with the
# `release-small` profile (opt-level "z", LTO, one codegen unit,
# panic=abort, stripped), plus flags a Cargo profile cannot carry:
#   -C target-feature=+crt-static  a static executable: libc, libm and
#                                  libstdc++ linked in, only what is used
#                                  (peak RSS querying 8.1 MiB against
#                                  10.4 dynamic: shared libraries are
#                                  mapped nearly whole; 4.0 MB against
#                                  2.43 MB on disk). `--dynamic` leaves
#                                  it out.
#   -C relocation-model=static     a non-PIE executable: no dynamic
#                                  relocation table (-90 KB)
#   -C force-unwind-tables=no      no unwind tables for Feed's own code
#                                  (panic=abort never unwinds; std's stay)
# and C code (SQLite, BLAKE3) without unwind tables. The flags apply to the
# target only (hence --target), not to build scripts or proc macros.
# usearch's C++ is compiled at -Os instead of the -O3 its build script
# forces (scripts/cxx-small.sh; -206 KB).
# Prints the binary's path; other arguments go to cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/feed/target}"
host="$(rustc -vV | sed -n 's/^host: //p')"
flags="-C force-unwind-tables=no -C relocation-model=static"
# scripts/small-include/iostream leaves the standard streams uninitialised:
# a reference to any of them fails the link (--wrap turns it into a
# reference to an undefined __wrap_ symbol) instead of crashing at run time.
for s in _ZSt3cin _ZSt4cout _ZSt4cerr _ZSt4clog _ZSt4wcin _ZSt5wcout _ZSt5wcerr _ZSt5wclog; do
    flags="$flags -C link-arg=-Wl,--wrap=$s"
done
args=()
for a in "$@"; do
    if [ "$a" = "--dynamic" ]; then
        dynamic=1
    else
        args+=("$a")
    fi
done
if [ -z "${dynamic:-}" ]; then
    flags="$flags -C target-feature=+crt-static"
fi
RUSTFLAGS="$flags" \
CFLAGS="-fno-asynchronous-unwind-tables -fno-unwind-tables" \
CXX="$PWD/scripts/cxx-small.sh" \
CXXFLAGS="-I$PWD/scripts/small-include" \
    cargo build --locked --target "$host" --profile release-small \
    -p feed-cli --no-default-features --features lite ${args[@]+"${args[@]}"} >&2
echo "$CARGO_TARGET_DIR/$host/release-small/feed"
