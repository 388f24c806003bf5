#!/usr/bin/env bash
# The size-optimised `feed` for small devices: the lite profile only
# (SQLite + usearch, no SIMD kernels, no embedder), built with the
# `release-small` profile (opt-level "z", LTO, one codegen unit,
# panic=abort, stripped), plus two flags a Cargo profile cannot carry:
#   -C relocation-model=static   a non-PIE executable: no dynamic
#                                relocation table (-90 KB)
#   -C force-unwind-tables=no    no unwind tables for Feed's own code
#                                (panic=abort never unwinds; std's stay)
# and C code (SQLite, BLAKE3) without unwind tables. The flags apply to the
# target only (hence --target), not to build scripts or proc macros.
# Prints the binary's path; extra arguments go to cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/feed/target}"
host="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-C force-unwind-tables=no -C relocation-model=static" \
CFLAGS="-fno-asynchronous-unwind-tables -fno-unwind-tables" \
    cargo build --locked --target "$host" --profile release-small \
    -p feed-cli --no-default-features --features lite "$@" >&2
echo "$CARGO_TARGET_DIR/$host/release-small/feed"
