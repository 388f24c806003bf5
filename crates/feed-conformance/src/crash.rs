//! Crash testing: a child process appends a fixed workload batch by batch
//! and acknowledges each batch on stdout; the parent kills it with SIGKILL at
//! a random moment, reopens the store and checks that every acknowledged
//! batch is there, no batch is there in part, and every query answers as a
//! replay of the surviving batches into `MemoryEventStore` does.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use feed_core::validate::now_ns;
use feed_core::{AppendStatus, EventId, EventStore, FeedEvent, MemoryEventStore};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::diff::compare_stores;
use crate::gen::{self, did, Realiser, QUERY_TAGS};
use crate::vectors::Rng;

/// The workload: `batches` batches of `per_batch` generated events (all
/// seven types, some invalid, some arriving before their targets), the same
/// in every process for the same seed.
pub fn crash_workload(seed: u64, batches: usize, per_batch: usize) -> Vec<Vec<FeedEvent>> {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let mut real = Realiser::default();
    let now = now_ns();
    (0..batches)
        .map(|_| {
            (0..per_batch)
                .map(|_| {
                    let g = gen::gen_event()
                        .new_tree(&mut runner)
                        .map(|t| t.current())
                        .unwrap_or_else(|e| panic!("generator failed: {e}"));
                    real.realise(&g, now)
                })
                .collect()
        })
        .collect()
}

/// The child's side: append every batch, printing `ack N` after batch N
/// has been appended (and so, per the contract, is durable).
pub async fn crash_child<S: EventStore>(store: &S, work: &[Vec<FeedEvent>]) {
    let mut out = std::io::stdout();
    for (i, batch) in work.iter().enumerate() {
        if let Err(e) = store.append(batch.clone()).await {
            eprintln!("append failed: {e}");
            std::process::exit(1);
        }
        // If stdout is gone the parent is gone too; nothing to report to.
        let _ = writeln!(out, "ack {i}");
        let _ = out.flush();
    }
}

/// Checks a reopened store after a crash; returns how many batches survived.
pub async fn verify_after_crash<S: EventStore>(
    store: &S,
    work: &[Vec<FeedEvent>],
    acked: usize,
) -> Result<usize, String> {
    let replay = MemoryEventStore::new();
    let mut survived = work.len();
    for (i, batch) in work.iter().enumerate() {
        let statuses = replay
            .append(batch.clone())
            .await
            .map_err(|e| e.to_string())?;
        let accepted: Vec<EventId> = batch
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| **s == AppendStatus::Accepted)
            .map(|(e, _)| e.id)
            .collect();
        let mut present = 0;
        for id in &accepted {
            if store
                .stored(*id)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                present += 1;
            }
        }
        if present == accepted.len() {
            continue;
        }
        if present > 0 {
            return Err(format!(
                "batch {i} is partial: {present} of {} events",
                accepted.len()
            ));
        }
        survived = i;
        break;
    }
    if survived < acked {
        return Err(format!(
            "{acked} batches were acknowledged but only {survived} survived"
        ));
    }
    // Batch ids are fresh per batch: nothing of a later batch may be there.
    for (i, batch) in work.iter().enumerate().skip(survived + 1) {
        for e in batch {
            if store
                .stored(e.id)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Err(format!(
                    "event {} of batch {i} is present after a gap",
                    e.id
                ));
            }
        }
    }
    let replay = MemoryEventStore::new();
    for batch in &work[..survived] {
        replay
            .append(batch.clone())
            .await
            .map_err(|e| e.to_string())?;
    }
    let max_id = work.iter().flatten().map(|e| e.id.0).max().unwrap_or(0);
    let ids: Vec<EventId> = (0..=max_id + 1).map(EventId).collect();
    let dids: Vec<_> = (0..gen::AUTHORS as u8).map(did).collect();
    compare_stores(&replay, store, &ids, &dids, &QUERY_TAGS).await?;
    Ok(survived)
}

/// What one run of [`sigkill_cycles`] saw.
#[derive(Clone, Debug, Default)]
pub struct CrashReport {
    /// Cycles run.
    pub cycles: usize,
    /// Batches acknowledged before each kill, summed.
    pub acked: usize,
    /// Batches found after reopening, summed.
    pub survived: usize,
}

/// Runs `cycles` SIGKILL cycles. `spawn(dir)` starts a child that runs
/// [`crash_child`] on a store in `dir` with stdout piped; `check(dir,
/// acked)` reopens the store and runs [`verify_after_crash`]. Kill moments
/// are drawn between `min_ms` and `max_ms` after the first acknowledgement.
pub fn sigkill_cycles(
    root: &Path,
    cycles: usize,
    (min_ms, max_ms): (u64, u64),
    spawn: impl Fn(&Path) -> std::io::Result<Child>,
    check: impl Fn(&Path, usize) -> Result<usize, String>,
) -> Result<CrashReport, String> {
    let seed = now_ns() as u64;
    let mut rng = Rng::new(seed);
    let mut report = CrashReport::default();
    for cycle in 0..cycles {
        let dir: PathBuf = root.join(format!("crash-{cycle}"));
        let mut child = spawn(&dir).map_err(|e| format!("spawning the child: {e}"))?;
        let stdout = child.stdout.take().ok_or("child stdout is not piped")?;
        let acked = Arc::new(AtomicUsize::new(0));
        let first = Arc::new(std::sync::Barrier::new(2));
        let reader = {
            let acked = acked.clone();
            let first = first.clone();
            std::thread::spawn(move || {
                let mut signalled = false;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(n) = line
                        .strip_prefix("ack ")
                        .and_then(|n| n.parse::<usize>().ok())
                    {
                        acked.store(n + 1, Ordering::SeqCst);
                        if !signalled {
                            first.wait();
                            signalled = true;
                        }
                    }
                }
                if !signalled {
                    first.wait();
                }
            })
        };
        first.wait();
        let wait = min_ms + rng.next_u64() % (max_ms - min_ms).max(1);
        std::thread::sleep(Duration::from_millis(wait));
        // Child::kill sends SIGKILL on Unix.
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        let n = acked.load(Ordering::SeqCst);
        let survived = check(&dir, n).map_err(|e| {
            format!("cycle {cycle} (seed {seed}, killed after {wait} ms, {n} acked): {e}")
        })?;
        report.cycles += 1;
        report.acked += n;
        report.survived += survived;
    }
    Ok(report)
}

/// Starts the current test binary as a crash child running the (ignored)
/// test `test_name`, with `env_var` set to the store directory.
pub fn spawn_test_child(test_name: &str, env_var: &str, dir: &Path) -> std::io::Result<Child> {
    std::process::Command::new(std::env::current_exe()?)
        .args([
            test_name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env_var, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
}
