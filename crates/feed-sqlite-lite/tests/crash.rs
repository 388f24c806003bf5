//! SIGKILL crash test: a child process appends in batches and is killed at
//! random moments; after each kill, reopening shows every acknowledged
//! batch, no partial batch, and answers every query like a replay.
//! `FEED_CRASH_CYCLES` sets the number of cycles (default 20).

use std::path::Path;

use feed_conformance::{
    crash_child, crash_workload, sigkill_cycles, spawn_test_child, verify_after_crash,
};
use feed_sqlite_lite::{SqliteConfig, SqliteEventStore};

const ENV: &str = "FEED_CRASH_CHILD_DIR";
const SEED: u64 = 20_261_123;
const BATCHES: usize = 300;
const PER_BATCH: usize = 8;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The child: only does something when started by the parent test.
#[test]
#[ignore = "run as a child process by sigkill_cycles_lose_nothing"]
fn crash_child_process() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let work = crash_workload(SEED, BATCHES, PER_BATCH);
    rt().block_on(async {
        let store =
            SqliteEventStore::open(Path::new(&dir), &SqliteConfig::default()).expect("open store");
        crash_child(&store, &work).await;
    });
}

#[test]
fn sigkill_cycles_lose_nothing() {
    let cycles = std::env::var("FEED_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let work = crash_workload(SEED, BATCHES, PER_BATCH);
    let root = tempfile::tempdir().expect("temp dir");
    let rt = rt();
    let report = sigkill_cycles(
        root.path(),
        cycles,
        (5, 250),
        |dir| spawn_test_child("crash_child_process", ENV, dir),
        |dir, acked| {
            rt.block_on(async {
                let store = SqliteEventStore::open(dir, &SqliteConfig::default())
                    .map_err(|e| format!("reopen: {e}"))?;
                verify_after_crash(&store, &work, acked).await
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} SIGKILL cycles: {} batches acknowledged, {} found after reopening, none partial",
        report.cycles, report.acked, report.survived
    );
    assert_eq!(report.cycles, cycles);
    assert!(report.survived >= report.acked);
}
