//! The two backend traits, [`EventStore`] and [`VectorIndex`], and what a
//! backend must guarantee to implement them.
//!
//! # Vocabulary
//! - **stored**: accepted by `append` and not since removed (nothing is ever
//!   removed: deletes are events too).
//! - **deleted**: a stored event `x` that is not itself a delete, for which
//!   a stored delete `d` exists with `d.parent == x.id` and
//!   `d.author == x.author`, whatever the order in which `x` and `d` arrived.
//! - **live**: stored and not deleted. Every read sees live events only.
//! - **in effect**: a live edit whose target is a stored post by the same
//!   author; the newest by `(ts, id)` gives the post's visible content.
//! - **newest first**: by `(ts, id)` descending.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::model::*;
use crate::validate::AppendStatus;

/// A failure of the store itself (not of one event).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The backend engine failed.
    #[error("backend error: {0}")]
    Backend(String),
    /// The store's files are not a valid store.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// A query argument is out of range.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
}

/// A failure of a vector index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The index engine failed.
    #[error("vector index error: {0}")]
    Backend(String),
}

/// Where the events live. One implementation per backend crate; every one
/// must pass `feed-conformance`'s `event_store_suite`.
///
/// # Guarantees a backend gives
/// - **Validation.** `append` runs [`crate::validate::validate`] and
///   [`crate::validate::admit`] on every event, in batch order, each event
///   seeing the ones accepted before it in the same batch.
/// - **Atomic batches.** Either every accepted event of a batch is stored or
///   (on `Err`) none is; a reader never sees part of a batch.
/// - **Durable on return.** Once `append` returns `Ok`, killing the process
///   loses none of the batch (within the backend's documented sync mode).
/// - **Arrival order.** `export` yields stored events in the order they were
///   accepted, so replaying an export into an empty store accepts them all
///   and reproduces the store.
/// - **Deletes win whenever they arrive.** A delete stored before its target
///   removes the target on arrival if the authors match.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends a batch; one status per event, in order.
    async fn append(&self, batch: Vec<FeedEvent>) -> Result<Vec<AppendStatus>, StoreError>;

    /// A stored event: live (with its newest content) or a deleted placeholder.
    async fn get(&self, id: EventId) -> Result<Option<Entry>, StoreError>;

    /// [`EventStore::get`] for many ids at once, one answer per id in the
    /// order given (repeats answered each time). The write path reads the
    /// posts of a log page with it; backends with a per-query cost answer
    /// it in a few set queries. The default asks `get` once per id.
    async fn get_many(&self, ids: &[EventId]) -> Result<Vec<Option<Entry>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            out.push(self.get(id).await?);
        }
        Ok(out)
    }

    /// The stored event as accepted (original content), deleted or not. For
    /// the write path and repair, not a user-facing read.
    async fn stored(&self, id: EventId) -> Result<Option<FeedEvent>, StoreError>;

    /// [`EventStore::stored`] for many ids at once, one answer per id in
    /// the order given. The default asks `stored` once per id.
    async fn stored_many(&self, ids: &[EventId]) -> Result<Vec<Option<FeedEvent>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            out.push(self.stored(id).await?);
        }
        Ok(out)
    }

    /// Every version of a live post: the original, then its edits in effect,
    /// oldest first by `(ts, id)`. A live non-post gives itself; a deleted
    /// or unknown id gives nothing.
    async fn versions(&self, id: EventId) -> Result<Vec<FeedEvent>, StoreError>;

    /// Live posts by the accounts `did` follows and by `did`, newest first,
    /// strictly before `before`, at most `min(limit, 500)`.
    async fn timeline(
        &self,
        did: &Did,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError>;

    /// Live posts of `did` with `since ≤ ts ≤ until`, newest first.
    async fn author_feed(
        &self,
        did: &Did,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EventView>, StoreError>;

    /// The post `id` and every post below it through `parent` (SPEC §5):
    /// root first, then by `(ts, id)` ascending; deleted posts with live
    /// descendants as placeholders; depth = distance from the root;
    /// cycle-safe; at most 10,000 nodes, chosen by `(depth, ts, id)`.
    /// Empty if `id` is not a post that is live or has live descendants.
    async fn thread(&self, id: EventId) -> Result<Thread, StoreError>;

    /// Counts for a live post; `None` for anything else.
    async fn counts(&self, id: EventId) -> Result<Option<Counts>, StoreError>;

    /// Live posts, mention and hashtag events carrying `tag` (lowercased,
    /// one leading `#` ignored), newest first, strictly before `before`.
    async fn tag(
        &self,
        tag: &str,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError>;

    /// Live posts, mention and hashtag events mentioning `did`, newest first.
    async fn mentions(
        &self,
        did: &Did,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError>;

    /// DIDs `did` follows through a live follow event, ascending.
    async fn following(&self, did: &Did) -> Result<Vec<Did>, StoreError>;

    /// DIDs with a live follow event for `did`, ascending.
    async fn followers(&self, did: &Did) -> Result<Vec<Did>, StoreError>;

    /// Live events matching `filter`, newest first, at most `filter.limit`.
    async fn query(&self, filter: &Filter) -> Result<Vec<EventView>, StoreError>;

    /// `query(filter)` a page at a time: hands `visit` the same events in
    /// the same order, in pages of about `page` (at least 1), and stops
    /// early when `visit` returns false. Only one page is held at a time,
    /// so an unlimited query over a large store fits a small device.
    ///
    /// The default pages through `query` itself: each page asks for the
    /// events at or before the last one handed out (`until` its `ts`) and
    /// drops those not strictly before it by `(ts, id)`, asking for as
    /// many more as were already handed out at that `ts`. Appends made
    /// between pages may or may not be seen, but no event is handed out
    /// twice.
    async fn query_pages(
        &self,
        filter: &Filter,
        page: usize,
        visit: &mut (dyn FnMut(Vec<EventView>) -> bool + Send),
    ) -> Result<(), StoreError> {
        let page = page.max(1);
        let mut left = filter.limit.unwrap_or(usize::MAX);
        // The last event handed out, and how many handed out share its `ts`.
        let mut last: Option<Cursor> = None;
        let mut at_last_ts = 0usize;
        while left > 0 {
            let asked = left.min(page).saturating_add(at_last_ts);
            let mut f = filter.clone();
            if let Some(c) = last {
                f.until = Some(c.ts);
            }
            f.limit = Some(asked);
            let rows = self.query(&f).await?;
            let full = rows.len() >= asked;
            let fresh: Vec<EventView> = rows
                .into_iter()
                .filter(|v| last.is_none_or(|c| v.event.cursor() < c))
                .take(left)
                .collect();
            let Some(newest_last) = fresh.last().map(|v| v.event.cursor()) else {
                if !full {
                    break;
                }
                // Only events already handed out came back (events appended
                // meanwhile at the same `ts` push them down): ask for more.
                at_last_ts = at_last_ts.saturating_add(page);
                continue;
            };
            let same_ts = fresh
                .iter()
                .rev()
                .take_while(|v| v.event.ts == newest_last.ts)
                .count();
            at_last_ts = if last.is_some_and(|c| c.ts == newest_last.ts) {
                at_last_ts + same_ts
            } else {
                same_ts
            };
            last = Some(newest_last);
            left -= fresh.len();
            if !visit(fresh) || !full {
                break;
            }
        }
        Ok(())
    }

    /// Live events matching `filter` (its `limit` ignored) counted per type
    /// per bucket; sorted by `(start, type)`, zero counts left out.
    async fn buckets(&self, filter: &Filter, width: BucketWidth)
        -> Result<Vec<Bucket>, StoreError>;

    /// Counts and sizes.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Every stored event, as accepted (original content, deleted ones and
    /// deletes included), in arrival order.
    fn export(&self) -> BoxStream<'_, Result<FeedEvent, StoreError>>;

    /// The arrival log: stored events as accepted, each with its arrival
    /// number (1 for the first event a store accepted, then increasing, never
    /// reused, kept across reopens), those numbered above `after`, ascending,
    /// at most `limit`. The write path's outbox: an event enters the log in
    /// the transaction that stores it, so the vector index can always
    /// resume from the last number it applied.
    async fn log(&self, after: u64, limit: usize) -> Result<Vec<(u64, FeedEvent)>, StoreError>;

    /// The highest arrival number given so far (0 for an empty store).
    async fn log_head(&self) -> Result<u64, StoreError>;

    /// The backend's own integrity check (page structure, checksums) beyond
    /// reading every event back; each problem found as a sentence. The
    /// default finds nothing.
    async fn check_integrity(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Makes everything appended so far durable (a no-op where `append`
    /// already is).
    async fn flush(&self) -> Result<(), StoreError>;

    /// Flushes and releases the store; later calls may fail with `Closed`.
    async fn close(&self) -> Result<(), StoreError>;
}

/// A post's vector and the fields search filters on.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorRecord {
    /// The post.
    pub id: EventId,
    /// Its type (posts only, today).
    pub kind: EventType,
    /// Its author.
    pub author: Did,
    /// Its time.
    pub ts: i64,
    /// Its (visible content's) embedding.
    pub vector: Embedding,
}

/// Restricts a search; `None` means no restriction, an empty list nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VectorFilter {
    /// Types.
    pub types: Option<Vec<EventType>>,
    /// Authors.
    pub authors: Option<Vec<Did>>,
    /// Earliest ts, inclusive.
    pub since: Option<i64>,
    /// Latest ts, inclusive.
    pub until: Option<i64>,
}

impl VectorFilter {
    /// Whether a record of type `kind` passes the `types` field.
    pub fn passes_type(&self, kind: EventType) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(&kind))
    }

    /// Whether a record passes.
    pub fn matches(&self, kind: EventType, author: &Did, ts: i64) -> bool {
        self.passes_type(kind)
            && self.authors.as_ref().is_none_or(|a| a.contains(author))
            && self.since.is_none_or(|s| ts >= s)
            && self.until.is_none_or(|u| ts <= u)
    }
}

/// One search result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// The event.
    pub id: EventId,
    /// Cosine similarity.
    pub score: f32,
}

/// How a vector index answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchMode {
    /// Brute force: results equal the reference computation.
    Exact,
    /// Approximate nearest neighbours: recall@10 ≥ 0.95 against exact.
    Approximate,
}

/// Where post vectors live. Every implementation must pass
/// `feed-conformance`'s `vector_index_suite`.
///
/// # Guarantees a backend gives
/// - `upsert` replaces any earlier vector of the same id; `remove` of an
///   absent id is not an error.
/// - `search` returns at most `k` hits matching the filter, best first by
///   cosine similarity, ties by ascending id; in [`SearchMode::Exact`] they
///   are exactly the reference computation's.
/// - After `flush` returns, every earlier write is durable and visible.
#[async_trait]
pub trait VectorIndex: Send + Sync {
    /// Inserts or replaces vectors.
    async fn upsert(&self, records: Vec<VectorRecord>) -> Result<(), IndexError>;

    /// Removes vectors by id.
    async fn remove(&self, ids: &[EventId]) -> Result<(), IndexError>;

    /// The `k` best matches of `query` passing `filter`.
    async fn search(
        &self,
        query: &Embedding,
        filter: &VectorFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError>;

    /// Ids held, ascending.
    async fn ids(&self) -> Result<Vec<EventId>, IndexError>;

    /// Vectors held.
    async fn len(&self) -> Result<usize, IndexError>;

    /// Whether the index holds nothing.
    async fn is_empty(&self) -> Result<bool, IndexError> {
        Ok(self.len().await? == 0)
    }

    /// Makes earlier writes durable and visible.
    async fn flush(&self) -> Result<(), IndexError>;

    /// How `search` answers now.
    fn mode(&self) -> SearchMode;

    /// The arrival number (see [`EventStore::log`]) up to which the write
    /// path has applied the event log to this index; 0 when nothing is.
    async fn checkpoint(&self) -> Result<u64, IndexError>;

    /// Records that the event log is applied up to `seq`. Durable once it
    /// returns, and never durable before the writes made ahead of it: after
    /// a crash the index holds at least what its checkpoint says.
    async fn set_checkpoint(&self, seq: u64) -> Result<(), IndexError>;
}

/// Turns text into embeddings (the ONNX implementation lives in
/// `feed-embed`). CPU-bound and synchronous; callers run it off the async
/// threads.
pub trait Embedder: Send + Sync {
    /// One embedding per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError>;
}

/// Why embedding failed.
#[derive(Debug, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(pub String);

/// Implements [`EventStore`] for a smart pointer by forwarding every call.
macro_rules! forward_event_store {
    ($ptr:ident) => {
        #[async_trait]
        impl<T: EventStore + ?Sized> EventStore for $ptr<T> {
            async fn append(&self, batch: Vec<FeedEvent>) -> Result<Vec<AppendStatus>, StoreError> {
                (**self).append(batch).await
            }
            async fn get(&self, id: EventId) -> Result<Option<Entry>, StoreError> {
                (**self).get(id).await
            }
            async fn get_many(&self, ids: &[EventId]) -> Result<Vec<Option<Entry>>, StoreError> {
                (**self).get_many(ids).await
            }
            async fn stored(&self, id: EventId) -> Result<Option<FeedEvent>, StoreError> {
                (**self).stored(id).await
            }
            async fn check_integrity(&self) -> Result<Vec<String>, StoreError> {
                (**self).check_integrity().await
            }
            async fn stored_many(
                &self,
                ids: &[EventId],
            ) -> Result<Vec<Option<FeedEvent>>, StoreError> {
                (**self).stored_many(ids).await
            }
            async fn versions(&self, id: EventId) -> Result<Vec<FeedEvent>, StoreError> {
                (**self).versions(id).await
            }
            async fn timeline(
                &self,
                did: &Did,
                limit: usize,
                before: Option<Cursor>,
            ) -> Result<Vec<EventView>, StoreError> {
                (**self).timeline(did, limit, before).await
            }
            async fn author_feed(
                &self,
                did: &Did,
                since: Option<i64>,
                until: Option<i64>,
                limit: usize,
            ) -> Result<Vec<EventView>, StoreError> {
                (**self).author_feed(did, since, until, limit).await
            }
            async fn thread(&self, id: EventId) -> Result<Thread, StoreError> {
                (**self).thread(id).await
            }
            async fn counts(&self, id: EventId) -> Result<Option<Counts>, StoreError> {
                (**self).counts(id).await
            }
            async fn tag(
                &self,
                tag: &str,
                limit: usize,
                before: Option<Cursor>,
            ) -> Result<Vec<EventView>, StoreError> {
                (**self).tag(tag, limit, before).await
            }
            async fn mentions(
                &self,
                did: &Did,
                limit: usize,
                before: Option<Cursor>,
            ) -> Result<Vec<EventView>, StoreError> {
                (**self).mentions(did, limit, before).await
            }
            async fn following(&self, did: &Did) -> Result<Vec<Did>, StoreError> {
                (**self).following(did).await
            }
            async fn followers(&self, did: &Did) -> Result<Vec<Did>, StoreError> {
                (**self).followers(did).await
            }
            async fn query(&self, filter: &Filter) -> Result<Vec<EventView>, StoreError> {
                (**self).query(filter).await
            }
            async fn query_pages(
                &self,
                filter: &Filter,
                page: usize,
                visit: &mut (dyn FnMut(Vec<EventView>) -> bool + Send),
            ) -> Result<(), StoreError> {
                (**self).query_pages(filter, page, visit).await
            }
            async fn buckets(
                &self,
                filter: &Filter,
                width: BucketWidth,
            ) -> Result<Vec<Bucket>, StoreError> {
                (**self).buckets(filter, width).await
            }
            async fn stats(&self) -> Result<StoreStats, StoreError> {
                (**self).stats().await
            }
            fn export(&self) -> BoxStream<'_, Result<FeedEvent, StoreError>> {
                (**self).export()
            }
            async fn log(
                &self,
                after: u64,
                limit: usize,
            ) -> Result<Vec<(u64, FeedEvent)>, StoreError> {
                (**self).log(after, limit).await
            }
            async fn log_head(&self) -> Result<u64, StoreError> {
                (**self).log_head().await
            }
            async fn flush(&self) -> Result<(), StoreError> {
                (**self).flush().await
            }
            async fn close(&self) -> Result<(), StoreError> {
                (**self).close().await
            }
        }
    };
}

// A boxed or shared store is a store, so callers can pick a backend at run
// time or hand one store to several owners.
forward_event_store!(Box);
forward_event_store!(Arc);

/// Implements [`VectorIndex`] for a smart pointer by forwarding every call.
macro_rules! forward_vector_index {
    ($ptr:ident) => {
        #[async_trait]
        impl<T: VectorIndex + ?Sized> VectorIndex for $ptr<T> {
            async fn upsert(&self, records: Vec<VectorRecord>) -> Result<(), IndexError> {
                (**self).upsert(records).await
            }
            async fn remove(&self, ids: &[EventId]) -> Result<(), IndexError> {
                (**self).remove(ids).await
            }
            async fn search(
                &self,
                query: &Embedding,
                filter: &VectorFilter,
                k: usize,
            ) -> Result<Vec<Hit>, IndexError> {
                (**self).search(query, filter, k).await
            }
            async fn ids(&self) -> Result<Vec<EventId>, IndexError> {
                (**self).ids().await
            }
            async fn len(&self) -> Result<usize, IndexError> {
                (**self).len().await
            }
            async fn flush(&self) -> Result<(), IndexError> {
                (**self).flush().await
            }
            fn mode(&self) -> SearchMode {
                (**self).mode()
            }
            async fn checkpoint(&self) -> Result<u64, IndexError> {
                (**self).checkpoint().await
            }
            async fn set_checkpoint(&self, seq: u64) -> Result<(), IndexError> {
                (**self).set_checkpoint(seq).await
            }
        }
    };
}

forward_vector_index!(Box);
forward_vector_index!(Arc);
