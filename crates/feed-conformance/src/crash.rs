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
    append_and_ack(work, |b| store.append(b)).await;
}

/// Appends every batch with `append` (a store's or a facade's), printing
/// `ack N` on stdout once batch N is appended; exits the process if an
/// append fails.
pub async fn append_and_ack<F, Fut, T, E>(work: &[Vec<FeedEvent>], mut append: F)
where
    F: FnMut(Vec<FeedEvent>) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut out = std::io::stdout();
    for (i, batch) in work.iter().enumerate() {
        if let Err(e) = append(batch.clone()).await {
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
    let ids = sample_ids(work, survived);
    let dids: Vec<_> = (0..gen::AUTHORS as u8).map(did).collect();
    compare_stores(&replay, store, &ids, &dids, &QUERY_TAGS).await?;
    Ok(survived)
}

/// Ids whose per-id queries (`get`, `versions`, `thread`, `counts`) are
/// compared after a crash: every id of the last two surviving batches and
/// of the first lost one (where a torn write would show), and an even
/// sample of the rest, at most [`SAMPLE_IDS`] in all. Every stored event
/// is still compared in full through `export` and `stats`, and listings
/// for every author and tag.
fn sample_ids(work: &[Vec<FeedEvent>], survived: usize) -> Vec<EventId> {
    let edge = survived.saturating_sub(2)..(survived + 1).min(work.len());
    let mut ids: Vec<EventId> = work[edge.clone()].iter().flatten().map(|e| e.id).collect();
    let rest: Vec<EventId> = work
        .iter()
        .enumerate()
        .filter(|(i, _)| !edge.contains(i))
        .flat_map(|(_, b)| b.iter().map(|e| e.id))
        .collect();
    let room = SAMPLE_IDS.saturating_sub(ids.len()).max(1);
    let step = rest.len().div_ceil(room).max(1);
    ids.extend(rest.into_iter().step_by(step));
    // Ids no event has: 0 and one past the largest.
    let max_id = work.iter().flatten().map(|e| e.id.0).max().unwrap_or(0);
    ids.extend([EventId(0), EventId(max_id + 1)]);
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Most ids compared one by one after each crash.
const SAMPLE_IDS: usize = 400;

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

/// The standard SIGKILL test of a backend, both halves. A backend's test
/// file holds two tests: an ignored child test named `child_test` that calls
/// [`StandardCrash::child`], and a parent that calls [`StandardCrash::run`].
pub struct StandardCrash<S> {
    /// Workload seed.
    pub seed: u64,
    /// The child test's name (the parent starts it by this name).
    pub child_test: &'static str,
    /// Opens (creating) the backend's store in a directory.
    pub open: fn(&Path) -> Result<S, feed_core::StoreError>,
}

/// Environment variable naming the child's store directory.
const CHILD_DIR_ENV: &str = "FEED_CRASH_CHILD_DIR";
/// Batches in the standard workload, and events per batch.
const STANDARD_BATCHES: usize = 300;
const STANDARD_PER_BATCH: usize = 8;

fn current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

impl<S: EventStore> StandardCrash<S> {
    fn workload(&self) -> Vec<Vec<FeedEvent>> {
        crash_workload(self.seed, STANDARD_BATCHES, STANDARD_PER_BATCH)
    }

    /// The child's half: does nothing unless started by [`Self::run`].
    pub fn child(&self) {
        let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
            return;
        };
        let work = self.workload();
        current_thread_rt().block_on(async {
            let store = (self.open)(Path::new(&dir))
                .unwrap_or_else(|e| panic!("opening the store in {dir}: {e}"));
            crash_child(&store, &work).await;
        });
    }

    /// The parent's half: `FEED_CRASH_CYCLES` cycles (default 20) of
    /// start, SIGKILL, reopen, verify. Panics with the first failure.
    pub fn run(&self) -> CrashReport {
        let cycles = std::env::var("FEED_CRASH_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let work = self.workload();
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let rt = current_thread_rt();
        let report = sigkill_cycles(
            root.path(),
            cycles,
            (5, 250),
            |dir| spawn_test_child(self.child_test, CHILD_DIR_ENV, dir),
            |dir, acked| {
                rt.block_on(async {
                    let store = (self.open)(dir).map_err(|e| format!("reopen: {e}"))?;
                    verify_after_crash(&store, &work, acked).await
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{} SIGKILL cycles: {} batches acknowledged, {} found after reopening, none partial",
            report.cycles, report.acked, report.survived
        );
        assert_eq!(report.cycles, cycles, "every cycle ran");
        assert!(report.survived >= report.acked, "acknowledged batches lost");
        report
    }
}
