#!/usr/bin/env bash
# The test command: set-up, formatting, lints, then every test of the
# workspace, in two groups at once. PROPTEST_CASES sets the generated
# cases per property (CI: 128).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/feed/target}"
export PROPTEST_CASES="${PROPTEST_CASES:-128}"

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-run
# Two groups of test binaries at once: the reference profile's (DuckDB,
# LanceDB) and the rest, each about half the time. Cargo holds its lock on
# the target directory only while it builds, so the two runs overlap.
ref_log="$(mktemp)"
trap 'rm -f "$ref_log"' EXIT
cargo test --locked -p feed-duckdb -p feed-lance >"$ref_log" 2>&1 &
ref=$!
rest=0
cargo test --workspace --locked --exclude feed-duckdb --exclude feed-lance || rest=$?
ref_rc=0
wait "$ref" || ref_rc=$?
echo "--- the reference profile's tests (run beside the others):"
cat "$ref_log"
if [ "$rest" -ne 0 ] || [ "$ref_rc" -ne 0 ]; then
    echo "tests failed (the others: exit $rest; the reference profile's: exit $ref_rc)" >&2
    exit 1
fi
