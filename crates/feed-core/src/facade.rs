//! `FeedStore`: composes an [`EventStore`], an optional [`VectorIndex`] and
//! an optional [`Embedder`]; owns the write path (SPEC §4) and semantic
//! search (SPEC §5).
//!
//! # The write path
//! `append` writes to the event store only (atomic, durable) and wakes a
//! background task; the vector index follows asynchronously. The outbox is
//! the event store's arrival log ([`EventStore::log`]): every accepted event
//! enters it in the transaction that stores it, and the index keeps a
//! durable checkpoint ([`VectorIndex::checkpoint`]), the last arrival number
//! it has applied. Applying a stretch of the log means: find the posts its
//! events touch (a post itself, an edit's post, a delete's target and, for a
//! deleted edit, the edit's post), compute each one's vector *as it is now*
//! (its visible version's embedding, or the embedder's vector of its visible
//! content), upsert or remove them, and only then advance the checkpoint.
//! Because vectors are recomputed from the current state, applying a stretch
//! twice is harmless, so a crash anywhere between the two stores is repaired
//! on reopen by applying the log from the checkpoint again.
//!
//! [`FeedStore::flush`] applies whatever is left and returns once the index
//! has caught up. An embedder or index that fails never fails a write: the
//! checkpoint stays where it was, the failure is kept for
//! [`FeedStore::index_status`], and the next wake-up or flush retries.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::jsonl::{parse_line, MAX_LINE_BYTES};
use crate::model::*;
use crate::traits::*;
use crate::validate::{AppendStatus, ErrorCode, Rejection};

/// What to search for.
#[derive(Clone, Debug)]
pub enum SearchQuery {
    /// A query vector.
    Vector(Embedding),
    /// Text, embedded with the store's embedder.
    Text(String),
}

/// One semantic search result: the live event as reads show it.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// The post with its newest content.
    pub view: EventView,
    /// Cosine similarity.
    pub score: f32,
}

/// Why search could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// No vector index is configured.
    #[error("search is unavailable: no vector index is configured")]
    NoIndex,
    /// Text search needs an embedder.
    #[error("text search is unavailable: no embedder is configured")]
    NoEmbedder,
    /// The post for `similar` has no embedding.
    #[error("event {0} is not a live post with an embedding")]
    NoVector(EventId),
    /// The vector index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The embedder failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

/// What [`FeedStore::check`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckReport {
    /// Stored events read back.
    pub events: u64,
    /// Rows the vector index holds, if one is configured and could say.
    pub index_rows: Option<u64>,
    /// Log entries the vector index has not applied yet.
    pub index_lag: u64,
    /// Each problem found, as a sentence; empty when the store is sound.
    pub problems: Vec<String>,
}

/// Why a stored event would not pass the checks it passed when it was
/// accepted, if it would not.
fn unsound(ev: &FeedEvent) -> Option<String> {
    match crate::validate::validate(ev.clone(), i64::MAX) {
        Err(r) => Some(r.to_string()),
        Ok(v) if v.tags != ev.tags => Some("tags are not stored normalised".into()),
        Ok(_) => match &ev.embedding {
            None => None,
            Some(e) => match Embedding::new(e.as_slice().to_vec()) {
                Ok(n) if n == *e => None,
                Ok(_) => Some("the embedding is not stored L2-normalised".into()),
                Err(x) => Some(format!("embedding: {x}")),
            },
        },
    }
}

/// The outcome of [`FeedStore::ingest`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestReport {
    /// Events stored.
    pub accepted: u64,
    /// Events already stored.
    pub duplicate: u64,
    /// Lines rejected.
    pub rejected: u64,
    /// Each rejection: 1-based line number, the id if one could be read.
    pub rejections: Vec<(u64, Option<u64>, Rejection)>,
}

/// An [`FeedStore::ingest`] stopped by a failure: what it did before.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", match .resume {
    Some(line) => format!("stopped at line {line}: it and every line after it are not stored"),
    None => "every line is stored, but making the store durable failed".to_string(),
})]
pub struct IngestError {
    /// What happened to the lines before the stop.
    pub report: IngestReport,
    /// The first line not stored; `None` when every line was stored and
    /// the final flush failed.
    pub resume: Option<u64>,
    /// The failure.
    #[source]
    pub source: StoreError,
}

/// How far the vector index is behind the event store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexStatus {
    /// Whether a vector index is configured at all.
    pub configured: bool,
    /// Whether an embedder is configured (text search, posts without an
    /// embedding).
    pub embedder: bool,
    /// Stored events the index has not applied yet.
    pub lag: u64,
    /// The last failure of the index or the embedder, while it is behind
    /// because of one.
    pub last_error: Option<String>,
    /// Vectors the index holds (SPEC §5's "vector index size"); `None`
    /// without an index, or when the index cannot tell.
    pub vectors: Option<u64>,
}

/// Log entries applied per step (one index write and one checkpoint each),
/// unless [`FeedStore::with_log_page`] says otherwise.
const LOG_PAGE: usize = 1_024;
/// Texts per embedder call (an embedder may sort and cut them further).
const EMBED_BATCH: usize = 256;
/// Wait before the background task retries after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the background task shares with the facade.
struct Shared<E, V> {
    events: E,
    index: Option<V>,
    embedder: Option<Arc<dyn Embedder>>,
    /// One applier at a time (the background task or a flush).
    applying: tokio::sync::Mutex<()>,
    /// Log entries applied per step.
    log_page: std::sync::atomic::AtomicUsize,
    wake: tokio::sync::Notify,
    last_error: Mutex<Option<String>>,
}

/// The facade over one event store, vector index and embedder.
pub struct FeedStore<E, V> {
    shared: Arc<Shared<E, V>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<E, V> Drop for FeedStore<E, V> {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // Stopping mid-way loses nothing: the checkpoint only moves after
            // the index holds what it covers.
            t.abort();
        }
    }
}

impl<E: EventStore + 'static, V: VectorIndex + 'static> FeedStore<E, V> {
    /// Composes the parts; `index` and `embedder` may be absent. A store
    /// whose index is behind (after a crash, or a new index) catches up in
    /// the background after the first append, or at the first flush.
    pub fn new(events: E, index: Option<V>, embedder: Option<Arc<dyn Embedder>>) -> Self {
        FeedStore {
            shared: Arc::new(Shared {
                events,
                index,
                embedder,
                applying: tokio::sync::Mutex::new(()),
                log_page: std::sync::atomic::AtomicUsize::new(LOG_PAGE),
                wake: tokio::sync::Notify::new(),
                last_error: Mutex::new(None),
            }),
            task: Mutex::new(None),
        }
    }

    /// Applies the log to the index `n` entries per step (default 1,024;
    /// at least 1). The events of a step are in memory together while the
    /// index catches up, so fewer bound that memory (the lite profile uses
    /// 256), at the cost of more, smaller index writes.
    pub fn with_log_page(self, n: usize) -> Self {
        self.shared
            .log_page
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Stops the background task and takes the facade apart (to reopen the
    /// event store, say). Work not yet applied stays in the log; the next
    /// `FeedStore` over the same parts applies it.
    pub async fn into_parts(self) -> Result<(E, Option<V>), StoreError> {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            // A cancelled task reports JoinError::Cancelled: expected here.
            let _ = t.await;
        }
        let shared = self.shared.clone();
        drop(self);
        let shared = Arc::try_unwrap(shared)
            .map_err(|_| StoreError::Backend("the store is still in use".into()))?;
        Ok((shared.events, shared.index))
    }

    /// The event store, for every read of SPEC §5 but search.
    pub fn events(&self) -> &E {
        &self.shared.events
    }

    /// The vector index, if configured.
    pub fn index(&self) -> Option<&V> {
        self.shared.index.as_ref()
    }

    /// Whether the index is configured, how far behind it is, and why.
    pub async fn index_status(&self) -> Result<IndexStatus, StoreError> {
        let sh = &self.shared;
        let mut status = IndexStatus {
            configured: sh.index.is_some(),
            embedder: sh.embedder.is_some(),
            lag: 0,
            last_error: sh.last_error(),
            vectors: None,
        };
        if let Some(index) = &sh.index {
            status.vectors = index.len().await.ok().map(|n| n as u64);
            let head = sh.events.log_head().await?;
            match index.checkpoint().await {
                Ok(c) => status.lag = head.saturating_sub(c),
                Err(e) => {
                    status.lag = head;
                    status.last_error = Some(e.to_string());
                }
            }
        }
        Ok(status)
    }

    /// Appends a batch (SPEC §4) and wakes the background indexer. Index
    /// and embedder failures never fail the append.
    pub async fn append(&self, batch: Vec<FeedEvent>) -> Result<Vec<AppendStatus>, StoreError> {
        let statuses = self.shared.events.append(batch).await?;
        if self.shared.index.is_some() && statuses.contains(&AppendStatus::Accepted) {
            self.start_task();
            self.shared.wake.notify_one();
        }
        Ok(statuses)
    }

    /// Starts the background indexer if it is not running and a Tokio
    /// runtime is at hand (without one, `flush` does the work).
    fn start_task(&self) {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        *task = Some(rt.spawn(async move {
            loop {
                shared.wake.notified().await;
                loop {
                    match shared.catch_up().await {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(e) => shared.note_error(e.to_string()),
                    }
                    // Failed (noted in last_error): retry after a pause, or
                    // sooner if more work arrives.
                    let _ = tokio::time::timeout(RETRY_AFTER, shared.wake.notified()).await;
                }
            }
        }));
    }

    /// Makes the event store durable and waits until the vector index has
    /// applied every append. If the index or the embedder fails it returns
    /// anyway, with the failure in [`FeedStore::index_status`]: writes
    /// never fail because of the index.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.shared.events.flush().await?;
        self.wait_for_index().await
    }

    /// Like [`FeedStore::flush`] but leaves the event store as it is (every
    /// append is durable already; a flush may also compact it): applies
    /// what the index has not yet and makes the index durable. Fails only
    /// when the event store does.
    pub async fn wait_for_index(&self) -> Result<(), StoreError> {
        let sh = &self.shared;
        if let Some(index) = &sh.index {
            if sh.catch_up().await? {
                if let Err(e) = index.flush().await {
                    sh.note_error(e.to_string());
                }
            }
        }
        Ok(())
    }

    /// Rebuilds the index's view of every stored post: applies the whole
    /// log again and removes whatever else the index holds.
    pub async fn reindex_all(&self) -> Result<(), StoreError> {
        let sh = &self.shared;
        let Some(index) = &sh.index else {
            return Ok(());
        };
        let result = async {
            let _one = sh.applying.lock().await;
            let held: BTreeSet<EventId> = index.ids().await?.into_iter().collect();
            sh.apply(index, &held).await?;
            index.set_checkpoint(0).await?;
            Ok(())
        }
        .await;
        if sh.settle(result)? {
            self.flush().await?;
        }
        Ok(())
    }

    /// Verifies the store (`feed check`): the backend's own integrity check;
    /// every stored event read back and checked again against the rules
    /// that need no stored state (content hash, fields, tags and embedding
    /// stored normalised); ids unique; the count agreeing with `stats`;
    /// and, when the vector index has caught up, every row it holds a live
    /// post. Holds 8 bytes per stored event while it runs. Damage that
    /// stops a read is an `Err`; everything else found is in the report.
    pub async fn check(&self) -> Result<CheckReport, StoreError> {
        use futures::StreamExt;
        let sh = &self.shared;
        let mut problems = sh.events.check_integrity().await?;
        let mut ids: Vec<u64> = Vec::new();
        let mut stream = sh.events.export();
        while let Some(ev) = stream.next().await {
            let ev = ev?;
            ids.push(ev.id.0);
            if let Some(p) = unsound(&ev) {
                problems.push(format!("event {}: {p}", ev.id));
            }
        }
        drop(stream);
        let events = ids.len() as u64;
        ids.sort_unstable();
        ids.dedup();
        if ids.len() as u64 != events {
            problems.push(format!(
                "{} ids are stored more than once",
                events - ids.len() as u64
            ));
        }
        drop(ids);
        let stats = sh.events.stats().await?;
        if stats.stored != events {
            problems.push(format!(
                "stats counts {} stored events; reading them back gave {events}",
                stats.stored
            ));
        }
        let status = self.index_status().await?;
        let mut index_rows = None;
        if let Some(index) = &sh.index {
            match index.ids().await {
                Err(e) => problems.push(format!("the vector index cannot list its rows: {e}")),
                // A lagging index may still hold posts deleted since.
                Ok(held) if status.lag > 0 => index_rows = Some(held.len() as u64),
                Ok(held) => {
                    index_rows = Some(held.len() as u64);
                    for chunk in held.chunks(256) {
                        let got = sh.events.get_many(chunk).await?;
                        for (id, entry) in chunk.iter().zip(got) {
                            if !matches!(&entry, Some(Entry::Live(v)) if v.event.kind == EventType::Post)
                            {
                                problems.push(format!(
                                    "the vector index holds {id}, which is not a live post"
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(CheckReport {
            events,
            index_rows,
            index_lag: status.lag,
            problems,
        })
    }

    /// Reads JSON Lines from `reader` and appends them in batches of
    /// `batch_size`. Blank lines are skipped; each bad line is reported with
    /// its number and the rest is stored. Flushes before returning.
    ///
    /// A failure to read the input or to store a batch (a full disk, say)
    /// stops the ingest: the error carries what was done before it and the
    /// first line not stored, from which a second run can resume (or it
    /// can run the whole input again: stored lines come back duplicates).
    pub async fn ingest<R: BufRead>(
        &self,
        reader: R,
        batch_size: usize,
    ) -> Result<IngestReport, IngestError> {
        let mut report = IngestReport::default();
        let mut resume = None;
        let outcome = self
            .ingest_into(reader, batch_size, &mut report, &mut resume)
            .await;
        report.rejections.sort_by_key(|(n, _, _)| *n);
        match outcome {
            Ok(()) => Ok(report),
            Err(source) => {
                // Only what happened to the lines before the stop.
                if let Some(r) = resume {
                    report.rejections.retain(|(n, _, _)| *n < r);
                    report.rejected = report.rejections.len() as u64;
                }
                Err(IngestError {
                    report,
                    resume,
                    source,
                })
            }
        }
    }

    async fn ingest_into<R: BufRead>(
        &self,
        mut reader: R,
        batch_size: usize,
        report: &mut IngestReport,
        resume: &mut Option<u64>,
    ) -> Result<(), StoreError> {
        let mut batch: Vec<(u64, FeedEvent)> = Vec::new();
        let mut line_no = 0u64;
        let mut buf = Vec::new();
        // The first line not stored yet: the pending batch's first, or the
        // next one to read.
        let unstored = |batch: &[(u64, FeedEvent)], line_no: u64| {
            batch.first().map_or(line_no + 1, |(n, _)| *n)
        };
        loop {
            let more = read_capped_line(&mut reader, &mut buf).map_err(|e| {
                *resume = Some(unstored(&batch, line_no));
                StoreError::Io {
                    context: format!("reading line {}", line_no + 1),
                    source: e,
                }
            })?;
            if !more {
                break;
            }
            line_no += 1;
            let parsed = if buf.len() > MAX_LINE_BYTES {
                Err(Rejection::new(
                    ErrorCode::TooLarge,
                    format!("line longer than {MAX_LINE_BYTES} bytes"),
                ))
            } else {
                match std::str::from_utf8(&buf) {
                    Err(_) => Err(Rejection::new(ErrorCode::BadJson, "line is not UTF-8")),
                    Ok(text) if text.trim().is_empty() => continue,
                    Ok(text) => parse_line(text),
                }
            };
            match parsed {
                Ok(ev) => batch.push((line_no, ev)),
                Err(r) => {
                    report.rejected += 1;
                    report.rejections.push((line_no, sniff_id(&buf), r));
                }
            }
            if batch.len() >= batch_size.max(1) {
                *resume = Some(unstored(&batch, line_no));
                self.ingest_batch(std::mem::take(&mut batch), report)
                    .await?;
            }
        }
        if !batch.is_empty() {
            *resume = Some(unstored(&batch, line_no));
            self.ingest_batch(batch, report).await?;
        }
        // Every line is stored; a failure now is the flush's.
        *resume = None;
        self.flush().await
    }

    async fn ingest_batch(
        &self,
        batch: Vec<(u64, FeedEvent)>,
        report: &mut IngestReport,
    ) -> Result<(), StoreError> {
        let (lines, events): (Vec<u64>, Vec<FeedEvent>) = batch.into_iter().unzip();
        let ids: Vec<u64> = events.iter().map(|e| e.id.0).collect();
        let statuses = self.append(events).await?;
        for ((line, id), st) in lines.into_iter().zip(ids).zip(statuses) {
            match st {
                AppendStatus::Accepted => report.accepted += 1,
                AppendStatus::Duplicate => report.duplicate += 1,
                AppendStatus::Rejected(r) => {
                    report.rejected += 1;
                    report.rejections.push((line, Some(id), r));
                }
            }
        }
        Ok(())
    }

    /// Semantic search (SPEC §5): at most `min(k, 100)` live events, best
    /// first, each shown with its newest content. Hits the index still holds
    /// for deleted or changed posts are skipped.
    pub async fn search(
        &self,
        query: SearchQuery,
        filter: &VectorFilter,
        k: usize,
    ) -> Result<Vec<SearchHit>, SearchError> {
        let index = self.shared.index.as_ref().ok_or(SearchError::NoIndex)?;
        let vector = match query {
            SearchQuery::Vector(v) => v,
            SearchQuery::Text(t) => {
                let emb = self
                    .shared
                    .embedder
                    .clone()
                    .ok_or(SearchError::NoEmbedder)?;
                embed_off_thread(emb, vec![t])
                    .await?
                    .pop()
                    .ok_or_else(|| EmbedError("embedder returned no vector".into()))?
            }
        };
        // Search answers posts only, and the index holds posts only: a
        // `types` list naming posts restricts nothing (passed on, it made
        // the lite index read every row's type: 9 searches/s instead of
        // 560 over 100k vectors), and one without posts leaves nothing.
        let unrestricted;
        let filter = match &filter.types {
            Some(types) if !types.contains(&EventType::Post) => return Ok(Vec::new()),
            Some(_) => {
                unrestricted = VectorFilter {
                    types: None,
                    ..filter.clone()
                };
                &unrestricted
            }
            None => filter,
        };
        self.search_vector(index, &vector, filter, k.min(MAX_SEARCH_K), None)
            .await
    }

    /// Posts most similar to the live post `id` (itself left out).
    pub async fn similar(&self, id: EventId, k: usize) -> Result<Vec<SearchHit>, SearchError> {
        let sh = &self.shared;
        let index = sh.index.as_ref().ok_or(SearchError::NoIndex)?;
        let mut wanted = BTreeSet::new();
        wanted.insert(id);
        let (mut up, _) = sh.vectors_now(&wanted).await?;
        let vector = match up.pop() {
            Some(r) if up.is_empty() => r.vector,
            _ => return Err(SearchError::NoVector(id)),
        };
        self.search_vector(
            index,
            &vector,
            &VectorFilter::default(),
            k.min(MAX_SEARCH_K),
            Some(id),
        )
        .await
    }

    async fn search_vector(
        &self,
        index: &V,
        vector: &Embedding,
        filter: &VectorFilter,
        k: usize,
        exclude: Option<EventId>,
    ) -> Result<Vec<SearchHit>, SearchError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let total = index.len().await?;
        // Ask for exactly what is wanted: the index's hits are live posts
        // unless it lags behind a delete or an edit, and then the loop asks
        // again for four times as many. (Asking for `2k + 8` up front cost
        // the lite index 16 more rescored vectors and 18 more event reads
        // per search.)
        let mut ask = (k + usize::from(exclude.is_some())).min(total.max(1));
        loop {
            let hits = index.search(vector, filter, ask).await?;
            let exhausted = hits.len() < ask || ask >= total;
            let mut out = Vec::with_capacity(k);
            let hits: Vec<Hit> = hits.into_iter().filter(|h| Some(h.id) != exclude).collect();
            // One set read for the page, not one lookup per hit.
            let ids: Vec<EventId> = hits.iter().map(|h| h.id).collect();
            let entries = self.shared.events.get_many(&ids).await?;
            for (h, entry) in hits.into_iter().zip(entries) {
                if let Some(Entry::Live(view)) = entry {
                    if view.event.kind == EventType::Post {
                        out.push(SearchHit {
                            view,
                            score: h.score,
                        });
                    }
                }
                if out.len() == k {
                    return Ok(out);
                }
            }
            if exhausted {
                return Ok(out);
            }
            ask = (ask * 4).min(total);
        }
    }
}

impl<E: EventStore, V: VectorIndex> Shared<E, V> {
    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn note_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// Applies the log from the index's checkpoint to its end; the outcome
    /// as [`Shared::settle`] gives it.
    async fn catch_up(&self) -> Result<bool, StoreError> {
        let Some(index) = &self.index else {
            return Ok(true);
        };
        let _one = self.applying.lock().await;
        let result = async {
            // Everything stored before this call; later appends wake the
            // task again.
            let head = self.events.log_head().await?;
            let mut at = index.checkpoint().await?;
            while at < head {
                let limit = self.log_page.load(std::sync::atomic::Ordering::Relaxed);
                let page = self.events.log(at, limit).await?;
                let Some(&(last, _)) = page.last() else {
                    return Ok(());
                };
                let touched = self.touched_by(&page).await?;
                self.apply(index, &touched).await?;
                index.set_checkpoint(last).await?;
                at = last;
            }
            Ok(())
        }
        .await;
        self.settle(result)
    }

    /// The outcome of a pass over the index: `Ok(true)` when it succeeded
    /// (any earlier failure is forgotten), `Ok(false)` when the index or
    /// the embedder failed (kept in `last_error`), `Err` when the event
    /// store did.
    fn settle(&self, result: Result<(), ApplyError>) -> Result<bool, StoreError> {
        let (outcome, error) = match result {
            Ok(()) => (Ok(true), None),
            Err(ApplyError::Store(e)) => return Err(e),
            Err(e) => (Ok(false), Some(e.to_string())),
        };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
        outcome
    }

    /// The posts whose vector the accepted events of a log page may
    /// change: posts, the targets of edits, and the targets of deletes (a
    /// deleted edit's post, too — its targets read in one set query).
    async fn touched_by(&self, page: &[(u64, FeedEvent)]) -> Result<BTreeSet<EventId>, StoreError> {
        let mut out = BTreeSet::new();
        let mut deleted = Vec::new();
        for (_, ev) in page {
            match ev.kind {
                EventType::Post => {
                    out.insert(ev.id);
                }
                EventType::Edit => out.extend(ev.parent),
                EventType::Delete => {
                    if let Some(t) = ev.parent {
                        out.insert(t);
                        deleted.push(t);
                    }
                }
                _ => {}
            }
        }
        for target in self
            .events
            .stored_many(&deleted)
            .await?
            .into_iter()
            .flatten()
        {
            if target.kind == EventType::Edit {
                out.extend(target.parent);
            }
        }
        Ok(out)
    }

    /// Brings the index in line with the current state of `ids`: upserts
    /// the vector each live post has now, removes the rest.
    async fn apply(&self, index: &V, ids: &BTreeSet<EventId>) -> Result<(), ApplyError> {
        let (upserts, removals) = self.vectors_now(ids).await?;
        if !upserts.is_empty() {
            index.upsert(upserts).await?;
        }
        if !removals.is_empty() {
            index.remove(&removals).await?;
        }
        Ok(())
    }

    /// For each id, the record it should have in the index now, or its
    /// place among the removals: live posts get their visible version's
    /// embedding or, with an embedder, the vector of their visible content
    /// (posts whose content is empty or only whitespace get none).
    async fn vectors_now(
        &self,
        ids: &BTreeSet<EventId>,
    ) -> Result<(Vec<VectorRecord>, Vec<EventId>), ApplyError> {
        let mut records = Vec::new();
        let mut removals = Vec::new();
        // Posts to embed: their record but for the vector, and the text.
        let mut to_embed: Vec<((EventId, EventType, Did, i64), String)> = Vec::new();
        let ids: Vec<EventId> = ids.iter().copied().collect();
        let entries = self.events.get_many(&ids).await?;
        for (id, entry) in ids.into_iter().zip(entries) {
            let live = match entry {
                Some(Entry::Live(v)) if v.event.kind == EventType::Post => v.event,
                _ => {
                    removals.push(id);
                    continue;
                }
            };
            let meta = (id, live.kind, live.author, live.ts);
            match (live.embedding, &self.embedder, live.content) {
                (Some(e), _, _) => records.push(record(meta, e)),
                (None, Some(_), Some(text)) if !text.trim().is_empty() => {
                    to_embed.push((meta, text));
                }
                _ => removals.push(id),
            }
        }
        if let (false, Some(emb)) = (to_embed.is_empty(), &self.embedder) {
            for chunk in to_embed.chunks(EMBED_BATCH) {
                let texts: Vec<String> = chunk.iter().map(|(_, t)| t.clone()).collect();
                let vectors = embed_off_thread(emb.clone(), texts).await?;
                if vectors.len() != chunk.len() {
                    return Err(ApplyError::Embed(EmbedError(format!(
                        "embedder returned {} vectors for {} texts",
                        vectors.len(),
                        chunk.len()
                    ))));
                }
                for ((meta, _), v) in chunk.iter().zip(vectors) {
                    records.push(record(*meta, v));
                }
            }
        }
        Ok((records, removals))
    }
}

fn record(
    (id, kind, author, ts): (EventId, EventType, Did, i64),
    vector: Embedding,
) -> VectorRecord {
    VectorRecord {
        id,
        kind,
        author,
        ts,
        vector,
    }
}

/// Why applying the log to the index stopped.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApplyError> for SearchError {
    fn from(e: ApplyError) -> SearchError {
        match e {
            ApplyError::Index(e) => SearchError::Index(e),
            ApplyError::Embed(e) => SearchError::Embed(e),
            ApplyError::Store(e) => SearchError::Store(e),
        }
    }
}

/// Runs the (CPU-bound) embedder on Tokio's blocking threads.
async fn embed_off_thread(
    emb: Arc<dyn Embedder>,
    texts: Vec<String>,
) -> Result<Vec<Embedding>, EmbedError> {
    crate::worker::off_thread(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        emb.embed(&refs)
    })
    .await
    .map_err(|e| EmbedError(format!("embedding thread failed: {e}")))?
}

/// Reads one line (without its newline) into `buf`, keeping at most
/// `MAX_LINE_BYTES + 1` bytes of it so a huge line cannot exhaust memory.
/// Returns false at end of input.
pub fn read_capped_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    let mut any = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any);
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        reader.consume(if done { take + 1 } else { take });
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
    }
}

/// The `id` of a line that failed to parse, if it has a readable one.
fn sniff_id(line: &[u8]) -> Option<u64> {
    if line.len() > MAX_LINE_BYTES {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()?
        .get("id")?
        .as_u64()
}
