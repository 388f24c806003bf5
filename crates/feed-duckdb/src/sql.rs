//! The queries and the batch write path. Every value is a bound parameter
//! or goes in through an Appender; statements are static text.
//!
//! DuckDB 1.5.6 plans with the column statistics of the moment it
//! prepares, and a cached plan run after later writes fails ("Perfect hash
//! aggregate … statistics … corrupt") or could prune by stale min/max. So
//! the statement cache is emptied after every write ([`append`]), and
//! statements reading the scratch tables (rewritten on every use) are
//! prepared afresh each time ([`prepare`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Int32Array, Int64Array, StringArray, UInt64Array,
    UInt8Array,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::types::Value;
use duckdb::{params, Connection, Row};

use feed_core::thread::{pick_thread_nodes, ReachedNode};
use feed_core::validate::{
    append_with, apply_edit, delete_applies, filter_matches, now_ns, Admit, TargetRef,
};
use feed_core::{
    query_tag, AppendStatus, Bucket, BucketWidth, ContentHash, Counts, Cursor, Did, Embedding,
    Entry, EventId, EventType, EventView, FeedEvent, Filter, StoreError, StoreStats, Thread,
    ThreadNode, EMBEDDING_DIM,
};

/// The `events` columns of a stored event (alias `e`), as [`Head::read`]
/// reads them.
macro_rules! head_cols {
    () => {
        "e.seq, e.id, e.kind, e.author, e.ts, e.hash, e.parent, e.deleted, e.edited"
    };
}

/// The `event_content` columns of a stored event (alias `c`), as
/// [`Body::read`] reads them.
macro_rules! body_cols {
    () => {
        "c.id, c.content, c.tags, c.mentions, c.embedding"
    };
}

mod posts;
mod tail;

use posts::Posts;
use tail::{Part, Tail};

/// Errors inside the DuckDB worker.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DuckError {
    #[error(transparent)]
    Sql(#[from] duckdb::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Arrow(#[from] duckdb::arrow::error::ArrowError),
}

impl From<DuckError> for StoreError {
    fn from(e: DuckError) -> StoreError {
        match e {
            DuckError::Store(s) => s,
            DuckError::Arrow(e) => StoreError::Backend(e.to_string()),
            DuckError::Sql(e) => {
                let msg = e.to_string();
                // DuckDB reports a file that is not a database, or a
                // damaged one, as an IO/serialization error on open.
                if msg.contains("not a valid DuckDB database")
                    || msg.contains("Corrupt")
                    || msg.contains("checksum")
                    || msg.contains("Serialization Error")
                {
                    StoreError::Corrupt(msg)
                } else {
                    StoreError::Backend(msg)
                }
            }
        }
    }
}

type Res<T> = Result<T, DuckError>;

fn corrupt(what: &str) -> DuckError {
    DuckError::Store(StoreError::Corrupt(what.to_string()))
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// `(ts, id)` of an exclusive cursor, or `(None, 0)` for none. Queries
/// spell `(ts, id) < cursor` out as `ts < ? OR (ts = ? AND id < ?)`, which
/// DuckDB evaluates without building a row value per row.
fn cursor_params(before: Option<Cursor>) -> (Option<i64>, u64) {
    match before {
        Some(c) => (Some(c.ts), c.id.0),
        None => (None, 0),
    }
}

/// The open database and what the writer keeps in memory: the next arrival
/// number and the DID dictionary (DIDs are numbered once; every table holds
/// the 4-byte number, and reads map it back here instead of joining).
pub(crate) struct Db {
    pub conn: Connection,
    next_seq: i64,
    dids: Dids,
    /// Oldest and newest post `ts` (for timeline windows), if any post.
    post_ts: Option<(i64, i64)>,
    /// Posts stored per author (index: DID number - 1), deleted ones
    /// included; timelines size their first window by it.
    posts_by: Vec<u32>,
    /// The `follows` table in memory (timelines read it on every call;
    /// scanning the table cost ~1.3 ms at 1M events).
    follows: Follows,
    /// The live edits in memory (every view of an edited post needs its
    /// newest one; finding it by `parent` scanned the whole column, ~10 ms
    /// at 1M events).
    edits: Edits,
    /// The newest stored events.
    tail: Tail,
    /// Every stored post's `seq` and thread group.
    posts: Posts,
    /// The highest stored event id: a batch's ids above it (Snowflake ids
    /// mostly arrive in order) are new without a lookup.
    max_id: Option<u64>,
    /// Ids that stored posts, edits or deletes name as `parent` but that
    /// are not stored: only such an id, when it arrives, has stored events
    /// pointing at it (a reply or delete that came first). Read at the
    /// first append after open, so that a process that only reads never
    /// scans the `parent` column (its blocks would stay in DuckDB's buffer
    /// pool).
    dangling: Option<HashSet<u64>>,
}

/// Live follow edges: each follower's followees with the follow event,
/// and the follower of each follow event (to drop an edge when its event
/// is deleted). Read at open, changed only after a batch commits.
#[derive(Default)]
struct Follows {
    by_follower: HashMap<i32, Vec<(i32, u64)>>,
    follower_of: HashMap<u64, i32>,
}

impl Follows {
    fn add(&mut self, follower: i32, followee: i32, event: u64) {
        self.by_follower
            .entry(follower)
            .or_default()
            .push((followee, event));
        self.follower_of.insert(event, follower);
    }

    fn remove_event(&mut self, event: u64) {
        if let Some(f) = self.follower_of.remove(&event) {
            if let Some(list) = self.by_follower.get_mut(&f) {
                list.retain(|&(_, e)| e != event);
                if list.is_empty() {
                    self.by_follower.remove(&f);
                }
            }
        }
    }

    /// The distinct numbers `follower` follows.
    fn followees(&self, follower: i32) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .by_follower
            .get(&follower)
            .map_or(Vec::new(), |l| l.iter().map(|&(n, _)| n).collect());
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// A live edit as the views need it: enough of its `events` row to
/// rebuild it with its `event_content` row (same `rowid`).
struct EditRef {
    id: u64,
    ts: i64,
    author_n: i32,
    row: i64,
    hash: [u8; 32],
}

/// Live edits by the post they target (any author's; a view applies only
/// the post author's own). Read at open, changed only after a batch
/// commits. Most edited posts have one edit, so each list is allocated to
/// its length (~110 bytes per edited post in all).
#[derive(Default)]
struct Edits {
    by_post: HashMap<u64, Vec<EditRef>>,
}

impl Edits {
    fn add(&mut self, post: u64, e: EditRef) {
        let list = self.by_post.entry(post).or_default();
        list.reserve_exact(1);
        list.push(e);
    }

    fn remove(&mut self, post: u64, edit: u64) {
        if let Some(list) = self.by_post.get_mut(&post) {
            list.retain(|e| e.id != edit);
            if list.is_empty() {
                self.by_post.remove(&post);
            }
        }
    }

    /// `author_n`'s live edits of `post`, oldest first.
    fn own(&self, post: u64, author_n: i32) -> Vec<&EditRef> {
        let mut out: Vec<&EditRef> = self.by_post.get(&post).map_or(Vec::new(), |l| {
            l.iter().filter(|e| e.author_n == author_n).collect()
        });
        out.sort_unstable_by_key(|e| (e.ts, e.id));
        out
    }

    /// `author_n`'s newest live edit of `post`.
    fn newest(&self, post: u64, author_n: i32) -> Option<&EditRef> {
        self.by_post
            .get(&post)?
            .iter()
            .filter(|e| e.author_n == author_n)
            .max_by_key(|e| (e.ts, e.id))
    }

    /// For live events given as `(kind, id, author_n, edited)`: whether
    /// each has an edit in effect (the newest live edit by a post's
    /// author; `edited` says some edit has targeted it), and the `events`
    /// rows (with `rowid`s) of those edits, in order.
    fn in_effect(
        &self,
        events: impl Iterator<Item = (u8, u64, i32, bool)>,
    ) -> (Vec<bool>, Vec<(i64, Head)>) {
        let mut rows = Vec::new();
        let has = events
            .map(|(kind, id, author_n, edited)| {
                let e = (kind == EventType::Post.code() && edited)
                    .then(|| self.newest(id, author_n).map(|e| e.head(id)))
                    .flatten();
                e.map(|e| rows.push(e)).is_some()
            })
            .collect();
        (has, rows)
    }
}

impl EditRef {
    /// The edit's `events` row, live, targeting `post`.
    fn head(&self, post: u64) -> (i64, Head) {
        (
            self.row,
            Head {
                // The arrival number is not kept in memory; views never
                // read an edit's.
                seq: 0,
                id: self.id,
                kind: EventType::Edit.code(),
                author_n: self.author_n,
                ts: self.ts,
                hash: self.hash.to_vec(),
                parent: Some(post),
                deleted: false,
                edited: false,
            },
        )
    }
}

/// The `rowid` of the `events` row with arrival number `seq`: rows go in
/// in `seq` order from 1 and are never deleted, so DuckDB numbers them
/// `seq - 1` ([`Db::new`] checks this at open, and every read checks the
/// ids of the rows it joins).
fn row_of_seq(seq: i64) -> i64 {
    seq - 1
}

/// The arrival number of the `events` row `row` (see [`row_of_seq`]).
fn seq_of_row(row: i64) -> i64 {
    row + 1
}

impl Db {
    /// The highest arrival number given (0 for an empty store).
    pub(crate) fn log_head(&self) -> u64 {
        u64::try_from(self.next_seq - 1).unwrap_or(0)
    }

    /// Reads the counters and the DID dictionary of an opened database,
    /// and the newest content rows (up to `tail_cap` bytes).
    pub(crate) fn new(conn: Connection, tail_cap: usize) -> Res<Db> {
        // The next arrival number, and (same scan) the rows whose `rowid`
        // is not `seq - 1` (see [`row_of_seq`]).
        let (next_seq, misplaced, max_id): (i64, i64, Option<u64>) = conn
            .prepare(
                "SELECT coalesce(max(seq), 0) + 1, count(*) FILTER (WHERE rowid <> seq - 1), \
                 max(id) FROM events",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if misplaced != 0 {
            return Err(corrupt("events rows are not numbered by arrival"));
        }
        let mut dids = Dids::default();
        {
            let mut stmt = conn.prepare("SELECT n, did FROM dids ORDER BY n")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let n: i32 = r.get(0)?;
                if usize::try_from(n).ok() != Some(dids.by_n.len() + 1) {
                    return Err(corrupt("DID numbers are not 1, 2, 3, …"));
                }
                dids.push(Did(bytes32(r.get(1)?, "stored DID has the wrong size")?));
            }
        }
        let mut follows = Follows::default();
        {
            let mut stmt = conn.prepare("SELECT follower, followee, event FROM follows")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                follows.add(r.get(0)?, r.get(1)?, r.get(2)?);
            }
        }
        // Posts per author and the posts' time span, in one scan.
        let mut posts_by = vec![0u32; dids.by_n.len()];
        let mut post_ts: Option<(i64, i64)> = None;
        {
            let mut stmt = conn.prepare(
                "SELECT author, count(*), min(ts), max(ts) FROM events \
                 WHERE kind = 0 GROUP BY author",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let (n, count, lo, hi): (i32, i64, i64, i64) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                let slot = usize::try_from(n - 1)
                    .ok()
                    .and_then(|i| posts_by.get_mut(i))
                    .ok_or_else(|| corrupt("unknown DID number"))?;
                *slot = u32::try_from(count).unwrap_or(u32::MAX);
                post_ts = Some(post_ts.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            }
        }
        let mut edits = Edits::default();
        {
            let mut stmt = conn.prepare(
                "SELECT rowid, parent, id, ts, author, hash FROM events \
                 WHERE kind = 5 AND NOT deleted AND parent IS NOT NULL",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                edits.add(
                    r.get(1)?,
                    EditRef {
                        row: r.get(0)?,
                        id: r.get(2)?,
                        ts: r.get(3)?,
                        author_n: r.get(4)?,
                        hash: bytes32(r.get(5)?, "stored hash has the wrong size")?,
                    },
                );
            }
        }
        let tail = Tail::load(&conn, next_seq - 1, tail_cap)?;
        let post_count = posts_by.iter().map(|&n| n as usize).sum();
        let posts = Posts::load(&conn, post_count, next_seq)?;
        Ok(Db {
            conn,
            next_seq,
            dids,
            post_ts,
            posts_by,
            follows,
            edits,
            tail,
            posts,
            max_id,
            dangling: None,
        })
    }
}

/// The parents that stored posts, edits and deletes name but that are not
/// stored ([`Db::dangling`]). Read by `seq` range, so that only the
/// parents that are not stored posts (in the bench data, the targets of
/// deletes of reactions and follows) are held and then looked up: an
/// anti-join of all parents against all ids built a hash table of every
/// id (~30 MiB more peak memory at 1M events).
fn load_dangling(c: &Connection, posts: &Posts, next_seq: i64) -> Res<HashSet<u64>> {
    let mut others: HashSet<u64> = HashSet::new();
    let mut stmt = c.prepare(
        "SELECT parent FROM events \
         WHERE seq >= ? AND seq < ? AND kind IN (0, 5, 6) AND parent IS NOT NULL",
    )?;
    for (start, end) in seq_ranges(next_seq) {
        let mut rows = stmt.query(params![start, end])?;
        while let Some(r) = rows.next()? {
            let p: u64 = r.get(0)?;
            if posts.target(p).is_none() {
                others.insert(p);
            }
        }
    }
    if others.is_empty() {
        return Ok(others);
    }
    fill_ids(c, others.iter().copied())?;
    let mut stmt = c.prepare("SELECT id FROM events WHERE id IN (SELECT id FROM q_ids)")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        others.remove(&r.get::<_, u64>(0)?);
    }
    Ok(others)
}

/// The `seq` ranges `start..end` (end excluded) of at most 131,072 rows
/// that cover arrival numbers `1..next_seq`: one statement each when a
/// column of every row is read (DuckDB materialises a result in full).
fn seq_ranges(next_seq: i64) -> impl Iterator<Item = (i64, i64)> {
    const ROWS: i64 = 1 << 17;
    let mut start = 1;
    std::iter::from_fn(move || {
        if start >= next_seq {
            return None;
        }
        let end = start.saturating_add(ROWS).min(next_seq);
        let range = (start, end);
        start = end;
        Some(range)
    })
}

/// DID ↔ number, both ways.
#[derive(Default)]
struct Dids {
    by_n: Vec<Did>,
    by_did: HashMap<Did, i32>,
}

impl Dids {
    fn push(&mut self, d: Did) -> i32 {
        let n = self.by_n.len() as i32 + 1;
        self.by_n.push(d);
        self.by_did.insert(d, n);
        n
    }
    fn did(&self, n: i32) -> Res<Did> {
        usize::try_from(n - 1)
            .ok()
            .and_then(|i| self.by_n.get(i))
            .copied()
            .ok_or_else(|| corrupt("unknown DID number"))
    }
    fn number(&self, d: &Did) -> Option<i32> {
        self.by_did.get(d).copied()
    }
}

/// Whole stored events. `event_content` is appended in step with `events`
/// (one row each per event, never deleted), so an event's two rows share a
/// `rowid`; DuckDB fetches the content rows the `events` side selects.
/// [`assemble`] checks the two ids agree.
macro_rules! select_ev {
    ($tail:literal) => {
        concat!(
            "SELECT ",
            head_cols!(),
            ", ",
            body_cols!(),
            " FROM events e JOIN event_content c ON c.rowid = e.rowid ",
            $tail
        )
    };
}

/// A stored event and its bookkeeping.
pub(crate) struct Rec {
    pub seq: i64,
    pub ev: FeedEvent,
    pub deleted: bool,
    /// An edit has been stored for it (it may not be in effect).
    pub edited: bool,
    pub author_n: i32,
}

/// An event's `events` row.
#[derive(Clone)]
struct Head {
    seq: i64,
    id: u64,
    kind: u8,
    author_n: i32,
    ts: i64,
    hash: Vec<u8>,
    parent: Option<u64>,
    deleted: bool,
    edited: bool,
}

impl Head {
    /// Reads [`head_cols!`] from column `at` on.
    fn read(row: &Row<'_>, at: usize) -> Res<Head> {
        Ok(Head {
            seq: row.get(at)?,
            id: row.get(at + 1)?,
            kind: row.get(at + 2)?,
            author_n: row.get(at + 3)?,
            ts: row.get(at + 4)?,
            hash: row.get(at + 5)?,
            parent: row.get(at + 6)?,
            deleted: row.get(at + 7)?,
            edited: row.get(at + 8)?,
        })
    }

    /// Bytes it holds on the heap.
    fn heap(&self) -> usize {
        self.hash.len()
    }
}

/// An event's `event_content` row.
#[derive(Clone)]
struct Body {
    id: u64,
    content: Option<String>,
    tags: Option<String>,
    mentions: Option<Vec<u8>>,
    embedding: Option<Vec<u8>>,
}

impl Body {
    /// Reads [`body_cols!`] from column `at` on.
    fn read(row: &Row<'_>, at: usize) -> Res<Body> {
        Ok(Body {
            id: row.get(at)?,
            content: row.get(at + 1)?,
            tags: row.get(at + 2)?,
            mentions: row.get(at + 3)?,
            embedding: row.get(at + 4)?,
        })
    }

    /// Bytes it holds on the heap.
    fn heap(&self) -> usize {
        self.content.as_ref().map_or(0, String::len)
            + self.tags.as_ref().map_or(0, String::len)
            + self.mentions.as_ref().map_or(0, Vec::len)
            + self.embedding.as_ref().map_or(0, Vec::len)
    }
}

fn bytes32(v: Vec<u8>, what: &str) -> Res<[u8; 32]> {
    v.try_into().map_err(|_| corrupt(what))
}

fn dids_of(b: &[u8]) -> Res<Vec<Did>> {
    if b.len() % 32 != 0 {
        return Err(corrupt("stored mention list has the wrong size"));
    }
    Ok(b.chunks_exact(32)
        .map(|c| {
            let mut d = [0u8; 32];
            d.copy_from_slice(c);
            Did(d)
        })
        .collect())
}

/// One stored event from its two rows.
fn assemble(h: Head, b: Body, dids: &Dids) -> Res<Rec> {
    if h.id != b.id {
        return Err(corrupt("event_content is out of step with events"));
    }
    let embedding = match b.embedding {
        None => None,
        Some(v) if v.len() == EMBEDDING_DIM * 4 => {
            let v = v
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Some(Embedding::new(v).map_err(|_| corrupt("stored embedding is invalid"))?)
        }
        Some(_) => return Err(corrupt("stored embedding has the wrong size")),
    };
    Ok(Rec {
        seq: h.seq,
        ev: FeedEvent {
            id: EventId(h.id),
            kind: EventType::from_code(h.kind).ok_or_else(|| corrupt("unknown event type"))?,
            author: dids.did(h.author_n)?,
            ts: h.ts,
            content_hash: ContentHash(bytes32(h.hash, "stored hash has the wrong size")?),
            content: b.content,
            parent: h.parent.map(EventId),
            tags: b
                .tags
                .map(|t| t.split(' ').map(str::to_owned).collect())
                .unwrap_or_default(),
            mentions: b
                .mentions
                .as_deref()
                .map(dids_of)
                .transpose()?
                .unwrap_or_default(),
            embedding,
        },
        deleted: h.deleted,
        edited: h.edited,
        author_n: h.author_n,
    })
}

/// A row of [`select_ev!`].
fn rec(row: &Row<'_>, dids: &Dids) -> Res<Rec> {
    assemble(Head::read(row, 0)?, Body::read(row, 9)?, dids)
}

/// A prepared statement, from the cache or made for one use.
enum Stmt<'c> {
    Cached(duckdb::CachedStatement<'c>),
    Fresh(duckdb::Statement<'c>),
}

impl<'c> std::ops::Deref for Stmt<'c> {
    type Target = duckdb::Statement<'c>;
    fn deref(&self) -> &Self::Target {
        match self {
            Stmt::Cached(s) => s,
            Stmt::Fresh(s) => s,
        }
    }
}

impl std::ops::DerefMut for Stmt<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Stmt::Cached(s) => s,
            Stmt::Fresh(s) => s,
        }
    }
}

/// A statement for `sql`: cached, unless it reads a scratch table (whose
/// statistics change with every use).
fn prepare<'c>(c: &'c Connection, sql: &str) -> Res<Stmt<'c>> {
    if sql.contains("q_") {
        Ok(Stmt::Fresh(c.prepare(sql)?))
    } else {
        Ok(Stmt::Cached(c.prepare_cached(sql)?))
    }
}

fn recs(db: &Db, sql: &str, p: impl duckdb::Params) -> Res<Vec<Rec>> {
    let mut stmt = prepare(&db.conn, sql)?;
    let mut rows = stmt.query(p)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(rec(row, &db.dids)?);
    }
    Ok(out)
}

pub(crate) fn load(db: &Db, id: EventId) -> Res<Option<Rec>> {
    // `c.id` as well: DuckDB skips `event_content`'s row groups by an `id`
    // range, never by the `rowid` the join asks for.
    Ok(recs(
        db,
        select_ev!("WHERE e.id = ?1 AND c.id = ?1"),
        params![id.0],
    )?
    .pop())
}

fn embedding_blob(e: &Embedding) -> Vec<u8> {
    e.as_slice().iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A scratch table of the write path: the statement that empties it, and
/// its name.
type Scratch = (&'static str, &'static str);
/// Event ids.
const Q_IDS: Scratch = ("DELETE FROM q_ids", "q_ids");
/// Rows to flag: arrival number, deleted, edited.
const Q_FLAGS: Scratch = ("DELETE FROM q_flags", "q_flags");
/// Thread groups absorbed: old group, the group that took it in.
const Q_GROUPS: Scratch = ("DELETE FROM q_groups", "q_groups");

/// Replaces the rows of a scratch table.
fn fill<P: duckdb::AppenderParams>(
    c: &Connection,
    (clear, table): Scratch,
    rows: impl IntoIterator<Item = P>,
) -> Res<()> {
    c.execute(clear, [])?;
    let mut app = c.appender_to_catalog_and_db(table, "temp", "main")?;
    for r in rows {
        app.append_row(r)?;
    }
    app.flush()?;
    Ok(())
}

/// Replaces the rows of `q_ids`.
fn fill_ids(c: &Connection, ids: impl IntoIterator<Item = u64>) -> Res<()> {
    fill(c, Q_IDS, ids.into_iter().map(|id| [id]))
}

/// A list of numbers as one text parameter, `1,2,3`, which a statement
/// turns back into a column of numbers with
/// `unnest(string_split(?, ','))::BIGINT` (or `::UBIGINT`): the values
/// stay out of the statement text, and one cached statement serves every
/// length (DuckDB cannot bind a LIST parameter). Callers pass the
/// non-empty chunks of their lists: an empty list would cast `''`.
fn number_list<T: std::fmt::Display>(vals: impl IntoIterator<Item = T>) -> String {
    let mut out = String::new();
    for v in vals {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&v.to_string());
    }
    out
}

// ---------------------------------------------------------------------------
// The write path.

/// Appends a batch in one transaction: the batch's stored neighbourhood is
/// read in a few set queries, the shared rules run in memory, and the rows
/// go in through Appenders.
pub(crate) fn append(db: &mut Db, batch: Vec<FeedEvent>) -> Res<Vec<AppendStatus>> {
    let Db {
        conn,
        next_seq,
        dids,
        post_ts,
        posts_by,
        follows,
        edits,
        tail,
        posts: post_index,
        max_id,
        dangling,
    } = db;
    let loaded = match dangling.take() {
        Some(d) => d,
        None => load_dangling(conn, post_index, *next_seq)?,
    };
    let dangling = dangling.insert(loaded);
    let tx = conn.transaction()?;
    let mut seq = *next_seq;
    let before = Before {
        dids,
        tail,
        posts: post_index,
        max_id: *max_id,
        dangling,
    };
    let res = append_in(&tx, &before, &mut seq, batch).and_then(|w| Ok((w, tx.commit()?)));
    // Plans made before this write may rely on statistics it changed.
    conn.flush_prepared_statement_cache();
    let (written, ()) = res?;
    *next_seq = seq;
    for d in written.new_dids {
        dids.push(d);
    }
    for event in written.older_deleted {
        follows.remove_event(event);
    }
    for (post, edit) in written.deleted_edits {
        edits.remove(post, edit);
    }
    for (follower, followee, event) in written.followed {
        follows.add(follower, followee, event);
    }
    for (post, e) in written.edits {
        edits.add(post, e);
    }
    tail.extend(written.tail);
    post_index.add(written.post_refs, written.merges);
    *max_id = (*max_id).max(written.max_id);
    dangling.extend(written.dangling);
    for id in written.arrived {
        dangling.remove(&id);
    }
    for (row, deleted) in written.marks {
        tail.mark(row, deleted);
    }
    posts_by.resize(dids.by_n.len(), 0);
    for (ts, author) in written.posts {
        *post_ts = Some(post_ts.map_or((ts, ts), |(lo, hi)| (lo.min(ts), hi.max(ts))));
        if let Some(n) = usize::try_from(author - 1)
            .ok()
            .and_then(|i| posts_by.get_mut(i))
        {
            *n = n.saturating_add(1);
        }
    }
    Ok(written.statuses)
}

/// What a committed batch leaves for the in-memory state.
struct Written {
    statuses: Vec<AppendStatus>,
    /// DIDs numbered by the batch, in number order.
    new_dids: Vec<Did>,
    /// `ts` and author number of the posts it stored.
    posts: Vec<(i64, i32)>,
    /// Follow edges it stored: follower, followee, follow event.
    followed: Vec<(i32, i32, u64)>,
    /// Live edits it stored, with the post each targets.
    edits: Vec<(u64, EditRef)>,
    /// Stored events it deleted (their follow edges, if any, go).
    older_deleted: Vec<u64>,
    /// Stored edits it deleted, with the post each targets.
    deleted_edits: Vec<(u64, u64)>,
    /// Its newest rows, for [`Tail`].
    tail: Part,
    /// Stored rows it flagged: `rowid`, and deleted (or else edited).
    marks: Vec<(i64, bool)>,
    /// Its posts: id, `seq`, thread group, author.
    post_refs: Vec<(u64, i64, u64, i32)>,
    /// Thread groups absorbed: old, new.
    merges: Vec<(u64, u64)>,
    /// The highest id it stored.
    max_id: Option<u64>,
    /// Parents its posts, edits and deletes name that are still not stored.
    dangling: Vec<u64>,
    /// Its ids that were dangling.
    arrived: Vec<u64>,
}

/// The in-memory state a batch is admitted against (as of the last commit).
struct Before<'a> {
    dids: &'a Dids,
    tail: &'a Tail,
    posts: &'a Posts,
    max_id: Option<u64>,
    dangling: &'a HashSet<u64>,
}

/// What the rules see: the stored events the batch names (as targets:
/// type and author), in full those whose id the batch repeats (duplicates
/// or conflicts), plus the batch's accepted events as they go in (found
/// again by `in_batch`, not copied: a repeat inside a batch is rare).
struct Known {
    targets: HashMap<EventId, TargetRef>,
    full: HashMap<EventId, FeedEvent>,
    accepted: Vec<(FeedEvent, Option<TargetRef>)>,
    in_batch: HashMap<EventId, usize>,
}

impl Admit for Known {
    type Error = DuckError;
    fn existing(&mut self, id: EventId) -> Res<Option<FeedEvent>> {
        if let Some(&i) = self.in_batch.get(&id) {
            return Ok(self.accepted.get(i).map(|(e, _)| e.clone()));
        }
        Ok(self.full.get(&id).cloned())
    }
    fn exists(&mut self, id: EventId) -> Res<bool> {
        Ok(self.targets.contains_key(&id))
    }
    fn target(&mut self, id: EventId) -> Res<Option<TargetRef>> {
        Ok(self.targets.get(&id).copied())
    }
    fn insert(&mut self, ev: FeedEvent, target: Option<TargetRef>) -> Res<()> {
        self.targets.insert(ev.id, TargetRef::from(&ev));
        self.in_batch.insert(ev.id, self.accepted.len());
        self.accepted.push((ev, target));
        Ok(())
    }
}

/// Thread groups being merged by a batch: each post's group id, and
/// union-find links from absorbed groups to the groups that absorbed them.
#[derive(Default)]
struct Groups {
    roots: HashMap<EventId, u64>,
    up: HashMap<u64, u64>,
}

impl Groups {
    fn find(&self, mut g: u64) -> u64 {
        while let Some(&next) = self.up.get(&g) {
            g = next;
        }
        g
    }

    /// Merges `child`'s group into `into`'s (a no-op inside a cycle).
    fn union(&mut self, child: u64, into: u64) {
        let (a, b) = (self.find(child), self.find(into));
        if a != b {
            self.up.insert(a, b);
        }
    }
}

fn append_in(
    c: &Connection,
    before: &Before<'_>,
    next_seq: &mut i64,
    batch: Vec<FeedEvent>,
) -> Res<Written> {
    let Before {
        dids,
        tail,
        posts: stored_posts,
        max_id,
        dangling,
    } = *before;
    // 1. Stored events that point at the batch's ids: deletes (their
    //    authors), edits, and posts that arrived before their parent. Only
    //    an id that was dangling can have them; the rules and the derived
    //    state need them only for the batch's new ids.
    let pointed_at: Vec<u64> = batch
        .iter()
        .map(|e| e.id.0)
        .filter(|id| dangling.contains(id))
        .collect();
    let mut deletes: HashMap<EventId, Vec<Did>> = HashMap::new();
    let mut edited: HashSet<EventId> = HashSet::new();
    // Thread groups (union-find over group ids): a post's group is its
    // parent's, and a post arriving after its replies absorbs their groups.
    let mut groups = Groups::default();
    let mut early_replies: HashMap<EventId, Vec<u64>> = HashMap::new();
    if !pointed_at.is_empty() {
        fill_ids(c, pointed_at.iter().copied())?;
        let mut stmt = prepare(
            c,
            "SELECT parent, kind, author, root FROM events \
             WHERE kind IN (0, 5, 6) AND parent IN (SELECT id FROM q_ids)",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let parent = EventId(r.get(0)?);
            match EventType::from_code(r.get(1)?) {
                Some(EventType::Delete) => {
                    deletes
                        .entry(parent)
                        .or_default()
                        .push(dids.did(r.get(2)?)?);
                }
                Some(EventType::Edit) => {
                    edited.insert(parent);
                }
                _ => {
                    let root: Option<u64> = r.get(3)?;
                    let root = root.ok_or_else(|| corrupt("stored post without a thread group"))?;
                    early_replies.entry(parent).or_default().push(root);
                }
            }
        }
    }
    // The stored events the batch names: type, author and thread group of
    // each; in full only those the batch repeats.
    let mut known = Known {
        targets: HashMap::new(),
        full: HashMap::new(),
        in_batch: HashMap::new(),
        accepted: Vec::new(),
    };
    // Their `rowid`s, for the flags [`Tail`] holds and the `UPDATE`s.
    let mut stored_rows: HashMap<EventId, i64> = HashMap::new();
    // Stored posts come from memory; the store is asked for the batch's
    // ids not above the highest stored one (they may repeat one) and the
    // parents that are not stored posts (deletes of reactions and follows,
    // or events not stored).
    let mut ask: HashSet<u64> = batch
        .iter()
        .map(|e| e.id.0)
        .filter(|&id| max_id.is_some_and(|m| id <= m))
        .collect();
    for p in batch.iter().filter_map(|e| e.parent) {
        match stored_posts.target(p.0) {
            Some((seq, group, author)) => {
                known.targets.insert(
                    p,
                    TargetRef {
                        id: p,
                        kind: EventType::Post,
                        author: dids.did(author)?,
                    },
                );
                groups.roots.insert(p, group);
                stored_rows.insert(p, row_of_seq(seq));
            }
            None => {
                ask.insert(p.0);
            }
        }
    }
    if !ask.is_empty() {
        fill_ids(c, ask)?;
        let mut stmt = prepare(
            c,
            "SELECT id, kind, author, root, rowid FROM events WHERE id IN (SELECT id FROM q_ids)",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id = EventId(r.get(0)?);
            let kind =
                EventType::from_code(r.get(1)?).ok_or_else(|| corrupt("unknown event type"))?;
            known.targets.insert(
                id,
                TargetRef {
                    id,
                    kind,
                    author: dids.did(r.get(2)?)?,
                },
            );
            if let Some(g) = r.get::<_, Option<u64>>(3)? {
                groups.roots.insert(id, g);
            }
            stored_rows.insert(id, r.get(4)?);
        }
    }
    let in_batch: HashSet<EventId> = batch.iter().map(|e| e.id).collect();
    let repeated: Vec<EventId> = known
        .targets
        .keys()
        .filter(|id| in_batch.contains(id))
        .copied()
        .collect();
    for r in load_ids_with(c, dids, tail, &repeated)? {
        known.full.insert(r.ev.id, r.ev);
    }

    // 2. The rules, in batch order.
    let statuses = append_with(batch, now_ns(), &mut known)?;
    let accepted = known.accepted;
    if accepted.is_empty() {
        return Ok(Written {
            statuses,
            new_dids: Vec::new(),
            posts: Vec::new(),
            followed: Vec::new(),
            edits: Vec::new(),
            older_deleted: Vec::new(),
            deleted_edits: Vec::new(),
            tail: Part::none(),
            marks: Vec::new(),
            post_refs: Vec::new(),
            merges: Vec::new(),
            max_id: None,
            dangling: Vec::new(),
            arrived: Vec::new(),
        });
    }
    for (ev, _) in &accepted {
        match (ev.kind, ev.parent) {
            (EventType::Delete, Some(p)) => deletes.entry(p).or_default().push(ev.author),
            (EventType::Edit, Some(p)) => {
                edited.insert(p);
            }
            _ => {}
        }
    }

    // Thread groups of the batch's posts, in batch order.
    for (ev, _) in &accepted {
        if ev.kind != EventType::Post {
            continue;
        }
        let parent_group = ev
            .parent
            .filter(|p| {
                known
                    .targets
                    .get(p)
                    .is_some_and(|t| t.kind == EventType::Post)
            })
            .and_then(|p| groups.roots.get(&p).copied());
        let g = groups.find(parent_group.unwrap_or(ev.id.0));
        groups.roots.insert(ev.id, g);
        for child in early_replies.remove(&ev.id).unwrap_or_default() {
            groups.union(child, g);
        }
        if let Some(p) = ev.parent {
            early_replies.entry(p).or_default().push(g);
        }
    }

    // 3. Derived state: which events are now deleted.
    let mut newly_deleted: HashSet<EventId> = HashSet::new();
    for (ev, target) in &accepted {
        if let Some(t) = target.filter(|t| delete_applies(ev, *t)) {
            newly_deleted.insert(t.id);
        }
        if ev.kind != EventType::Delete
            && deletes
                .get(&ev.id)
                .is_some_and(|authors| authors.contains(&ev.author))
        {
            newly_deleted.insert(ev.id);
        }
    }
    let batch_ids: HashSet<EventId> = accepted.iter().map(|(e, _)| e.id).collect();

    // 4. Numbers for new DIDs (authors and mentioned).
    let mut new_dids: Vec<Did> = Vec::new();
    let mut staged: HashMap<Did, i32> = HashMap::new();
    {
        let mut app = c.appender("dids")?;
        for (ev, _) in &accepted {
            for d in std::iter::once(&ev.author).chain(&ev.mentions) {
                if dids.number(d).is_none() && !staged.contains_key(d) {
                    let n = i32::try_from(dids.by_n.len() + new_dids.len() + 1)
                        .map_err(|_| corrupt("DID numbers exhausted"))?;
                    staged.insert(*d, n);
                    new_dids.push(*d);
                    app.append_row(params![n, &d.0[..]])?;
                }
            }
        }
        app.flush()?;
    }
    let num = |d: &Did| -> Res<i32> {
        dids.number(d)
            .or_else(|| staged.get(d).copied())
            .ok_or_else(|| corrupt("DID number missing"))
    };

    // 5. The rows: `events` and `event_content` as one Arrow batch each
    //    (the row-by-row Appender spent ~3 µs per event on their 16
    //    values), the topic and follow rows one by one.
    let mut followed = Vec::new();
    let mut edits = Vec::new();
    let mut post_refs = Vec::new();
    let new_tail;
    {
        let mut ev_rows = EventColumns::with_capacity(accepted.len());
        let mut tags = c.appender("event_tags")?;
        let mut mentions = c.appender("event_mentions")?;
        let mut follows = c.appender("follows")?;
        for (ev, _) in &accepted {
            let author = num(&ev.author)?;
            let deleted = newly_deleted.contains(&ev.id);
            let group = groups.roots.get(&ev.id).map(|g| groups.find(*g));
            if let (EventType::Post, Some(g)) = (ev.kind, group) {
                post_refs.push((ev.id.0, *next_seq, g, author));
            }
            ev_rows.push(
                *next_seq,
                ev,
                author,
                deleted,
                ev.kind == EventType::Post && edited.contains(&ev.id),
                group,
            );
            if ev.kind == EventType::Edit && !deleted {
                if let Some(post) = ev.parent {
                    edits.push((
                        post.0,
                        EditRef {
                            id: ev.id.0,
                            ts: ev.ts,
                            author_n: author,
                            row: row_of_seq(*next_seq),
                            hash: ev.content_hash.0,
                        },
                    ));
                }
            }
            *next_seq += 1;
            if ev.kind == EventType::Follow && !deleted {
                if let Some(m) = ev.mentions.first() {
                    let followee = num(m)?;
                    follows.append_row(params![author, followee, ev.id.0])?;
                    followed.push((author, followee, ev.id.0));
                }
            }
            if ev.kind.carries_topics() && !deleted {
                for t in dedup(&ev.tags) {
                    tags.append_row(params![t, ev.ts, ev.id.0])?;
                }
                for m in dedup(&ev.mentions) {
                    mentions.append_row(params![num(m)?, ev.ts, ev.id.0])?;
                }
            }
        }
        new_tail = ev_rows.tail(tail.cap);
        let (events, content) = ev_rows.finish()?;
        c.appender("events")?.append_record_batch(events)?;
        c.appender("event_content")?.append_record_batch(content)?;
        tags.flush()?;
        mentions.flush()?;
        follows.flush()?;
    }

    // 6. Flags on stored events: deleted ones, and posts that got an edit.
    let older = |set: &HashSet<EventId>| -> Vec<u64> {
        set.iter()
            .filter(|id| !batch_ids.contains(id))
            .map(|id| id.0)
            .collect()
    };
    // Their rows are found by `seq`, which DuckDB prunes by row group
    // (an `id` list is tested against every row); an id without a stored
    // row (a rejected event's) has nothing to flag.
    let seqs_of = |ids: &[u64]| -> Vec<i64> {
        ids.iter()
            .filter_map(|id| stored_rows.get(&EventId(*id)).map(|&r| seq_of_row(r)))
            .collect()
    };
    let older_deleted = older(&newly_deleted);
    let older_edited = older(&edited);
    // Both flags in one `UPDATE` (one pass over the `seq` column): each
    // row's arrival number with whether it is deleted and whether it is a
    // post that got an edit.
    let mut flags: HashMap<i64, (bool, bool)> = HashMap::new();
    for s in seqs_of(&older_deleted) {
        flags.entry(s).or_default().0 = true;
    }
    for s in seqs_of(&older_edited) {
        flags.entry(s).or_default().1 = true;
    }
    if !flags.is_empty() {
        fill(
            c,
            Q_FLAGS,
            flags
                .iter()
                .map(|(s, (d, e))| [s as &dyn duckdb::ToSql, d, e]),
        )?;
        c.execute(
            "UPDATE events SET deleted = deleted OR q.del, \
             edited = edited OR (q.ed AND events.kind = 0) \
             FROM q_flags q WHERE events.seq = q.seq",
            [],
        )?;
    }
    let mut deleted_edits = Vec::new();
    if !older_deleted.is_empty() {
        fill_ids(c, older_deleted.iter().copied())?;
        // Every one was named by a delete in the batch, so its type is
        // known: the derived tables are touched only when they hold it.
        let kinds: HashSet<EventType> = newly_deleted
            .iter()
            .filter(|id| !batch_ids.contains(id))
            .flat_map(|id| match known.targets.get(id) {
                Some(t) => vec![t.kind],
                None => EventType::ALL.to_vec(),
            })
            .collect();
        if kinds.contains(&EventType::Edit) {
            let mut stmt = prepare(
                c,
                "SELECT e.parent, e.id FROM events e JOIN q_flags q ON e.seq = q.seq \
                 WHERE q.del AND e.kind = 5 AND e.parent IS NOT NULL",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                deleted_edits.push((r.get(0)?, r.get(1)?));
            }
        }
        if kinds.contains(&EventType::Follow) {
            c.execute(
                "DELETE FROM follows WHERE event IN (SELECT id FROM q_ids)",
                [],
            )?;
        }
        if kinds.iter().any(|k| k.carries_topics()) {
            for sql in [
                "DELETE FROM event_tags WHERE id IN (SELECT id FROM q_ids)",
                "DELETE FROM event_mentions WHERE id IN (SELECT id FROM q_ids)",
            ] {
                c.execute(sql, [])?;
            }
        }
    }
    // Stored thread groups absorbed by the batch's posts.
    let merges: Vec<(u64, u64)> = groups.up.keys().map(|&g| (g, groups.find(g))).collect();
    if !merges.is_empty() {
        fill(c, Q_GROUPS, merges.iter().map(|&(old, new)| [old, new]))?;
        c.execute(
            "UPDATE events SET root = q_groups.new FROM q_groups WHERE events.root = q_groups.old",
            [],
        )?;
    }
    // Every stored event the batch flags was named by it (as a delete's
    // or an edit's target), so its `rowid` is known.
    let marks = older_deleted
        .iter()
        .map(|id| (EventId(*id), true))
        .chain(older_edited.iter().map(|id| (EventId(*id), false)))
        .filter_map(|(id, deleted)| stored_rows.get(&id).map(|&r| (r, deleted)))
        .collect();
    let posts = accepted
        .iter()
        .filter(|(e, _)| e.kind == EventType::Post)
        .map(|(e, _)| Ok((e.ts, num(&e.author)?)))
        .collect::<Res<_>>()?;
    // Parents still not stored, of the kinds step 1 asks about.
    let still_dangling = accepted
        .iter()
        .filter(|(e, _)| {
            matches!(
                e.kind,
                EventType::Post | EventType::Edit | EventType::Delete
            )
        })
        .filter_map(|(e, _)| e.parent)
        .filter(|p| !known.targets.contains_key(p))
        .map(|p| p.0)
        .collect();
    Ok(Written {
        statuses,
        new_dids,
        posts,
        followed,
        edits,
        older_deleted,
        deleted_edits,
        tail: new_tail,
        marks,
        post_refs,
        merges,
        max_id: batch_ids.iter().map(|id| id.0).max(),
        dangling: still_dangling,
        arrived: pointed_at
            .into_iter()
            .filter(|id| batch_ids.contains(&EventId(*id)))
            .collect(),
    })
}

/// A batch's `events` and `event_content` rows, column by column, for
/// `Appender::append_record_batch`.
struct EventColumns {
    seq: Vec<i64>,
    id: Vec<u64>,
    kind: Vec<u8>,
    author: Vec<i32>,
    ts: Vec<i64>,
    parent: Vec<Option<u64>>,
    hash: Vec<[u8; 32]>,
    deleted: Vec<bool>,
    edited: Vec<bool>,
    root: Vec<Option<u64>>,
    reaction: Vec<Option<u8>>,
    content: Vec<Option<String>>,
    tags: Vec<Option<String>>,
    mentions: Vec<Option<Vec<u8>>>,
    embedding: Vec<Option<Vec<u8>>>,
}

impl EventColumns {
    fn with_capacity(n: usize) -> EventColumns {
        EventColumns {
            seq: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            author: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            parent: Vec::with_capacity(n),
            hash: Vec::with_capacity(n),
            deleted: Vec::with_capacity(n),
            edited: Vec::with_capacity(n),
            root: Vec::with_capacity(n),
            reaction: Vec::with_capacity(n),
            content: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
            mentions: Vec::with_capacity(n),
            embedding: Vec::with_capacity(n),
        }
    }

    fn push(
        &mut self,
        seq: i64,
        ev: &FeedEvent,
        author: i32,
        deleted: bool,
        edited: bool,
        root: Option<u64>,
    ) {
        self.seq.push(seq);
        self.id.push(ev.id.0);
        self.kind.push(ev.kind.code());
        self.author.push(author);
        self.ts.push(ev.ts);
        self.parent.push(ev.parent.map(|p| p.0));
        self.hash.push(ev.content_hash.0);
        self.deleted.push(deleted);
        self.edited.push(edited);
        self.root.push(root);
        self.reaction.push(ev.reaction_kind().map(|k| k as u8));
        self.content.push(ev.content.clone());
        self.tags
            .push((!ev.tags.is_empty()).then(|| ev.tags.join(" ")));
        self.mentions.push(
            (!ev.mentions.is_empty()).then(|| ev.mentions.iter().flat_map(|m| m.0).collect()),
        );
        self.embedding
            .push(ev.embedding.as_ref().map(embedding_blob));
    }

    /// Copies of the newest rows, at most `cap` bytes, for [`Tail`].
    fn tail(&self, cap: usize) -> Part {
        let mut rows = Vec::new();
        let mut bytes = 0;
        for i in (0..self.id.len()).rev() {
            let head = Head {
                seq: self.seq[i],
                id: self.id[i],
                kind: self.kind[i],
                author_n: self.author[i],
                ts: self.ts[i],
                hash: self.hash[i].to_vec(),
                parent: self.parent[i],
                deleted: self.deleted[i],
                edited: self.edited[i],
            };
            let body = Body {
                id: self.id[i],
                content: self.content[i].clone(),
                tags: self.tags[i].clone(),
                mentions: self.mentions[i].clone(),
                embedding: self.embedding[i].clone(),
            };
            bytes += tail::row_size(&head, &body);
            if bytes > cap {
                break;
            }
            rows.push((head, body));
        }
        rows.reverse();
        let kept = self.id.len() - rows.len();
        let dropped_top = (0..kept)
            .filter(|&i| self.kind[i] == EventType::Post.code())
            .map(|i| self.ts[i])
            .max();
        let start = self.seq.first().map_or(0, |&s| row_of_seq(s));
        Part {
            start,
            first: start + kept as i64,
            dropped_top,
            rows,
        }
    }

    /// The two record batches, columns in table order.
    fn finish(self) -> Result<(RecordBatch, RecordBatch), ArrowError> {
        let col = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
        // One id column serves both batches.
        let id: ArrayRef = Arc::new(UInt64Array::from(self.id));
        let events = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                col("seq", DataType::Int64, false),
                col("id", DataType::UInt64, false),
                col("kind", DataType::UInt8, false),
                col("author", DataType::Int32, false),
                col("ts", DataType::Int64, false),
                col("parent", DataType::UInt64, true),
                col("hash", DataType::Binary, false),
                col("deleted", DataType::Boolean, false),
                col("edited", DataType::Boolean, false),
                col("root", DataType::UInt64, true),
                col("reaction", DataType::UInt8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(self.seq)) as ArrayRef,
                Arc::clone(&id),
                Arc::new(UInt8Array::from(self.kind)),
                Arc::new(Int32Array::from(self.author)),
                Arc::new(Int64Array::from(self.ts)),
                Arc::new(UInt64Array::from(self.parent)),
                Arc::new(BinaryArray::from_iter_values(self.hash.iter())),
                Arc::new(BooleanArray::from(self.deleted)),
                Arc::new(BooleanArray::from(self.edited)),
                Arc::new(UInt64Array::from(self.root)),
                Arc::new(UInt8Array::from(self.reaction)),
            ],
        )?;
        let content = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                col("id", DataType::UInt64, false),
                col("content", DataType::Utf8, true),
                col("tags", DataType::Utf8, true),
                col("mentions", DataType::Binary, true),
                col("embedding", DataType::Binary, true),
            ])),
            vec![
                id,
                Arc::new(StringArray::from(self.content)),
                Arc::new(StringArray::from(self.tags)),
                Arc::new(BinaryArray::from_iter(self.mentions)),
                Arc::new(BinaryArray::from_iter(self.embedding)),
            ],
        )?;
        Ok((events, content))
    }
}

/// The distinct items of a list, first occurrence kept.
fn dedup<T: PartialEq>(list: &[T]) -> Vec<&T> {
    let mut out: Vec<&T> = Vec::with_capacity(list.len());
    for x in list {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Reads.
//
// Listings run in two steps: the `events` rows of the events, from the
// narrow `events` (or topic) columns, newest first and limited, then the
// `event_content` rows of just those ([`complete`]), by `rowid`; joining
// `event_content` before the limit would carry every candidate's content
// and embedding through the sort.
//
// DuckDB fetches single rows slowly from a plain scan, but a join with a
// small table of `rowid`s becomes a filter on the scan that visits only
// the vectors holding them: 50 rows spread over 1M events load in ~5 ms
// this way, 45 ms through `id IN (…)` (crate README).

/// Rows per load: DuckDB turns a join with up to this many rows into an
/// `IN` filter on the other side's scan (`dynamic_or_filter_threshold`,
/// set at open); past it, only a min/max range.
pub(crate) const LOAD_CHUNK: usize = 256;

/// `events` rows with their `rowid`s, from a query selecting
/// `e.rowid, ` [`head_cols!`].
fn heads_with(c: &Connection, sql: &str, p: impl duckdb::Params) -> Res<Vec<(i64, Head)>> {
    let mut stmt = prepare(c, sql)?;
    let mut found = stmt.query(p)?;
    let mut out = Vec::new();
    while let Some(row) = found.next()? {
        out.push((row.get(0)?, Head::read(row, 1)?));
    }
    Ok(out)
}

fn heads(db: &Db, sql: &str, p: impl duckdb::Params) -> Res<Vec<(i64, Head)>> {
    heads_with(&db.conn, sql, p)
}

/// Whole events from their `events` rows: the `event_content` rows (same
/// `rowid`) from the [`Tail`] where it holds them, the others in one query
/// per [`LOAD_CHUNK`]; order kept.
fn complete_with(
    c: &Connection,
    dids: &Dids,
    tail: &Tail,
    heads: Vec<(i64, Head)>,
) -> Res<Vec<Rec>> {
    let mut rows: Vec<(i64, u64)> = heads
        .iter()
        .map(|(r, h)| (*r, h.id))
        .filter(|&(r, _)| tail.get(r).is_none())
        .collect();
    rows.sort_unstable();
    rows.dedup_by_key(|&mut (r, _)| r);
    let mut bodies: HashMap<i64, Body> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(LOAD_CHUNK) {
        // The chunk's `id` range too: DuckDB skips the row groups outside
        // it (ids follow the storage order), but tests a `rowid` filter in
        // every row group. A row's two ids agree, so the range drops none.
        let lo = chunk.iter().map(|&(_, id)| id).min();
        let hi = chunk.iter().map(|&(_, id)| id).max();
        let mut stmt = prepare(
            c,
            concat!(
                "SELECT q.r, ",
                body_cols!(),
                " FROM (SELECT unnest(string_split(?, ','))::BIGINT AS r) q \
                 JOIN event_content c ON c.rowid = q.r WHERE c.id BETWEEN ? AND ?"
            ),
        )?;
        let mut found = stmt.query(params![number_list(chunk.iter().map(|&(r, _)| r)), lo, hi])?;
        while let Some(row) = found.next()? {
            bodies.insert(row.get(0)?, Body::read(row, 1)?);
        }
    }
    let mut out = Vec::with_capacity(heads.len());
    for (r, h) in heads {
        let b = match bodies.remove(&r) {
            Some(b) => b,
            None => tail
                .get(r)
                .cloned()
                .ok_or_else(|| corrupt("an event has no event_content row"))?,
        };
        out.push(assemble(h, b, dids)?);
    }
    Ok(out)
}

fn complete(db: &Db, heads: Vec<(i64, Head)>) -> Res<Vec<Rec>> {
    complete_with(&db.conn, &db.dids, &db.tail, heads)
}

/// Stored events by id, in the order given (unknown ids skipped): their
/// `events` rows in one query per [`LOAD_CHUNK`] ids, then [`complete_with`].
fn load_ids_with(c: &Connection, dids: &Dids, tail: &Tail, ids: &[EventId]) -> Res<Vec<Rec>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut unique: Vec<u64> = ids.iter().map(|i| i.0).collect();
    unique.sort_unstable();
    unique.dedup();
    let mut found = Vec::with_capacity(unique.len());
    for chunk in unique.chunks(LOAD_CHUNK) {
        found.extend(heads_with(
            c,
            concat!(
                "SELECT e.rowid, ",
                head_cols!(),
                " FROM events e \
                 WHERE e.id BETWEEN ? AND ? \
                 AND e.id IN (SELECT unnest(string_split(?, ','))::UBIGINT)"
            ),
            params![chunk.first(), chunk.last(), number_list(chunk)],
        )?);
    }
    let mut by_id: HashMap<EventId, Rec> = complete_with(c, dids, tail, found)?
        .into_iter()
        .map(|r| (r.ev.id, r))
        .collect();
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

fn load_ids(db: &Db, ids: &[EventId]) -> Res<Vec<Rec>> {
    load_ids_with(&db.conn, &db.dids, &db.tail, ids)
}

/// Live edits of post `id` by `author_n`, oldest first (from memory,
/// their rows loaded by `rowid`).
fn edits(db: &Db, id: EventId, author_n: i32) -> Res<Vec<Rec>> {
    let heads = db
        .edits
        .own(id.0, author_n)
        .into_iter()
        .map(|e| e.head(id.0))
        .collect();
    complete(db, heads)
}

/// Each post with the edit in effect: `has[i]` tells whether post `i`
/// has one, `edits` holds those edits in post order.
fn apply_edits(posts: Vec<Rec>, has: &[bool], edits: Vec<Rec>) -> Res<Vec<EventView>> {
    let mut edits = edits.into_iter();
    posts
        .iter()
        .zip(has)
        .map(|(r, &has)| {
            let e = match has {
                true => Some(
                    edits
                        .next()
                        .ok_or_else(|| corrupt("an edit went missing"))?,
                ),
                false => None,
            };
            Ok(apply_edit(&r.ev, e.as_ref().map(|e| &e.ev)))
        })
        .collect()
}

/// The views of stored events: each post with the edit in effect (found
/// in memory, its rows loaded by `rowid`).
pub(crate) fn views(db: &Db, rs: Vec<Rec>) -> Res<Vec<EventView>> {
    let (has, wanted) = db.edits.in_effect(
        rs.iter()
            .map(|r| (r.ev.kind.code(), r.ev.id.0, r.author_n, r.edited)),
    );
    let edits = complete(db, wanted)?;
    apply_edits(rs, &has, edits)
}

fn view(db: &Db, r: Rec) -> Res<EventView> {
    views(db, vec![r])?
        .pop()
        .ok_or_else(|| corrupt("a view went missing"))
}

/// Completes and views listed live events: their `event_content` rows and
/// the rows of the edits in effect are fetched together.
fn listing(db: &Db, mut found: Vec<(i64, Head)>) -> Res<Vec<EventView>> {
    let listed = found.len();
    let (has, wanted) = db.edits.in_effect(
        found
            .iter()
            .map(|(_, h)| (h.kind, h.id, h.author_n, h.edited)),
    );
    found.extend(wanted);
    let mut posts = complete(db, found)?;
    let edits = posts.split_off(listed);
    apply_edits(posts, &has, edits)
}

pub(crate) fn get(db: &Db, id: EventId) -> Res<Option<Entry>> {
    match load(db, id)? {
        None => Ok(None),
        Some(r) if r.deleted => Ok(Some(Entry::Deleted(id))),
        Some(r) => Ok(Some(Entry::Live(view(db, r)?))),
    }
}

/// [`get`] for many ids: the rows in a few queries per [`LOAD_CHUNK`] ids,
/// the edits in effect in one more per [`LOAD_CHUNK`] edited posts.
pub(crate) fn get_many(db: &Db, ids: &[EventId]) -> Res<Vec<Option<Entry>>> {
    let mut unique: Vec<EventId> = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let (deleted, live): (Vec<Rec>, Vec<Rec>) =
        load_ids(db, &unique)?.into_iter().partition(|r| r.deleted);
    let mut found: HashMap<EventId, Entry> = HashMap::with_capacity(unique.len());
    for r in deleted {
        found.insert(r.ev.id, Entry::Deleted(r.ev.id));
    }
    for v in views(db, live)? {
        found.insert(v.event.id, Entry::Live(v));
    }
    Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
}

/// Stored events as accepted, one answer per id, in one set query.
pub(crate) fn stored_many(db: &Db, ids: &[EventId]) -> Res<Vec<Option<FeedEvent>>> {
    let mut unique: Vec<EventId> = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let found: HashMap<EventId, FeedEvent> = load_ids(db, &unique)?
        .into_iter()
        .map(|r| (r.ev.id, r.ev))
        .collect();
    Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
}

pub(crate) fn versions(db: &Db, id: EventId) -> Res<Vec<FeedEvent>> {
    let Some(r) = load(db, id)?.filter(|r| !r.deleted) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    if r.ev.kind == EventType::Post && r.edited {
        out.extend(edits(db, r.ev.id, r.author_n)?.into_iter().map(|e| e.ev));
    }
    out.insert(0, r.ev);
    Ok(out)
}

/// Timeline windows, newest first: the first is long enough to hold about
/// twice `limit` posts by `authors` if their posts were spread evenly over
/// the posts' time span `span` (from the per-author counts in memory);
/// each next one is 8 times longer, and the last is all of time. DuckDB
/// skips rows outside a window by their `ts` (row groups by min/max), and
/// storage order follows arrival, which mostly follows time. A window that
/// yields `limit` posts holds the newest ones, so the answer never depends
/// on the estimate, only the work does. None when `authors` never posted.
fn window_starts(
    db: &Db,
    authors: &[i32],
    limit: usize,
    top: i128,
    span: i128,
) -> Option<Vec<i64>> {
    let theirs: i128 = authors
        .iter()
        .filter_map(|&a| usize::try_from(a - 1).ok().and_then(|i| db.posts_by.get(i)))
        .map(|&n| i128::from(n))
        .sum();
    if theirs == 0 {
        return None;
    }
    let mut w = (span * 2 * limit as i128 / theirs).max(1);
    let mut out = Vec::new();
    while w < span {
        out.push((top - w).max(i128::from(i64::MIN)) as i64);
        w = w.saturating_mul(8);
    }
    out.push(i64::MIN);
    Some(out)
}

pub(crate) fn timeline(
    db: &Db,
    did: &Did,
    limit: usize,
    before: Option<Cursor>,
) -> Res<Vec<EventView>> {
    let limit = feed_core::clamp_timeline_limit(limit);
    let (Some(me), Some((lo, hi))) = (db.dids.number(did), db.post_ts) else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let (cts, cid) = cursor_params(before);
    let top = cts.map_or(hi, |t| t.min(hi)) as i128;
    let span = (hi as i128 - lo as i128).max(1);
    // The account and everyone it follows, from the in-memory edges.
    let mut authors = db.follows.followees(me);
    authors.push(me);
    // A recent page is usually in the tail, which knows whether it is.
    let mut wanted = vec![false; db.dids.by_n.len() + 1];
    for &a in &authors {
        if let Some(w) = usize::try_from(a).ok().and_then(|a| wanted.get_mut(a)) {
            *w = true;
        }
    }
    if let Some(found) = db.tail.timeline(&wanted, limit, cts.map(|ts| (ts, cid))) {
        return listing(db, found);
    }
    let Some(starts) = window_starts(db, &authors, limit, top, span) else {
        return Ok(Vec::new());
    };
    let authors = number_list(authors);
    let mut found = Vec::new();
    for start in starts {
        found = heads(
            db,
            concat!(
                "SELECT e.rowid, ",
                head_cols!(),
                " FROM events e \
                 WHERE e.kind = 0 AND NOT e.deleted AND e.ts >= ?5 \
                 AND e.author IN (SELECT unnest(string_split(?1, ','))::INTEGER) \
                 AND (?2 IS NULL OR e.ts < ?2 OR (e.ts = ?2 AND e.id < ?3)) \
                 ORDER BY e.ts DESC, e.id DESC LIMIT ?4"
            ),
            params![authors, cts, cid, limit_param(limit), start],
        )?;
        if found.len() == limit {
            break;
        }
    }
    listing(db, found)
}

pub(crate) fn author_feed(
    db: &Db,
    did: &Did,
    since: Option<i64>,
    until: Option<i64>,
    limit: usize,
) -> Res<Vec<EventView>> {
    let Some(a) = db.dids.number(did) else {
        return Ok(Vec::new());
    };
    let found = heads(
        db,
        concat!(
            "SELECT e.rowid, ",
            head_cols!(),
            " FROM events e WHERE e.author = ? AND e.kind = 0 AND NOT e.deleted \
             AND e.ts >= ? AND e.ts <= ? ORDER BY e.ts DESC, e.id DESC LIMIT ?"
        ),
        params![
            a,
            since.unwrap_or(i64::MIN),
            until.unwrap_or(i64::MAX),
            limit_param(limit)
        ],
    )?;
    listing(db, found)
}

/// A thread group's `events` rows (with `rowid`s) by id.
type GroupRows = HashMap<u64, (i64, Head)>;

/// Every post reachable below `id`, if it is a stored post: its thread
/// group (known in memory with its `seq` span) read with one query, walked
/// here. Only a cycle through `id` can be reached (each post has one
/// parent), so not re-entering `id` is the whole cycle guard. Also gives
/// the group's `events` rows.
fn reach(db: &Db, id: EventId) -> Res<Option<(Vec<ReachedNode>, GroupRows)>> {
    let Some((group, (lo, hi))) = db.posts.group(id.0)? else {
        return Ok(None);
    };
    let mut children: HashMap<u64, Vec<(u64, i64, bool)>> = HashMap::new();
    let mut own: Option<(Option<u64>, i64, bool)> = None;
    // `seq` follows the storage order, so DuckDB reads only the row groups
    // of the span.
    let members = heads(
        db,
        concat!(
            "SELECT e.rowid, ",
            head_cols!(),
            " FROM events e WHERE e.seq >= ? AND e.seq <= ? AND e.kind = 0 AND e.root = ?"
        ),
        params![lo, hi, group],
    )?;
    let mut rows: GroupRows = HashMap::with_capacity(members.len());
    for (r, h) in members {
        let (nid, parent, ts, live) = (h.id, h.parent, h.ts, !h.deleted);
        if nid == id.0 {
            own = Some((parent, ts, live));
        }
        if let Some(p) = parent {
            children.entry(p).or_default().push((nid, ts, live));
        }
        rows.insert(nid, (r, h));
    }
    let Some((parent, ts, live)) = own else {
        return Err(corrupt("a post is missing from its thread group"));
    };
    let mut out = vec![ReachedNode {
        id,
        depth: 0,
        parent: parent.map(EventId),
        ts,
        live,
    }];
    let mut next = 0;
    while next < out.len() {
        let (pid, depth) = (out[next].id.0, out[next].depth);
        next += 1;
        for &(cid, ts, live) in children.get(&pid).map_or(&[][..], |v| &v[..]) {
            if cid != id.0 {
                out.push(ReachedNode {
                    id: EventId(cid),
                    depth: depth + 1,
                    parent: Some(EventId(pid)),
                    ts,
                    live,
                });
            }
        }
    }
    Ok(Some((out, rows)))
}

pub(crate) fn thread(db: &Db, id: EventId) -> Res<Thread> {
    let Some((nodes, mut rows)) = reach(db, id)? else {
        return Ok(Thread::default());
    };
    let (picked, truncated) = pick_thread_nodes(&nodes);
    let live: Vec<(i64, Head)> = picked
        .iter()
        .map(|&i| nodes[i])
        .filter(|n| n.live)
        .map(|n| {
            rows.remove(&n.id.0)
                .ok_or_else(|| corrupt("thread node vanished"))
        })
        .collect::<Res<_>>()?;
    let mut live_views = listing(db, live)?.into_iter();
    let mut out = Vec::with_capacity(picked.len());
    for i in picked {
        let n = nodes[i];
        let entry = if n.live {
            Entry::Live(
                live_views
                    .next()
                    .ok_or_else(|| corrupt("thread node vanished"))?,
            )
        } else {
            Entry::Deleted(n.id)
        };
        out.push(ThreadNode {
            depth: n.depth,
            entry,
        });
    }
    Ok(Thread {
        nodes: out,
        truncated,
    })
}

pub(crate) fn counts(db: &Db, id: EventId) -> Res<Option<Counts>> {
    let Some((reached, rows)) = reach(db, id)? else {
        return Ok(None);
    };
    let Some((_, post)) = rows.get(&id.0).filter(|(_, h)| !h.deleted) else {
        return Ok(None);
    };
    let mut out = Counts {
        replies: reached.iter().filter(|n| n.depth == 1 && n.live).count() as u64,
        thread_size: reached.iter().filter(|n| n.depth > 0 && n.live).count() as u64,
        edits: db.edits.own(id.0, post.author_n).len() as u64,
        ..Counts::default()
    };
    let mut stmt = prepare(
        &db.conn,
        "SELECT reaction, count(DISTINCT author) FROM events \
         WHERE parent = ? AND kind = 1 AND NOT deleted GROUP BY reaction",
    )?;
    let mut rows = stmt.query(params![id.0])?;
    while let Some(r) = rows.next()? {
        let n = r.get::<_, i64>(1)? as u64;
        match r.get::<_, Option<u8>>(0)? {
            Some(0) => out.likes = n,
            Some(1) => out.boosts = n,
            Some(2) => out.bookmarks = n,
            _ => return Err(corrupt("stored reaction of unknown kind")),
        }
    }
    Ok(Some(out))
}

/// Which topic table a listing reads.
pub(crate) enum Topic {
    /// `event_tags`, by tag.
    Tag(String),
    /// `event_mentions`, by mentioned DID.
    Mention(Did),
}

/// `tag` and `mentions`: live events of a topic (the topic tables hold
/// live events only), newest first.
pub(crate) fn topic(
    db: &Db,
    topic: &Topic,
    limit: usize,
    before: Option<Cursor>,
) -> Res<Vec<EventView>> {
    let (ts, id) = cursor_params(before);
    let found = match topic {
        Topic::Tag(t) => heads(
            db,
            concat!(
                "SELECT e.rowid, ",
                head_cols!(),
                " FROM (SELECT id, ts FROM event_tags WHERE tag = ?1 \
                 AND (?2 IS NULL OR ts < ?2 OR (ts = ?2 AND id < ?3)) \
                 ORDER BY ts DESC, id DESC LIMIT ?4) t \
                 JOIN events e ON e.id = t.id ORDER BY t.ts DESC, t.id DESC"
            ),
            params![t, ts, id, limit_param(limit)],
        )?,
        Topic::Mention(d) => {
            let Some(n) = db.dids.number(d) else {
                return Ok(Vec::new());
            };
            heads(
                db,
                concat!(
                    "SELECT e.rowid, ",
                    head_cols!(),
                    " FROM (SELECT id, ts FROM event_mentions WHERE did = ?1 \
                     AND (?2 IS NULL OR ts < ?2 OR (ts = ?2 AND id < ?3)) \
                     ORDER BY ts DESC, id DESC LIMIT ?4) t \
                     JOIN events e ON e.id = t.id ORDER BY t.ts DESC, t.id DESC"
                ),
                params![n, ts, id, limit_param(limit)],
            )?
        }
    };
    listing(db, found)
}

pub(crate) fn follows(db: &Db, did: &Did, following: bool) -> Res<Vec<Did>> {
    let Some(n) = db.dids.number(did) else {
        return Ok(Vec::new());
    };
    let sql = if following {
        "SELECT DISTINCT followee FROM follows WHERE follower = ?"
    } else {
        "SELECT DISTINCT follower FROM follows WHERE followee = ?"
    };
    let mut stmt = prepare(&db.conn, sql)?;
    let mut rows = stmt.query(params![n])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(db.dids.did(r.get(0)?)?);
    }
    out.sort_unstable();
    Ok(out)
}

/// A filter as a condition on `events e`: fixed clauses with a `?` per
/// bound value, and the values in order. `None` when no stored event can
/// match: an empty list, or a list of DIDs or tags none of which can be
/// stored. It is `filter_matches` for live events: the topic tables hold
/// exactly the live posts, mention and hashtag events (the types whose
/// tags and mentions count) by stored (lower-case) tag and by DID number.
fn filter_sql(db: &Db, f: &Filter) -> Option<(String, Vec<Value>)> {
    fn list(s: String) -> Option<Value> {
        (!s.is_empty()).then_some(Value::Text(s))
    }
    let mut sql =
        String::from("NOT e.deleted AND ((? >> e.kind) & 1) = 1 AND e.ts >= ? AND e.ts <= ?");
    let mut vals = vec![
        Value::BigInt(f.type_mask()),
        Value::BigInt(f.since.unwrap_or(i64::MIN)),
        Value::BigInt(f.until.unwrap_or(i64::MAX)),
    ];
    if let Some(ids) = &f.ids {
        vals.push(list(number_list(ids.iter().map(|i| i.0)))?);
        sql.push_str(" AND e.id IN (SELECT unnest(string_split(?, ','))::UBIGINT)");
    }
    // One author or parent is an equality, which DuckDB filters in the
    // scan; a list is a semi-join (one author's 50 newest posts at 1M
    // events: ~12 ms against ~28).
    if let Some(authors) = &f.authors {
        let ns: Vec<i32> = authors.iter().filter_map(|a| db.dids.number(a)).collect();
        if let [n] = ns[..] {
            vals.push(Value::Int(n));
            sql.push_str(" AND e.author = ?");
        } else {
            vals.push(list(number_list(ns))?);
            sql.push_str(" AND e.author IN (SELECT unnest(string_split(?, ','))::INTEGER)");
        }
    }
    if let Some(parents) = &f.parents {
        if let [p] = parents[..] {
            vals.push(Value::UBigInt(p.0));
            sql.push_str(" AND e.parent = ?");
        } else {
            vals.push(list(number_list(parents.iter().map(|p| p.0)))?);
            sql.push_str(" AND e.parent IN (SELECT unnest(string_split(?, ','))::UBIGINT)");
        }
    }
    if let Some(tags) = &f.tags {
        // Stored tags are 1..=64 bytes without whitespace, so a query tag
        // that is empty or holds a space matches nothing, and the others
        // can be listed space-separated.
        let tags: Vec<String> = tags
            .iter()
            .map(|t| query_tag(t))
            .filter(|t| !t.is_empty() && !t.contains(' '))
            .collect();
        vals.push(list(tags.join(" "))?);
        sql.push_str(
            " AND e.id IN (SELECT id FROM event_tags \
             WHERE tag IN (SELECT unnest(string_split(?, ' '))))",
        );
    }
    if let Some(mentions) = &f.mentions {
        vals.push(list(number_list(
            mentions.iter().filter_map(|d| db.dids.number(d)),
        ))?);
        sql.push_str(
            " AND e.id IN (SELECT id FROM event_mentions \
             WHERE did IN (SELECT unnest(string_split(?, ','))::INTEGER))",
        );
    }
    Some((sql, vals))
}

/// Live events matching `f`, newest first, at most `limit`. The whole
/// filter is SQL ([`filter_sql`]). A short listing reads the `events`
/// columns ordered and limited, then the content rows of just those; a
/// long one sorts only `rowid` and `id` and loads whole rows a chunk at a
/// time, so DuckDB never sorts content (a sort of every row with its
/// content ran out of the 96 MiB `memory_limit` at 1M events).
fn matching(db: &Db, f: &Filter, limit: usize) -> Res<Vec<Rec>> {
    match list_matches(db, f, limit)? {
        Listing::Done(out) => Ok(out),
        Listing::Order(order) => {
            let mut out = Vec::with_capacity(order.len());
            for chunk in order.chunks(LOAD_CHUNK) {
                out.extend(load_listed(db, chunk)?);
            }
            Ok(out)
        }
    }
}

/// What [`list_matches`] found: the rows themselves, or the `(rowid, id)` of
/// each, newest first, to be loaded a chunk at a time by [`load_listed`].
pub(crate) enum Listing {
    /// Complete rows (an id list, or a listing of at most [`LOAD_CHUNK`]).
    Done(Vec<Rec>),
    /// Every match's `rowid` and `id`, in the answer's order.
    Order(Vec<(i64, u64)>),
}

/// The live events matching `f`, newest first, at most `limit` (see
/// [`matching`]).
pub(crate) fn list_matches(db: &Db, f: &Filter, limit: usize) -> Res<Listing> {
    if limit == 0 {
        return Ok(Listing::Done(Vec::new()));
    }
    if let Some(ids) = &f.ids {
        // A list of ids: their rows by id, filtered here.
        let mut out = load_ids(db, ids)?;
        out.retain(|r| !r.deleted && filter_matches(f, &r.ev));
        out.sort_by_key(|r| std::cmp::Reverse(r.ev.cursor()));
        out.dedup_by_key(|r| r.seq);
        out.truncate(limit);
        return Ok(Listing::Done(out));
    }
    let Some((cond, mut vals)) = filter_sql(db, f) else {
        return Ok(Listing::Done(Vec::new()));
    };
    vals.push(Value::BigInt(limit_param(limit)));
    const ORDER: &str = " ORDER BY e.ts DESC, e.id DESC LIMIT ?";
    if limit <= LOAD_CHUNK {
        let mut sql = String::from(concat!(
            "SELECT e.rowid, ",
            head_cols!(),
            " FROM events e WHERE "
        ));
        sql.push_str(&cond);
        sql.push_str(ORDER);
        let found = heads(db, &sql, duckdb::params_from_iter(vals))?;
        return Ok(Listing::Done(complete(db, found)?));
    }
    let mut sql = String::from("SELECT e.rowid, e.id FROM events e WHERE ");
    sql.push_str(&cond);
    sql.push_str(ORDER);
    let mut stmt = prepare(&db.conn, &sql)?;
    let mut rows = stmt.query(duckdb::params_from_iter(vals))?;
    let mut order = Vec::new();
    while let Some(r) = rows.next()? {
        order.push((r.get(0)?, r.get(1)?));
    }
    Ok(Listing::Order(order))
}

/// Whole rows of a chunk of a [`Listing::Order`], in its order. Rows
/// deleted since the listing are left out.
pub(crate) fn load_listed(db: &Db, chunk: &[(i64, u64)]) -> Res<Vec<Rec>> {
    // By `rowid`, within the chunk's `id` range (which DuckDB prunes by
    // row group), then back into the listed order. Not through
    // `load_ids`: its semi-join on `id` made `query '{}'` at 1M events
    // 31.4 / 32.8 s against 26.4 / 27.4 s this way (same output).
    let lo = chunk.iter().map(|&(_, id)| id).min();
    let hi = chunk.iter().map(|&(_, id)| id).max();
    let mut found: HashMap<i64, Head> = heads(
        db,
        concat!(
            "SELECT e.rowid, ",
            head_cols!(),
            " FROM (SELECT unnest(string_split(?, ','))::BIGINT AS r) q \
             JOIN events e ON e.rowid = q.r WHERE e.id BETWEEN ? AND ?"
        ),
        params![number_list(chunk.iter().map(|&(r, _)| r)), lo, hi],
    )?
    .into_iter()
    .collect();
    let listed = chunk
        .iter()
        .map(|&(r, _)| {
            found
                .remove(&r)
                .map(|h| (r, h))
                .ok_or_else(|| corrupt("a listed event has no events row"))
        })
        .collect::<Res<Vec<_>>>()?;
    let mut out = complete(db, listed)?;
    out.retain(|r| !r.deleted);
    Ok(out)
}

pub(crate) fn query(db: &Db, f: &Filter) -> Res<Vec<EventView>> {
    let rs = matching(db, f, f.limit.unwrap_or(usize::MAX))?;
    views(db, rs)
}

pub(crate) fn buckets(db: &Db, f: &Filter, width: BucketWidth) -> Res<Vec<Bucket>> {
    let Some((cond, vals)) = filter_sql(db, f) else {
        return Ok(Vec::new());
    };
    // Grouped in DuckDB, over the columns the filter needs. Buckets floor
    // (also before 1970): start = ts - (ts mod⁺ width).
    let w = Value::BigInt(width.nanos());
    let mut sql = String::from(
        "SELECT e.ts - ((e.ts % ?) + ?) % ? AS start, e.kind, count(*) FROM events e WHERE ",
    );
    sql.push_str(&cond);
    sql.push_str(" GROUP BY ALL ORDER BY start, e.kind");
    let mut stmt = prepare(&db.conn, &sql)?;
    let mut rows = stmt.query(duckdb::params_from_iter(
        [w.clone(), w.clone(), w].into_iter().chain(vals),
    ))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(Bucket {
            start: r.get(0)?,
            kind: EventType::from_code(r.get(1)?).ok_or_else(|| corrupt("unknown event type"))?,
            count: r.get::<_, i64>(2)? as u64,
        });
    }
    Ok(out)
}

pub(crate) fn stats(db: &Db, file: &Path) -> Res<StoreStats> {
    let mut s = StoreStats {
        stored: prepare(&db.conn, "SELECT count(*) FROM events")?
            .query_row([], |r| r.get::<_, i64>(0))? as u64,
        ..StoreStats::default()
    };
    let mut stmt = prepare(
        &db.conn,
        "SELECT kind, count(*) FROM events WHERE NOT deleted GROUP BY kind",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let kind: u8 = r.get(0)?;
        let slot = s
            .live
            .get_mut(kind as usize)
            .ok_or_else(|| corrupt("unknown event type"))?;
        *slot = r.get::<_, i64>(1)? as u64;
    }
    let wal = file.with_extension("duckdb.wal");
    for f in [file, wal.as_path()] {
        s.bytes_on_disk += std::fs::metadata(f).map_or(0, |m| m.len());
    }
    Ok(s)
}

/// The stored events numbered `after + 1 ..= after + n` (fewer at the
/// end), with their arrival numbers. Arrival numbers are dense (rows are
/// never deleted), so a page is a `seq` range: a statement per table that
/// DuckDB prunes by row group. The query this replaced, `seq > ? ORDER BY
/// seq LIMIT ?` joined to `event_content` by `rowid`, sorted every later
/// row and read the content column in every row group for each page, so
/// an export took time quadratic in the store's size.
pub(crate) fn export_page(db: &Db, after: i64, n: usize) -> Res<Vec<(i64, FeedEvent)>> {
    let stored = db.next_seq - 1;
    // Row `r` holds arrival number `r + 1`.
    let start = after.clamp(0, stored);
    let end = start
        .saturating_add(i64::try_from(n).unwrap_or(i64::MAX))
        .min(stored);
    rows_between(&db.conn, start, end)?
        .into_iter()
        .map(|(h, b)| {
            let r = assemble(h, b, &db.dids)?;
            Ok((r.seq, r.ev))
        })
        .collect()
}

/// Rows `start..end` (by `rowid`, which is `seq - 1`: checked at open) of
/// `events` and `event_content`, in order, each pair checked to be the
/// same event. `events` is read by `seq`, which DuckDB prunes by row
/// group; `event_content` has only its `rowid`.
fn rows_between(c: &Connection, start: i64, end: i64) -> Res<Vec<(Head, Body)>> {
    let out_of_step = || corrupt("event_content is out of step with events");
    if end <= start {
        return Ok(Vec::new());
    }
    let mut heads = prepare(
        c,
        concat!(
            "SELECT e.rowid, ",
            head_cols!(),
            " FROM events e WHERE e.seq > ? AND e.seq <= ? ORDER BY e.seq"
        ),
    )?;
    let mut bodies = prepare(
        c,
        concat!(
            "SELECT c.rowid, ",
            body_cols!(),
            " FROM event_content c WHERE c.rowid >= ? AND c.rowid < ? ORDER BY c.rowid"
        ),
    )?;
    let mut h = heads.query([start, end])?;
    let mut b = bodies.query([start, end])?;
    let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
    let mut row = start;
    while let (Some(hr), Some(br)) = (h.next()?, b.next()?) {
        let (hrow, brow): (i64, i64) = (hr.get(0)?, br.get(0)?);
        let (head, body) = (Head::read(hr, 1)?, Body::read(br, 1)?);
        if hrow != row || brow != row || head.id != body.id {
            return Err(out_of_step());
        }
        out.push((head, body));
        row += 1;
    }
    if row != end || h.next()?.is_some() || b.next()?.is_some() {
        return Err(out_of_step());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::seq_ranges;

    /// The ranges cover `1..next_seq` in order, without gaps or overlaps,
    /// none longer than 131,072 rows; an empty store has none.
    #[test]
    fn seq_ranges_cover_every_arrival_number_once() {
        assert_eq!(seq_ranges(1).count(), 0);
        assert_eq!(seq_ranges(2).collect::<Vec<_>>(), [(1, 2)]);
        for next_seq in [131_072, 131_073, 131_074, 1_000_001] {
            let ranges: Vec<(i64, i64)> = seq_ranges(next_seq).collect();
            assert_eq!(ranges.first().map(|r| r.0), Some(1));
            assert_eq!(ranges.last().map(|r| r.1), Some(next_seq));
            assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0));
            assert!(ranges.iter().all(|&(a, b)| a < b && b - a <= 1 << 17));
        }
    }
}
