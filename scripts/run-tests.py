#!/usr/bin/env python3
"""Runs the workspace's test binaries two at a time (scripts/test.sh).

`cargo test` runs one test binary after another, and most of ours keep one
core busy at most: the DuckDB suite, the crash tests (a child process
killed again and again) and the command-line tests (a `feed` process per
call) wait on fsync and on children much of the time. This script reads
the JSON messages of `cargo test --workspace --no-run
--message-format=json` on stdin, then runs every test binary as cargo
would (from its package's directory, with CARGO_MANIFEST_DIR set), LANES
at once, the slowest first, printing each binary's whole output when it
ends. Building stays cargo's: with `-p` or `--exclude`, cargo resolves
features for another set of packages and rebuilds their dependencies, so
this script never asks cargo to build anything.

Exit status: 0 when every binary passed, 1 otherwise (each failure named).
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

try:
    LANES = max(1, int(os.environ.get("FEED_TEST_LANES", "2")))
except ValueError:
    sys.exit("run-tests: FEED_TEST_LANES must be a whole number")

# The slowest binaries, slowest first, so that the lanes end close together:
# seconds each took in one `cargo test --workspace` (2026-12-01,
# PROPTEST_CASES=128, one at a time). Binaries not listed come last, in
# cargo's order.
SLOW_FIRST = [
    ("feed-cli", "cli"),  # 143
    ("feed-duckdb", "conformance"),  # 117
    ("feed-duckdb", "crash"),  # 115
    ("feed-cli", "reference_index_crash"),  # 73
    ("feed-cli", "corruption"),  # 42
    ("feed-lance", "conformance"),  # 41
    ("feed-cli", "full_disk"),  # 32
    ("feed-sqlite-lite", "index_crash"),  # 32
    ("feed-sqlite-lite", "vectors"),  # 17
    ("feed-sqlite-lite", "crash"),  # 15
    ("feed-sqlite-lite", "conformance"),  # 12
]


def binaries(messages):
    """(package, target, kind, executable, package directory) per test binary."""
    found = []
    for line in messages:
        line = line.strip()
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        manifest = msg["manifest_path"]
        with open(manifest, encoding="utf-8") as f:
            named = re.search(r'^name\s*=\s*"([^"]+)"', f.read(), re.M)
        name = named.group(1) if named else os.path.basename(os.path.dirname(manifest))
        found.append((name, target["name"], target["kind"][0], msg["executable"],
                      os.path.dirname(manifest)))
    return found


def main():
    tests = binaries(sys.stdin)
    if not tests:
        print("run-tests: no test binaries in cargo's messages", file=sys.stderr)
        return 1

    def rank(t):
        key = (t[0], t[1])
        return SLOW_FIRST.index(key) if key in SLOW_FIRST else len(SLOW_FIRST)

    queue = sorted(tests, key=rank)
    lock = threading.Lock()
    failures = []

    def lane():
        while True:
            with lock:
                if not queue:
                    return
                package, target, kind, exe, pkg_dir = queue.pop(0)
            env = dict(os.environ, CARGO_MANIFEST_DIR=pkg_dir, CARGO_PKG_NAME=package)
            start = time.monotonic()
            done = subprocess.run([exe], cwd=pkg_dir, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, check=False)
            took = time.monotonic() - start
            with lock:
                print(f"     Running {package} {kind} {target} ({exe}) [{took:.1f} s]", flush=True)
                sys.stdout.write(done.stdout.decode("utf-8", "replace"))
                sys.stdout.flush()
                if done.returncode != 0:
                    failures.append(f"{package} {kind} {target}: exit {done.returncode}")

    threads = [threading.Thread(target=lane) for _ in range(LANES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        print("run-tests: failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"run-tests: {len(tests)} test binaries passed, {LANES} at a time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
