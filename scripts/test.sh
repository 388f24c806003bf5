#!/usr/bin/env bash
# The test command: set-up, formatting, lints, then every test of the
# workspace, two test binaries at a time. PROPTEST_CASES sets the generated
# cases per property (CI: 128).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/feed/target}"
export PROPTEST_CASES="${PROPTEST_CASES:-128}"

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every test binary of the workspace, built by one cargo call and run two
# at a time (scripts/run-tests.py says why), then the doc tests.
cargo test --workspace --locked --no-run --message-format=json-render-diagnostics \
    | python3 scripts/run-tests.py
cargo test --workspace --locked --doc
