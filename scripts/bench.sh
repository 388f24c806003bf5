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
cargo run --release --locked -p feed-cli --bin feed -- bench "$@"
