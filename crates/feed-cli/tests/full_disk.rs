//! Full disks (issue: hostile input, crashes and corruption): `feed ingest`
//! into a store on a small tmpfs, on the lite and the reference backend.
//!
//! Each case mounts a tmpfs a fraction of the size the finished store
//! needs, ingests a generated data set into it, then fills what space is
//! left and checks that the store still reads: `stats`, `check` and
//! `search` succeed and `export` gives exactly the events the ingest
//! reported stored, each as the full store has it. A failed ingest must
//! exit 4 with the reason (no panic) after printing what it stored. Then
//! the filesystem grows, the same ingest runs again and the store ends
//! exactly like one that never ran out of space.
//!
//! The mounts are made in a private user and mount namespace: the test
//! runs itself again under `unshare -Urm` (util-linux), so it needs no
//! root and leaves nothing mounted.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{feed, lines, stdout};

/// Set in the child: the directory to work in.
const CHILD_ENV: &str = "FEED_FULL_DISK_DIR";

/// Generated events (with embeddings) per case.
const EVENTS: &str = "3000";

/// Tmpfs sizes as fractions of the finished store's size, per backend.
/// Lite: the events run out of space (0.3, 1.0: the write-ahead log needs
/// room beyond the finished file), then only the vector index does (1.3,
/// 1.6). Reference: DuckDB's log runs out (0.3), then its checkpoint when
/// the ingest flushes (1.05).
fn fractions(backend: &str) -> &'static [f64] {
    match backend {
        "lite" => &[0.3, 1.0, 1.3, 1.6],
        _ => &[0.3, 1.05],
    }
}

#[test]
fn full_disk_lite() {
    in_namespace("lite");
}

#[test]
fn full_disk_reference() {
    in_namespace("reference");
}

/// The child side of [`full_disk_lite`]: does nothing unless run by it.
#[test]
fn full_disk_child_lite() {
    child("lite");
}

/// The child side of [`full_disk_reference`].
#[test]
fn full_disk_child_reference() {
    child("reference");
}

fn in_namespace(backend: &str) {
    let tmp = tempfile::tempdir().expect("tmp");
    let me = std::env::current_exe().expect("test binary");
    let out = Command::new("unshare")
        .args(["-Urm", "--"])
        .arg(me)
        .args([
            "--exact",
            &format!("full_disk_child_{backend}"),
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, tmp.path())
        .output()
        .expect("unshare (util-linux) runs; user namespaces are needed to mount a tmpfs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "the full-disk cases failed in the namespace"
    );
    // The child really ran its cases (and did not return early).
    assert!(text.contains("1 passed"), "no child test ran");
    assert!(
        text.contains(&format!("{backend}: every full-disk case held")),
        "the child did not finish its cases"
    );
}

fn child(backend: &str) {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let data = dir.join("data.jsonl");
    common::gen(
        &dir.join("gen"),
        &data,
        &["--events", EVENTS, "--seed", "11", "--vectors"],
    );
    let total = std::fs::read_to_string(&data)
        .expect("data")
        .lines()
        .count() as u64;

    // The store as it ends with room to spare.
    let full = dir.join("full");
    let i = ingest(&full, backend, &data);
    assert_eq!(i.status.code(), Some(0), "{}", err(&i));
    let want = export(&full);
    assert_eq!(want.len() as u64, total, "every generated event is stored");
    let want_set: BTreeSet<&String> = want.iter().collect();
    let need = du(&full);
    eprintln!("{backend}: {total} events, the finished store takes {need} bytes");

    let mut outcomes = Vec::new();
    let mut index_ran_out = false;
    for (n, f) in fractions(backend).iter().enumerate() {
        let mnt = dir.join(format!("mnt{n}"));
        std::fs::create_dir_all(&mnt).expect("mkdir");
        let kib = ((need as f64 * f) as u64 / 1024).max(256);
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"],
            &mnt,
        );
        let store = mnt.join("store");

        // 1. Ingest until the space runs out.
        let i = ingest(&store, backend, &data);
        let code = i.status.code();
        assert!(
            matches!(code, Some(0 | 4)),
            "{backend} at {kib} KiB: ingest exits 0 or 4, got {code:?}: {}",
            err(&i)
        );
        assert!(!err(&i).contains("panicked"), "{}", err(&i));
        let first = summary(&i);
        if code == Some(4) {
            let e = err(&i);
            assert!(
                e.contains("No space left on device") || e.contains("disk is full"),
                "{backend} at {kib} KiB: the message names the cause: {e}"
            );
        }

        // 2. No room at all now: the store must still read.
        let filler = fill(&mnt);
        let stats = feed(&store, &["stats"], None);
        assert_eq!(stats.status.code(), Some(0), "stats: {}", err(&stats));
        let check = feed(&store, &["check"], None);
        assert_eq!(check.status.code(), Some(0), "check: {}", err(&check));
        assert!(stdout(&check).contains("\"ok\":true"), "{}", stdout(&check));
        let got = export(&store);
        assert_eq!(
            got.len() as u64,
            first.accepted,
            "{backend} at {kib} KiB: export gives what ingest reported stored"
        );
        for line in &got {
            assert!(want_set.contains(line), "stored as given: {line}");
        }
        let search = feed(&store, &["search", "morning coffee", "--k", "3"], None);
        assert_eq!(search.status.code(), Some(0), "search: {}", err(&search));
        let lag = json_field(&stdout(&stats), "index_lag");
        index_ran_out |= code == Some(0) && lag > 0;

        // 3. Room again: the same ingest finishes the job.
        std::fs::remove_file(&filler).expect("remove filler");
        let more = need * 2 / 1024 + 16 * 1024;
        run("mount", &["-o", &format!("remount,size={more}k")], &mnt);
        let again = ingest(&store, backend, &data);
        assert_eq!(again.status.code(), Some(0), "re-ingest: {}", err(&again));
        let s2 = summary(&again);
        assert_eq!(s2.accepted + s2.duplicate, total, "{s2:?}");
        let check = feed(&store, &["check"], None);
        assert!(stdout(&check).contains("\"ok\":true"), "{}", stdout(&check));
        assert!(
            stdout(&check).contains("\"index_lag\":0"),
            "the index caught up: {}",
            stdout(&check)
        );
        assert_eq!(export(&store), want, "{backend} at {kib} KiB: ends whole");
        run("umount", &[], &mnt);
        outcomes.push(format!(
            "{f:.2} of the size ({kib} KiB): ingest exit {}, {} stored, resume at {}, \
             index lag when full {lag}; after growing: {} accepted, {} duplicate",
            code.unwrap_or(-1),
            first.accepted,
            resume_line(&i).map_or("-".into(), |l| l.to_string()),
            s2.accepted,
            s2.duplicate
        ));
        if n == 0 {
            assert_eq!(
                code,
                Some(4),
                "the smallest filesystem must run out while events are stored"
            );
        }
    }
    for o in &outcomes {
        eprintln!("{backend}: {o}");
    }
    if backend == "lite" {
        assert!(
            index_ran_out,
            "a case where every event is stored and only the index runs out of space"
        );
    }
    eprintln!("{backend}: every full-disk case held");
}

fn ingest(store: &Path, backend: &str, data: &Path) -> Output {
    feed(
        store,
        &[
            "--backend",
            backend,
            "ingest",
            "--batch",
            "250",
            data.to_str().expect("path"),
        ],
        None,
    )
}

fn export(store: &Path) -> Vec<String> {
    let e = feed(store, &["export"], None);
    assert_eq!(e.status.code(), Some(0), "export: {}", err(&e));
    lines(&e)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[derive(Debug)]
struct Summary {
    accepted: u64,
    duplicate: u64,
}

/// The summary line `ingest` prints, even when it stops early.
fn summary(o: &Output) -> Summary {
    let text = stdout(o);
    let line = text
        .lines()
        .find(|l| l.contains("\"accepted\""))
        .unwrap_or_else(|| panic!("ingest prints its summary: {text} / {}", err(o)));
    Summary {
        accepted: json_field(line, "accepted"),
        duplicate: json_field(line, "duplicate"),
    }
}

fn json_field(text: &str, key: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON");
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {text}"))
}

/// The line a stopped ingest says to resume from.
fn resume_line(o: &Output) -> Option<u64> {
    let e = err(o);
    let rest = e.split("stopped at line ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let m = e.metadata().expect("metadata");
        n += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    n
}

/// Writes a file in `dir` until the filesystem refuses: no space is left.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0x5a_u8; 64 * 1024];
    let mut small = vec![0x5a_u8; 512];
    loop {
        if f.write_all(&block).is_err() {
            break;
        }
    }
    // Then the last scraps a bigger write could not take.
    while f.write_all(&small).is_ok() {}
    small.truncate(1);
    while f.write_all(&small).is_ok() {}
    path
}

fn run(cmd: &str, args: &[&str], target: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .arg(target)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} runs: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} {}: {}",
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
