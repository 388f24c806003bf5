//! feed-sqlite-lite: the lite profile's [`EventStore`] on SQLite and its
//! [`feed_core::VectorIndex`] on usearch ([`UsearchVectorIndex`]).
//!
//! One file, `events.sqlite`, in the store directory; WAL journal; one
//! transaction per batch; every value a bound parameter. DIDs and tags are
//! numbered once (`dids`, `tag_names`) so indexes hold small integers, not
//! 32-byte keys. Derived state is kept current at ingest: a `deleted` flag
//! on each event (also when the delete arrived first) and the live follow
//! edges. See the crate README for durability and memory settings.

mod codes;
mod schema;
mod sql;
mod vectors;

pub use sql::TimelinePlan;
pub use vectors::{pack_bits, UsearchConfig, UsearchVectorIndex, VECTOR_DB};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use feed_core::worker::Worker;
use futures::stream::BoxStream;
use rusqlite::Connection;

use feed_core::{
    AppendStatus, Bucket, BucketWidth, Counts, Cursor, Did, Entry, EventId, EventStore, EventView,
    FeedEvent, Filter, StoreError, StoreStats, Thread,
};

/// How hard a commit pushes data to the disk (SQLite's `synchronous`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `NORMAL` (default): in WAL mode a commit survives a process crash
    /// (SIGKILL); the last commits before a power cut may be lost, the store
    /// is never corrupted.
    #[default]
    Normal,
    /// `FULL`: every commit is fsynced; survives power loss too.
    Full,
}

/// Tuning for small devices.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Commit durability.
    pub sync: SyncMode,
    /// Page cache, KiB (default 2048).
    pub cache_kib: u32,
    /// Largest memory-mapped view of the file, bytes (default 0: mapped
    /// pages count towards the process's resident memory).
    pub mmap_bytes: u64,
    /// How timelines are planned (default `Auto`).
    pub timeline: TimelinePlan,
    /// Page size of a database this opens for the first time, bytes: a
    /// power of two from 512 to 65,536 (default 4,096). An existing
    /// database keeps its own.
    pub page_bytes: u32,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            sync: SyncMode::Normal,
            cache_kib: 2048,
            mmap_bytes: 0,
            timeline: TimelinePlan::Auto,
            page_bytes: 4096,
        }
    }
}

/// The file inside a store directory.
pub const DB_FILE: &str = "events.sqlite";

/// An [`EventStore`] on SQLite.
pub struct SqliteEventStore {
    worker: Worker<Connection>,
    /// DID and tag numbers of committed batches (used by appends only).
    numbers: Arc<Mutex<sql::Numbers>>,
    dir: PathBuf,
    timeline: TimelinePlan,
}

impl SqliteEventStore {
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path, config: &SqliteConfig) -> Result<SqliteEventStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            context: format!("creating {}", dir.display()),
            source: e,
        })?;
        let conn = schema::open(&dir.join(DB_FILE), config)?;
        Ok(SqliteEventStore {
            worker: Worker::new(conn),
            numbers: Arc::default(),
            dir: dir.to_path_buf(),
            timeline: config.timeline,
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` on the connection's thread in one read transaction
    /// (`sql::read`).
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<R, sql::LiteError> + Send + 'static,
    {
        self.worker.run(move |c| sql::read(c, f)).await
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, batch: Vec<FeedEvent>) -> Result<Vec<AppendStatus>, StoreError> {
        let numbers = Arc::clone(&self.numbers);
        self.worker
            .run(move |c| {
                let mut numbers = numbers.lock().unwrap_or_else(|p| p.into_inner());
                sql::append(c, batch, &mut numbers)
            })
            .await
    }

    async fn get(&self, id: EventId) -> Result<Option<Entry>, StoreError> {
        self.read(move |c| sql::get(c, id)).await
    }

    /// One trip to the connection's thread for all of them.
    async fn get_many(&self, ids: &[EventId]) -> Result<Vec<Option<Entry>>, StoreError> {
        let ids = ids.to_vec();
        self.read(move |c| ids.iter().map(|&id| sql::get(c, id)).collect())
            .await
    }

    async fn stored(&self, id: EventId) -> Result<Option<FeedEvent>, StoreError> {
        self.read(move |c| sql::stored(c, id)).await
    }

    /// One trip to the connection's thread for all of them.
    async fn stored_many(&self, ids: &[EventId]) -> Result<Vec<Option<FeedEvent>>, StoreError> {
        let ids = ids.to_vec();
        self.read(move |c| ids.iter().map(|&id| sql::stored(c, id)).collect())
            .await
    }

    async fn versions(&self, id: EventId) -> Result<Vec<FeedEvent>, StoreError> {
        self.read(move |c| sql::versions(c, id)).await
    }

    async fn timeline(
        &self,
        did: &Did,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError> {
        let (did, plan) = (*did, self.timeline);
        self.read(move |c| sql::timeline(c, &did, limit, before, plan))
            .await
    }

    async fn author_feed(
        &self,
        did: &Did,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EventView>, StoreError> {
        let did = *did;
        self.read(move |c| sql::author_feed(c, &did, since, until, limit))
            .await
    }

    async fn thread(&self, id: EventId) -> Result<Thread, StoreError> {
        self.read(move |c| sql::thread(c, id)).await
    }

    async fn counts(&self, id: EventId) -> Result<Option<Counts>, StoreError> {
        self.read(move |c| sql::counts(c, id)).await
    }

    async fn tag(
        &self,
        tag: &str,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError> {
        let t = sql::Topic::Tag(feed_core::query_tag(tag));
        self.read(move |c| sql::topic(c, &t, limit, before)).await
    }

    async fn mentions(
        &self,
        did: &Did,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError> {
        let t = sql::Topic::Mention(*did);
        self.read(move |c| sql::topic(c, &t, limit, before)).await
    }

    async fn following(&self, did: &Did) -> Result<Vec<Did>, StoreError> {
        let did = *did;
        self.read(move |c| sql::follows(c, &did, true)).await
    }

    async fn followers(&self, did: &Did) -> Result<Vec<Did>, StoreError> {
        let did = *did;
        self.read(move |c| sql::follows(c, &did, false)).await
    }

    async fn query(&self, filter: &Filter) -> Result<Vec<EventView>, StoreError> {
        let f = filter.clone();
        self.read(move |c| sql::query(c, &f)).await
    }

    async fn buckets(
        &self,
        filter: &Filter,
        width: BucketWidth,
    ) -> Result<Vec<Bucket>, StoreError> {
        let f = filter.clone();
        self.read(move |c| sql::buckets(c, &f, width)).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let dir = self.dir.clone();
        self.read(move |c| sql::stats(c, &dir)).await
    }

    fn export(&self) -> BoxStream<'_, Result<FeedEvent, StoreError>> {
        self.worker
            .export(|c, after, n| sql::read(c, |c| sql::export_page(c, after, n)))
    }

    async fn log(&self, after: u64, limit: usize) -> Result<Vec<(u64, FeedEvent)>, StoreError> {
        self.worker
            .log(after, limit, |c, after, n| {
                sql::read(c, |c| sql::export_page(c, after, n))
            })
            .await
    }

    async fn log_head(&self) -> Result<u64, StoreError> {
        self.read(sql::log_head).await
    }

    async fn check_integrity(&self) -> Result<Vec<String>, StoreError> {
        self.worker.run(|c| sql::integrity(c)).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every append commits; with SyncMode::Normal a checkpoint makes the
        // WAL's content part of the main file.
        self.worker
            .run(|c| {
                c.execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
                    .map_err(sql::LiteError::from)
            })
            .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.worker
            .close(|c| {
                c.close()
                    .map_err(|(_, e)| StoreError::Backend(e.to_string()))
            })
            .await
    }
}
