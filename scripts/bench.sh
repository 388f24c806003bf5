#!/usr/bin/env bash
# The main job: `feed bench` on the embedded default — the lite profile
# (SQLite events, usearch vectors) beside the in-memory baseline. It
# generates a seeded 100,000-event social data set, runs each backend in its
# own process, prints the side-by-side table and writes
# feed-bench/bench.json and feed-bench/bench.svg. A fresh machine needs no
# set-up for it and builds in a few minutes.
#
#   scripts/bench.sh [feed bench args…]          lite + memory
#   scripts/bench.sh --all [feed bench args…]    also the reference profile
#                                                (DuckDB + LanceDB; its first
#                                                release build takes ~70 min
#                                                on 2 cores)
#
# Extra arguments go to `feed bench` (see `feed bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/feed/target}"
if [ "${1:-}" = "--all" ]; then
    shift
    scripts/setup.sh
    # The same package set as `cargo run --release -p feed-cli -p feed-lance
    # --example lance_bench`, so both share one release build of LanceDB.
    cargo build --release --locked -p feed-cli -p feed-lance --bins --examples
else
    cargo build --release --locked -p feed-cli --bin feed \
        --no-default-features --features lite,simd
fi
"$CARGO_TARGET_DIR/release/feed" bench "$@"
