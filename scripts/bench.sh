#!/usr/bin/env bash
# The main job: `feed bench` on the embedded default — generates a seeded
# 100,000-event social data set, runs every compiled backend (plus the
# in-memory baseline) in its own process, prints the side-by-side table and
# writes feed-bench/bench.json and feed-bench/bench.svg. Extra arguments go
# to `feed bench` (see `feed bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/feed/target}"
scripts/setup.sh
# The same package set as `cargo run --release -p feed-cli -p feed-lance
# --example lance_bench`, so both share one release build of LanceDB.
cargo build --release --locked -p feed-cli -p feed-lance --bins --examples
"$CARGO_TARGET_DIR/release/feed" bench "$@"
