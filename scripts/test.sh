#!/usr/bin/env bash
# The test command: set-up, formatting, lints, then every test of the
# workspace. PROPTEST_CASES sets the generated cases per property (CI: 128).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/feed/target}"
export PROPTEST_CASES="${PROPTEST_CASES:-128}"

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
