//! Damaged stores (issue: hostile input, crashes and corruption): store
//! files truncated, emptied, removed or overwritten with garbage, on the
//! lite and the reference backend. Every command run on the damage exits
//! with a status of SPEC §7 and a message of its own, never an escaped
//! panic; `feed check` exits 0 or 4; and whatever `feed check` passes
//! still exports exactly what was stored.

mod common;

use std::path::{Path, PathBuf};

use common::feed;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        let q = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &q);
        } else {
            std::fs::copy(&p, &q).expect("copy");
        }
    }
}

/// Files under `dir` whose path contains `part`, sorted.
fn files_matching(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(part) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// What is done to a file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Cut to half its length.
    Halve,
    /// Cut to nothing.
    Empty,
    /// Deleted.
    Remove,
    /// Eight 4 KiB blocks at seeded places overwritten with seeded bytes.
    Garble(u64),
    /// One byte in the middle inverted.
    Flip,
}

fn damage(path: &Path, how: Damage) {
    let mut bytes = std::fs::read(path).expect("read");
    match how {
        Damage::Halve => bytes.truncate(bytes.len() / 2),
        Damage::Empty => bytes.clear(),
        Damage::Remove => {
            std::fs::remove_file(path).expect("remove");
            return;
        }
        Damage::Garble(seed) => {
            let mut x = seed | 1;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for _ in 0..8 {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() as usize) % bytes.len();
                let end = (at + 4096).min(bytes.len());
                for b in &mut bytes[at..end] {
                    *b = next() as u8;
                }
            }
        }
        Damage::Flip => {
            let mid = bytes.len() / 2;
            if let Some(b) = bytes.get_mut(mid) {
                *b = !*b;
            }
        }
    }
    std::fs::write(path, bytes).expect("write");
}

fn damaged_stores_fail_cleanly(backend: &str, targets: &[&str]) {
    let tmp = tempfile::tempdir().expect("tmp");
    let intact = tmp.path().join("intact");
    let data = tmp.path().join("data.jsonl");
    let more = tmp.path().join("more.jsonl");
    common::gen(
        &intact,
        &data,
        &["--events", "600", "--seed", "3", "--vectors"],
    );
    // The last 50 events are ingested again after the damage.
    let text = std::fs::read_to_string(&data).expect("data");
    let lines: Vec<&str> = text.lines().collect();
    let (first, last) = lines.split_at(550);
    std::fs::write(&data, first.join("\n") + "\n").expect("write");
    std::fs::write(&more, last.join("\n") + "\n").expect("write");
    let i = feed(
        &intact,
        &["--backend", backend, "ingest", data.to_str().expect("path")],
        None,
    );
    assert_eq!(
        i.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&i.stderr)
    );
    let want = feed(&intact, &["export"], None).stdout;
    let c = feed(&intact, &["check"], None);
    assert_eq!(c.status.code(), Some(0), "the intact store passes check");

    let mut cases = 0;
    let mut detected = 0;
    for (n, target) in targets.iter().enumerate() {
        let files = files_matching(&intact, target);
        assert!(!files.is_empty(), "{backend}: no file matches {target}");
        for how in [
            Damage::Halve,
            Damage::Empty,
            Damage::Remove,
            Damage::Garble(n as u64 + 11),
            Damage::Flip,
        ] {
            let dir = tmp.path().join(format!("case{cases}"));
            copy_dir(&intact, &dir);
            // The same damage to every file that matches (all data files
            // of a Lance table, say).
            for f in &files {
                let rel = f.strip_prefix(&intact).expect("under the store");
                damage(&dir.join(rel), how);
            }
            let case = format!("{backend}: {how:?} {target}");
            let check = feed(&dir, &["check"], None);
            let export = feed(&dir, &["export"], None);
            let search = feed(&dir, &["search", "a quiet morning", "--k", "3"], None);
            let ingest = feed(&dir, &["ingest", more.to_str().expect("path")], None);
            for (what, o, allowed) in [
                ("check", &check, &[0, 4][..]),
                ("export", &export, &[0, 4][..]),
                ("search", &search, &[0, 4][..]),
                ("ingest", &ingest, &[0, 3, 4][..]),
            ] {
                let err = String::from_utf8_lossy(&o.stderr);
                // An escaped panic exits 101 (or by a signal under abort).
                let code = o.status.code();
                assert!(
                    code.is_some_and(|c| allowed.contains(&c)),
                    "{case}: {what} exited {code:?}: {err}"
                );
                if code != Some(0) {
                    // A message of feed's own says what failed (a
                    // dependency's caught panic may be printed before it).
                    assert!(
                        err.lines().any(|l| l.starts_with("feed: ")),
                        "{case}: {what} failed without saying why: {err}"
                    );
                }
            }
            if check.status.code() == Some(0) {
                // Damage check passes must not have changed what is stored.
                assert_eq!(
                    export.status.code(),
                    Some(0),
                    "{case}: check passed, export failed"
                );
                assert!(
                    export.stdout == want,
                    "{case}: check passed, export differs"
                );
            } else {
                detected += 1;
            }
            cases += 1;
        }
    }
    eprintln!("{backend}: {detected} of {cases} damaged stores failed check");
    // Most damage is caught; the test is not vacuous.
    assert!(
        detected * 2 >= cases,
        "{backend}: {detected} of {cases} detected"
    );
}

#[test]
fn damaged_lite_stores_fail_cleanly() {
    damaged_stores_fail_cleanly(
        "lite",
        &[
            "lite/events.sqlite",
            "lite/vectors/vectors.sqlite",
            "feed.json",
        ],
    );
}

#[test]
fn damaged_reference_stores_fail_cleanly() {
    damaged_stores_fail_cleanly(
        "reference",
        &[
            "reference/events.duckdb",
            "posts.lance/data/",
            "posts.lance/_versions/",
            "reference/vectors/checkpoint",
            "feed.json",
        ],
    );
}
