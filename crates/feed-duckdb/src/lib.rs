//! feed-duckdb: the reference profile's [`EventStore`] on DuckDB.
//!
//! One file, `events.duckdb`, in the store directory, with RFC-0130's
//! `events` and `event_content` tables plus topic, follow and DID tables.
//! A batch is one transaction: the stored events it names are read with a
//! few set queries, the shared rules of `feed-core` run in memory, and the
//! rows go in through Appenders. Every value is a bound parameter. DuckDB
//! writes its WAL and syncs it at every commit, so an acknowledged batch
//! survives a SIGKILL. See the crate README for figures and limits.

/// The store file's name, as a literal for statement text ([`DB_FILE`]).
macro_rules! db_file {
    () => {
        "events.duckdb"
    };
}

mod schema;
mod sql;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use feed_core::worker::Worker;
use futures::stream::BoxStream;

use feed_core::{
    AppendStatus, Bucket, BucketWidth, Counts, Cursor, Did, Entry, EventId, EventStore, EventView,
    FeedEvent, Filter, StoreError, StoreStats, Thread,
};

/// Engine settings; the defaults suit a small node.
#[derive(Clone, Debug)]
pub struct DuckConfig {
    /// DuckDB's `memory_limit`, MiB (default 96).
    pub memory_limit_mib: u32,
    /// DuckDB's worker `threads` (default 2).
    pub threads: u32,
    /// The newest stored events kept in memory, KiB (default 8,192; 0
    /// turns it off): a recent home timeline is answered from them, and
    /// listings read their content rows from them instead of a second
    /// DuckDB statement.
    pub tail_cache_kib: u32,
}

impl Default for DuckConfig {
    fn default() -> Self {
        DuckConfig {
            memory_limit_mib: 96,
            threads: 2,
            tail_cache_kib: 8192,
        }
    }
}

/// The file inside a store directory.
pub const DB_FILE: &str = db_file!();

/// Rows `query_pages` loads at a time from a long listing.
const QUERY_LOAD: usize = 1024;

/// Hands `views` to `visit` in pages of `page`, in order; false when
/// `visit` asked to stop.
fn hand_out(
    views: Vec<EventView>,
    page: usize,
    visit: &mut (dyn FnMut(Vec<EventView>) -> bool + Send),
) -> bool {
    let mut rest = views.into_iter().peekable();
    while rest.peek().is_some() {
        if !visit(rest.by_ref().take(page).collect()) {
            return false;
        }
    }
    true
}

/// An [`EventStore`] on DuckDB.
pub struct DuckEventStore {
    worker: Worker<sql::Db>,
    dir: PathBuf,
}

impl DuckEventStore {
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path, config: &DuckConfig) -> Result<DuckEventStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            context: format!("creating {}", dir.display()),
            source: e,
        })?;
        let conn = schema::open(dir, config)?;
        let tail_cap = usize::try_from(config.tail_cache_kib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1024);
        let db = sql::Db::new(conn, tail_cap).map_err(StoreError::from)?;
        Ok(DuckEventStore {
            worker: Worker::new(db),
            dir: dir.to_path_buf(),
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl EventStore for DuckEventStore {
    async fn append(&self, batch: Vec<FeedEvent>) -> Result<Vec<AppendStatus>, StoreError> {
        self.worker.run(move |i| sql::append(i, batch)).await
    }

    async fn get(&self, id: EventId) -> Result<Option<Entry>, StoreError> {
        self.worker.run(move |i| sql::get(i, id)).await
    }

    async fn get_many(&self, ids: &[EventId]) -> Result<Vec<Option<Entry>>, StoreError> {
        let ids = ids.to_vec();
        self.worker.run(move |i| sql::get_many(i, &ids)).await
    }

    async fn stored(&self, id: EventId) -> Result<Option<FeedEvent>, StoreError> {
        self.worker
            .run(move |i| sql::load(i, id).map(|r| r.map(|r| r.ev)))
            .await
    }

    async fn stored_many(&self, ids: &[EventId]) -> Result<Vec<Option<FeedEvent>>, StoreError> {
        let ids = ids.to_vec();
        self.worker.run(move |i| sql::stored_many(i, &ids)).await
    }

    async fn versions(&self, id: EventId) -> Result<Vec<FeedEvent>, StoreError> {
        self.worker.run(move |i| sql::versions(i, id)).await
    }

    async fn timeline(
        &self,
        did: &Did,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError> {
        let did = *did;
        self.worker
            .run(move |i| sql::timeline(i, &did, limit, before))
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
        self.worker
            .run(move |i| sql::author_feed(i, &did, since, until, limit))
            .await
    }

    async fn thread(&self, id: EventId) -> Result<Thread, StoreError> {
        self.worker.run(move |i| sql::thread(i, id)).await
    }

    async fn counts(&self, id: EventId) -> Result<Option<Counts>, StoreError> {
        self.worker.run(move |i| sql::counts(i, id)).await
    }

    async fn tag(
        &self,
        tag: &str,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError> {
        let t = sql::Topic::Tag(feed_core::query_tag(tag));
        self.worker
            .run(move |i| sql::topic(i, &t, limit, before))
            .await
    }

    async fn mentions(
        &self,
        did: &Did,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError> {
        let t = sql::Topic::Mention(*did);
        self.worker
            .run(move |i| sql::topic(i, &t, limit, before))
            .await
    }

    async fn following(&self, did: &Did) -> Result<Vec<Did>, StoreError> {
        let did = *did;
        self.worker.run(move |i| sql::follows(i, &did, true)).await
    }

    async fn followers(&self, did: &Did) -> Result<Vec<Did>, StoreError> {
        let did = *did;
        self.worker.run(move |i| sql::follows(i, &did, false)).await
    }

    async fn query(&self, filter: &Filter) -> Result<Vec<EventView>, StoreError> {
        let f = filter.clone();
        self.worker.run(move |i| sql::query(i, &f)).await
    }

    /// One listing of every match's `rowid` and `id` (16 bytes each), then
    /// whole rows a page at a time; the default's query per page rescans
    /// the column below its cursor each time (`query '{}'` at 1M events:
    /// 85 s that way).
    async fn query_pages(
        &self,
        filter: &Filter,
        page: usize,
        visit: &mut (dyn FnMut(Vec<EventView>) -> bool + Send),
    ) -> Result<(), StoreError> {
        let page = page.max(1);
        let f = filter.clone();
        let limit = f.limit.unwrap_or(usize::MAX);
        let listed = self
            .worker
            .run(move |i| match sql::list_matches(i, &f, limit)? {
                sql::Listing::Done(rs) => sql::views(i, rs).map(Ok),
                sql::Listing::Order(order) => Ok(Err(order)),
            })
            .await?;
        match listed {
            Ok(views) => {
                hand_out(views, page, visit);
            }
            Err(order) => {
                // Loaded `QUERY_LOAD` rows at a time (each load is a few
                // statements, whatever its size), handed out by `page`.
                let order = std::sync::Arc::new(order);
                let step = page.max(QUERY_LOAD);
                let mut at = 0;
                while at < order.len() {
                    let (o, from) = (order.clone(), at);
                    let to = at.saturating_add(step).min(order.len());
                    let views = self
                        .worker
                        .run(move |i| {
                            let rs = sql::load_listed(i, &o[from..to])?;
                            sql::views(i, rs)
                        })
                        .await?;
                    at = to;
                    if !hand_out(views, page, visit) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    async fn buckets(
        &self,
        filter: &Filter,
        width: BucketWidth,
    ) -> Result<Vec<Bucket>, StoreError> {
        let f = filter.clone();
        self.worker.run(move |i| sql::buckets(i, &f, width)).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let file = self.dir.join(DB_FILE);
        self.worker.run(move |i| sql::stats(i, &file)).await
    }

    fn export(&self) -> BoxStream<'_, Result<FeedEvent, StoreError>> {
        self.worker
            .export(|i, after, n| sql::export_page(i, after, n))
    }

    async fn log(&self, after: u64, limit: usize) -> Result<Vec<(u64, FeedEvent)>, StoreError> {
        self.worker
            .log(after, limit, |i, after, n| sql::export_page(i, after, n))
            .await
    }

    async fn log_head(&self) -> Result<u64, StoreError> {
        self.worker.run(|i| Ok::<_, StoreError>(i.log_head())).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every append commits (WAL synced); a checkpoint folds the WAL
        // into the main file.
        self.worker
            .run(|i| {
                i.conn.execute_batch("CHECKPOINT")?;
                i.conn.flush_prepared_statement_cache();
                Ok::<_, sql::DuckError>(())
            })
            .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.worker
            .close(|db| {
                db.conn
                    .close()
                    .map_err(|(_, e)| StoreError::Backend(e.to_string()))
            })
            .await
    }
}
