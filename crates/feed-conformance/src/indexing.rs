//! The write path's promise (SPEC §4): the vector index may lag the event
//! store, but after a crash anywhere, reopening and flushing leaves it
//! holding exactly the live posts with content (or an embedding of their
//! own), each with its visible version's vector.
//!
//! [`IndexCrash`] kills a child process with SIGKILL while its background
//! indexer works; [`check_index`] is the check after each kill, also used on
//! pairs that cannot be killed (the in-memory pair, by dropping the facade
//! mid-way).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use feed_core::{
    ContentHash, EmbedError, Embedder, Embedding, Entry, EventId, EventStore, EventType, FeedEvent,
    FeedStore, VectorFilter, VectorIndex, EMBEDDING_DIM,
};
use futures::future::BoxFuture;
use futures::StreamExt;

use crate::crash::{
    append_and_ack, crash_workload, sigkill_cycles, spawn_test_child, verify_after_crash,
};
use crate::events::runtime;

/// A deterministic, non-semantic embedder for tests: each text's vector
/// is drawn from its BLAKE3 hash, so equal texts get equal vectors and
/// different texts nearly orthogonal ones. `delay` per text stands in for
/// a real model's cost, so that an index really lags behind its store.
#[derive(Clone, Debug, Default)]
pub struct HashEmbedder {
    /// Time spent per text.
    pub delay: Duration,
}

impl HashEmbedder {
    /// The vector of one text.
    pub fn vector(text: &str) -> Embedding {
        let mut out = vec![0f32; EMBEDDING_DIM];
        let mut reader = blake3::Hasher::new().update(text.as_bytes()).finalize_xof();
        let mut buf = [0u8; 4];
        for x in &mut out {
            reader.fill(&mut buf);
            // Uniform in [-1, 1): never all zero in practice; a zero vector
            // would be caught by Embedding::new below.
            *x = (u32::from_le_bytes(buf) as f64 / u32::MAX as f64 * 2.0 - 1.0) as f32;
        }
        Embedding::new(out).unwrap_or_else(|_| {
            let mut v = vec![0f32; EMBEDDING_DIM];
            v[0] = 1.0;
            Embedding::new(v).unwrap_or_else(|_| unreachable!("a unit vector is valid"))
        })
    }
}

impl Embedder for HashEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay * texts.len() as u32);
        }
        Ok(texts.iter().map(|t| HashEmbedder::vector(t)).collect())
    }
}

/// Whether a post's visible version gets a vector: its own embedding, or
/// content that is not blank (SPEC §4, README "Decisions").
fn expected_vector(ev: &FeedEvent) -> Option<Embedding> {
    match (&ev.embedding, &ev.content) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(text)) if !text.trim().is_empty() => Some(HashEmbedder::vector(text)),
        _ => None,
    }
}

/// Most posts whose vector [`check_index`] looks up one by one.
const CHECKED_VECTORS: usize = 300;

/// Checks a flushed facade built with [`HashEmbedder`]: no lag, no error,
/// the index's ids are exactly the live posts with a vector, and each of
/// them is found first by its own expected vector. Returns how many posts
/// the index holds.
pub async fn check_index<E, V>(fs: &FeedStore<E, V>) -> Result<usize, String>
where
    E: EventStore + 'static,
    V: VectorIndex + 'static,
{
    let status = fs.index_status().await.map_err(|e| e.to_string())?;
    if status.lag != 0 || status.last_error.is_some() {
        return Err(format!("index behind after flush: {status:?}"));
    }
    let store = fs.events();
    let index = fs.index().ok_or("no vector index")?;
    let mut want: Vec<(EventId, Embedding)> = Vec::new();
    let mut posts = Vec::new();
    {
        let mut all = store.export();
        while let Some(ev) = all.next().await {
            let ev = ev.map_err(|e| e.to_string())?;
            if ev.kind == EventType::Post {
                posts.push(ev.id);
            }
        }
    }
    for id in posts {
        if let Some(Entry::Live(v)) = store.get(id).await.map_err(|e| e.to_string())? {
            if let Some(vector) = expected_vector(&v.event) {
                want.push((id, vector));
            }
        }
    }
    let want_ids: BTreeSet<EventId> = want.iter().map(|(id, _)| *id).collect();
    let got_ids: BTreeSet<EventId> = index
        .ids()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    if want_ids != got_ids {
        let missing: Vec<_> = want_ids.difference(&got_ids).take(10).collect();
        let extra: Vec<_> = got_ids.difference(&want_ids).take(10).collect();
        return Err(format!(
            "index holds {} ids, want {}: missing {missing:?}, extra {extra:?}",
            got_ids.len(),
            want_ids.len()
        ));
    }
    // Every vector is the visible version's: its own vector finds it first
    // (texts are unique in the workloads this runs on, so no ties). Checked
    // on an even sample of at most CHECKED_VECTORS posts.
    let step = want.len().div_ceil(CHECKED_VECTORS).max(1);
    for (id, vector) in want.iter().step_by(step) {
        let hits = index
            .search(vector, &VectorFilter::default(), 1)
            .await
            .map_err(|e| e.to_string())?;
        match hits.first() {
            Some(h) if h.id == *id && h.score > 0.999 => {}
            other => {
                return Err(format!(
                    "post {id}: its visible version's vector finds {other:?}"
                ))
            }
        }
    }
    Ok(want.len())
}

/// The index-crash workload: the standard crash workload with every text
/// and embedding made unique (so each post's vector is its own) and two
/// thirds of the embeddings taken away (so the embedder has work to do).
pub fn index_workload(seed: u64, batches: usize, per_batch: usize) -> Vec<Vec<FeedEvent>> {
    let mut work = crash_workload(seed, batches, per_batch);
    for ev in work.iter_mut().flatten() {
        if !matches!(ev.kind, EventType::Post | EventType::Edit) {
            continue;
        }
        if ev.id.0 % 3 != 0 {
            ev.embedding = None;
        } else if ev.embedding.is_some() {
            // Generated embeddings repeat; give each event its own.
            ev.embedding = Some(HashEmbedder::vector(&format!("embedding {}", ev.id.0)));
        }
        // Only where content and hash agree (bad_hash faults stay faults).
        if let Some(text) = &ev.content {
            if ContentHash::of(text) == ev.content_hash && !text.is_empty() {
                let unique = format!("{text} (event {})", ev.id.0);
                ev.content_hash = ContentHash::of(&unique);
                ev.content = Some(unique);
            }
        }
    }
    work
}

/// Opens (creating) an event store and its vector index in a directory.
pub type PairOpener<S, V> = fn(&Path) -> BoxFuture<'_, Result<(S, V), String>>;

/// The SIGKILL test of a (store, index) pair while the background indexer
/// works, both halves; see [`crate::StandardCrash`] for the layout of the
/// test file.
pub struct IndexCrash<S, V> {
    /// Workload seed.
    pub seed: u64,
    /// The child test's name.
    pub child_test: &'static str,
    /// Opens the pair.
    pub open: PairOpener<S, V>,
    /// Cycles when `FEED_CRASH_CYCLES` is not set.
    pub cycles: usize,
}

const CHILD_DIR_ENV: &str = "FEED_INDEX_CRASH_CHILD_DIR";
const BATCHES: usize = 200;
const PER_BATCH: usize = 16;
/// Stand-in model cost per text: slow enough that the index lags.
const EMBED_DELAY: Duration = Duration::from_millis(1);

/// What one run of [`IndexCrash::run`] saw.
#[derive(Clone, Debug, Default)]
pub struct IndexCrashReport {
    /// Cycles run.
    pub cycles: usize,
    /// Cycles whose index was behind its store when reopened: the kill
    /// came while the indexer had work.
    pub lagging: usize,
    /// Batches acknowledged before the kills, summed.
    pub acked: usize,
    /// Posts in the index after catching up, summed.
    pub indexed: usize,
}

impl<S: EventStore + 'static, V: VectorIndex + 'static> IndexCrash<S, V> {
    fn workload(&self) -> Vec<Vec<FeedEvent>> {
        index_workload(self.seed, BATCHES, PER_BATCH)
    }

    async fn facade(&self, dir: &Path, delay: Duration) -> Result<FeedStore<S, V>, String> {
        let (s, v) = (self.open)(dir).await?;
        Ok(FeedStore::new(
            s,
            Some(v),
            Some(Arc::new(HashEmbedder { delay })),
        ))
    }

    /// The child's half: appends every batch through the facade (acking
    /// each), then waits to be killed while the indexer catches up.
    pub fn child(&self) {
        let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
            return;
        };
        let work = self.workload();
        runtime().block_on(async {
            let fs = self
                .facade(Path::new(&dir), EMBED_DELAY)
                .await
                .unwrap_or_else(|e| panic!("opening {dir}: {e}"));
            append_and_ack(&work, |b| fs.append(b)).await;
            // Let the indexer run until the parent kills us.
            tokio::time::sleep(Duration::from_secs(600)).await;
        });
    }

    /// The parent's half: `FEED_CRASH_CYCLES` cycles (default `cycles`) of start,
    /// SIGKILL, reopen, check the events ([`verify_after_crash`]), flush,
    /// check the index ([`check_index`]).
    pub fn run(&self) -> IndexCrashReport {
        let cycles = std::env::var("FEED_CRASH_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.cycles);
        let work = self.workload();
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let rt = runtime();
        let report = std::sync::Mutex::new(IndexCrashReport::default());
        sigkill_cycles(
            root.path(),
            cycles,
            (5, 400),
            |dir| spawn_test_child(self.child_test, CHILD_DIR_ENV, dir),
            |dir, acked| {
                rt.block_on(async {
                    let fs = self.facade(dir, Duration::ZERO).await?;
                    let survived = verify_after_crash(fs.events(), &work, acked).await?;
                    let lag = fs.index_status().await.map_err(|e| e.to_string())?.lag;
                    fs.flush().await.map_err(|e| e.to_string())?;
                    let indexed = check_index(&fs).await?;
                    let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                    r.cycles += 1;
                    r.lagging += usize::from(lag > 0);
                    r.acked += acked;
                    r.indexed += indexed;
                    Ok(survived)
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let report = report.into_inner().unwrap_or_else(|p| p.into_inner());
        eprintln!(
            "{} SIGKILL cycles during indexing: {} with the index behind at the kill, \
             {} batches acknowledged, {} posts indexed after catching up, every check passed",
            report.cycles, report.lagging, report.acked, report.indexed
        );
        assert_eq!(report.cycles, cycles, "every cycle ran");
        assert!(
            report.lagging * 2 >= report.cycles,
            "most kills should land while the index lags ({} of {})",
            report.lagging,
            report.cycles
        );
        report
    }
}
