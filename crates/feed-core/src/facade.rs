//! `FeedStore`: composes an [`EventStore`], an optional [`VectorIndex`] and
//! an optional [`Embedder`]; owns the write path (SPEC §4) and semantic
//! search (SPEC §5).
//!
//! Write path: events go to the event store first (atomic, durable); then
//! the posts they touch are re-indexed. A failing or missing vector index
//! never fails a write: the touched posts stay pending, search reports the
//! lag, and `flush` retries. (The durable outbox and background worker that
//! survive a crash between the two steps are issue 6; until then
//! [`FeedStore::reindex_all`] repairs an index after a restart.)

use std::collections::BTreeSet;
use std::io::BufRead;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

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

/// The facade over one event store, vector index and embedder.
pub struct FeedStore<E, V> {
    events: E,
    index: Option<V>,
    embedder: Option<Arc<dyn Embedder>>,
    /// Posts whose vector must be recomputed.
    pending: Mutex<BTreeSet<EventId>>,
    last_index_error: Mutex<Option<String>>,
}

impl<E: EventStore, V: VectorIndex> FeedStore<E, V> {
    /// Composes the parts; `index` and `embedder` may be absent.
    pub fn new(events: E, index: Option<V>, embedder: Option<Arc<dyn Embedder>>) -> Self {
        FeedStore {
            events,
            index,
            embedder,
            pending: Mutex::new(BTreeSet::new()),
            last_index_error: Mutex::new(None),
        }
    }

    /// Takes the facade apart (to reopen the event store, say). Pending
    /// index work is dropped; [`FeedStore::reindex_all`] redoes it.
    pub fn into_parts(self) -> (E, Option<V>) {
        (self.events, self.index)
    }

    /// The event store, for every read of SPEC §5 but search.
    pub fn events(&self) -> &E {
        &self.events
    }

    /// The vector index, if configured.
    pub fn index(&self) -> Option<&V> {
        self.index.as_ref()
    }

    /// Posts not yet reflected in the vector index.
    pub fn index_lag(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The last vector-index failure, if the index is behind because of one.
    pub fn last_index_error(&self) -> Option<String> {
        self.last_index_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Appends a batch (SPEC §4), then brings the vector index up to date
    /// for the posts it touched. Index failures do not fail the append.
    pub async fn append(&self, batch: Vec<FeedEvent>) -> Result<Vec<AppendStatus>, StoreError> {
        let statuses = self.events.append(batch.clone()).await?;
        if self.index.is_some() {
            let mut touched = BTreeSet::new();
            for (ev, st) in batch.iter().zip(&statuses) {
                if *st == AppendStatus::Accepted {
                    self.touched_by(ev, &mut touched).await?;
                }
            }
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(touched);
            self.sync_index().await?;
        }
        Ok(statuses)
    }

    /// The posts whose vector an accepted event may change.
    async fn touched_by(
        &self,
        ev: &FeedEvent,
        out: &mut BTreeSet<EventId>,
    ) -> Result<(), StoreError> {
        match ev.kind {
            EventType::Post => {
                out.insert(ev.id);
            }
            EventType::Edit => out.extend(ev.parent),
            EventType::Delete => {
                if let Some(t) = ev.parent {
                    out.insert(t);
                    if let Some(target) = self.events.stored(t).await? {
                        if target.kind == EventType::Edit {
                            out.extend(target.parent);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The vector a post should have in the index now, if any.
    async fn current_vector(&self, id: EventId) -> Result<Option<VectorRecord>, StoreError> {
        let Some(Entry::Live(v)) = self.events.get(id).await? else {
            return Ok(None);
        };
        if v.event.kind != EventType::Post {
            return Ok(None);
        }
        let vector = match (v.event.embedding, &self.embedder, &v.event.content) {
            (Some(e), _, _) => e,
            (None, Some(emb), Some(text)) => match emb.embed(&[text.as_str()]) {
                Ok(mut e) if e.len() == 1 => e.remove(0),
                Ok(_) => return Ok(None),
                Err(e) => {
                    self.note_error(e.to_string());
                    return Ok(None);
                }
            },
            _ => return Ok(None),
        };
        Ok(Some(VectorRecord {
            id,
            kind: v.event.kind,
            author: v.event.author,
            ts: v.event.ts,
            vector,
        }))
    }

    fn note_error(&self, e: String) {
        *self
            .last_index_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// Writes the pending posts' vectors to the index; on an index failure
    /// they stay pending.
    async fn sync_index(&self) -> Result<(), StoreError> {
        let Some(index) = &self.index else {
            return Ok(());
        };
        let ids: Vec<EventId> = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut upserts = Vec::new();
        let mut removals = Vec::new();
        for id in &ids {
            match self.current_vector(*id).await? {
                Some(r) => upserts.push(r),
                None => removals.push(*id),
            }
        }
        let result = async {
            if !upserts.is_empty() {
                index.upsert(upserts).await?;
            }
            if !removals.is_empty() {
                index.remove(&removals).await?;
            }
            Ok::<(), IndexError>(())
        }
        .await;
        match result {
            Ok(()) => {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for id in &ids {
                    pending.remove(id);
                }
                *self
                    .last_index_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(e) => self.note_error(e.to_string()),
        }
        Ok(())
    }

    /// Waits until the vector index reflects every append, and makes both
    /// parts durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.events.flush().await?;
        self.sync_index().await?;
        if let Some(index) = &self.index {
            if let Err(e) = index.flush().await {
                self.note_error(e.to_string());
            }
        }
        Ok(())
    }

    /// Rebuilds the index's view of every stored post: upserts the live
    /// posts with a vector, removes everything else the index holds.
    pub async fn reindex_all(&self) -> Result<(), StoreError> {
        let Some(index) = &self.index else {
            return Ok(());
        };
        let mut all = BTreeSet::new();
        let mut export = self.events.export();
        while let Some(ev) = export.next().await {
            let ev = ev?;
            if ev.kind == EventType::Post {
                all.insert(ev.id);
            }
        }
        drop(export);
        match index.ids().await {
            Ok(ids) => all.extend(ids),
            Err(e) => self.note_error(e.to_string()),
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(all);
        self.flush().await
    }

    /// Reads JSON Lines from `reader` and appends them in batches of
    /// `batch_size`. Blank lines are skipped; each bad line is reported with
    /// its number and the rest is stored. Flushes before returning.
    pub async fn ingest<R: BufRead>(
        &self,
        mut reader: R,
        batch_size: usize,
    ) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        let mut batch: Vec<(u64, FeedEvent)> = Vec::new();
        let mut line_no = 0u64;
        let mut buf = Vec::new();
        loop {
            let more = read_capped_line(&mut reader, &mut buf).map_err(|e| StoreError::Io {
                context: format!("reading line {}", line_no + 1),
                source: e,
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
                self.ingest_batch(std::mem::take(&mut batch), &mut report)
                    .await?;
            }
        }
        if !batch.is_empty() {
            self.ingest_batch(batch, &mut report).await?;
        }
        report.rejections.sort_by_key(|(n, _, _)| *n);
        self.flush().await?;
        Ok(report)
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
        let index = self.index.as_ref().ok_or(SearchError::NoIndex)?;
        let vector = match query {
            SearchQuery::Vector(v) => v,
            SearchQuery::Text(t) => {
                let emb = self.embedder.as_ref().ok_or(SearchError::NoEmbedder)?;
                emb.embed(&[t.as_str()])?
                    .pop()
                    .ok_or_else(|| EmbedError("embedder returned no vector".into()))?
            }
        };
        self.search_vector(index, &vector, filter, k.min(MAX_SEARCH_K), None)
            .await
    }

    /// Posts most similar to the live post `id` (itself left out).
    pub async fn similar(&self, id: EventId, k: usize) -> Result<Vec<SearchHit>, SearchError> {
        let index = self.index.as_ref().ok_or(SearchError::NoIndex)?;
        let vector = self
            .current_vector(id)
            .await?
            .ok_or(SearchError::NoVector(id))?
            .vector;
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
        let mut ask = (k * 2 + 8).min(total.max(1));
        loop {
            let hits = index.search(vector, filter, ask).await?;
            let exhausted = hits.len() < ask || ask >= total;
            let mut out = Vec::with_capacity(k);
            for h in hits {
                if Some(h.id) == exclude {
                    continue;
                }
                if let Some(Entry::Live(view)) = self.events.get(h.id).await? {
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
