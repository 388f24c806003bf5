//! The queries. Every value is a bound parameter; statements are static
//! text, prepared once and cached.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Row};

use feed_core::thread::{pick_thread_nodes, ReachedNode};
use feed_core::validate::{
    append_with, apply_edit, delete_applies, filter_matches, now_ns, Admit, TargetRef,
};
use feed_core::{
    query_tag, AppendStatus, Bucket, BucketWidth, ContentHash, Counts, Cursor, Did, Embedding,
    Entry, EventId, EventType, EventView, FeedEvent, Filter, StoreError, StoreStats, Thread,
    ThreadNode, EMBEDDING_DIM,
};

/// Errors inside the SQLite worker.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LiteError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LiteError> for StoreError {
    fn from(e: LiteError) -> StoreError {
        match e {
            LiteError::Store(s) => s,
            LiteError::Sql(rusqlite::Error::SqliteFailure(f, msg))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) =>
            {
                StoreError::Corrupt(msg.unwrap_or_else(|| f.to_string()))
            }
            LiteError::Sql(e) => StoreError::Backend(e.to_string()),
        }
    }
}

type Res<T> = Result<T, LiteError>;

fn corrupt(what: &str) -> LiteError {
    LiteError::Store(StoreError::Corrupt(what.to_string()))
}

/// u64 ids as order-preserving i64 keys.
pub(crate) fn key(id: EventId) -> i64 {
    (id.0 ^ (1 << 63)) as i64
}

fn unkey(k: i64) -> EventId {
    EventId((k as u64) ^ (1 << 63))
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// `(ts, key)` of an exclusive cursor, or `(None, 0)` for none.
fn cursor_params(before: Option<Cursor>) -> (Option<i64>, i64) {
    match before {
        Some(c) => (Some(c.ts), key(c.id)),
        None => (None, 0),
    }
}

macro_rules! select_ev {
    ($tail:literal) => {
        concat!(
            "SELECT ev.seq, ev.id, ev.kind, d.did, ev.ts, ev.hash, ev.content, ev.parent, \
             ev.tags, ev.mentions, em.v, ev.deleted, ev.author \
             FROM events ev JOIN dids d ON d.n = ev.author \
             LEFT JOIN embeddings em ON em.seq = ev.seq ",
            $tail
        )
    };
}

/// A stored event and its bookkeeping.
pub(crate) struct Rec {
    pub seq: i64,
    pub ev: FeedEvent,
    pub deleted: bool,
    pub author_n: i64,
}

fn bytes32(v: Vec<u8>, what: &str) -> Res<[u8; 32]> {
    v.try_into().map_err(|_| corrupt(what))
}

fn rec(row: &Row<'_>) -> Res<Rec> {
    let kind: u8 = row.get(2)?;
    let tags: Option<String> = row.get(8)?;
    let mentions: Option<Vec<u8>> = row.get(9)?;
    let emb: Option<Vec<u8>> = row.get(10)?;
    let embedding = match emb {
        None => None,
        Some(b) if b.len() == EMBEDDING_DIM * 4 => {
            let v = b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Some(Embedding::new(v).map_err(|_| corrupt("stored embedding is invalid"))?)
        }
        Some(_) => return Err(corrupt("stored embedding has the wrong size")),
    };
    let mentions = match mentions {
        None => Vec::new(),
        Some(b) if b.len() % 32 == 0 => b
            .chunks_exact(32)
            .map(|c| {
                let mut d = [0u8; 32];
                d.copy_from_slice(c);
                Did(d)
            })
            .collect(),
        Some(_) => return Err(corrupt("stored mentions have the wrong size")),
    };
    Ok(Rec {
        seq: row.get(0)?,
        ev: FeedEvent {
            id: unkey(row.get(1)?),
            kind: EventType::from_code(kind).ok_or_else(|| corrupt("unknown event type"))?,
            author: Did(bytes32(row.get(3)?, "stored DID has the wrong size")?),
            ts: row.get(4)?,
            content_hash: ContentHash(bytes32(row.get(5)?, "stored hash has the wrong size")?),
            content: row.get(6)?,
            parent: row.get::<_, Option<i64>>(7)?.map(unkey),
            tags: tags
                .map(|t| t.split(' ').map(str::to_owned).collect())
                .unwrap_or_default(),
            mentions,
            embedding,
        },
        deleted: row.get(11)?,
        author_n: row.get(12)?,
    })
}

fn recs(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Res<Vec<Rec>> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(p)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(rec(row)?);
    }
    Ok(out)
}

/// Runs the statements of one read in a single read transaction. Outside
/// one, every statement is its own transaction: it takes and releases the
/// database file's shared lock and a WAL read mark (five `fcntl` calls)
/// and asks the file's size (`fstat`), which was ~18% of the benchmark's
/// query mix (a timeline loads each of its 50 posts by its own statement).
/// One transaction also gives all the statements one snapshot. Like the
/// vector index's search, it ends by rolling back (on drop): a read has
/// nothing to keep.
pub(crate) fn read<T>(c: &Connection, f: impl FnOnce(&Connection) -> Res<T>) -> Res<T> {
    if !c.is_autocommit() {
        return f(c);
    }
    let tx = c.unchecked_transaction()?;
    f(&tx)
}

pub(crate) fn load(c: &Connection, id: EventId) -> Res<Option<Rec>> {
    Ok(recs(c, select_ev!("WHERE ev.id = ?1"), params![key(id)])?.pop())
}

/// A stored event as accepted, deleted or not.
pub(crate) fn stored(c: &Connection, id: EventId) -> Res<Option<FeedEvent>> {
    Ok(load(c, id)?.map(|r| r.ev))
}

fn did_lookup(c: &Connection, did: &Did) -> Res<Option<i64>> {
    Ok(c.prepare_cached(W::DidGet.sql())?
        .query_row(params![&did.0[..]], |r| r.get(0))
        .optional()?)
}

fn tag_lookup(c: &Connection, tag: &str) -> Res<Option<i64>> {
    Ok(c.prepare_cached(W::TagGet.sql())?
        .query_row(params![tag], |r| r.get(0))
        .optional()?)
}

pub(crate) fn append(
    c: &mut Connection,
    batch: Vec<FeedEvent>,
    known: &mut Numbers,
) -> Res<Vec<AppendStatus>> {
    let tx = c.transaction()?;
    let mut w = Tx::new(&tx, known)?;
    let out = append_with(batch, now_ns(), &mut w)?;
    let (dids, tags) = (
        std::mem::take(&mut w.seen_dids),
        std::mem::take(&mut w.seen_tags),
    );
    drop(w);
    tx.commit()?;
    // Only now: a rolled-back batch's new numbers never existed.
    known.dids.learn(dids);
    known.tags.learn(tags);
    Ok(out)
}

/// Most entries each map of [`Numbers`] holds (a DID's about 56 bytes, a
/// tag's 40 plus its text).
const NUMBERS_MAX: usize = 4_096;

/// The numbers of DIDs and tags seen in committed batches, so that ingest
/// finds them without a lookup in `dids`' or `tag_names`' index (the DID
/// lookups took 17% of ingest time). Bounded: each map is emptied when full.
#[derive(Default)]
pub(crate) struct Numbers {
    dids: Bounded<[u8; 32]>,
    tags: Bounded<String>,
}

/// A map of at most [`NUMBERS_MAX`] numbers.
struct Bounded<K> {
    map: HashMap<K, i64>,
}

impl<K> Default for Bounded<K> {
    fn default() -> Self {
        Bounded {
            map: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq> Bounded<K> {
    fn get<Q>(&self, k: &Q) -> Option<i64>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.map.get(k).copied()
    }

    fn learn(&mut self, seen: HashMap<K, i64>) {
        for (k, n) in seen {
            if self.map.len() >= NUMBERS_MAX {
                self.map.clear();
            }
            self.map.insert(k, n);
        }
    }
}

/// The append path's statements.
#[derive(Clone, Copy)]
enum W {
    Exists,
    Target,
    DidGet,
    DidPut,
    TagGet,
    TagPut,
    DeletedFirst,
    Insert,
    Embedding,
    MarkDeleted,
    Unfollow,
    Follow,
    TagIndex,
    MentionIndex,
}

const W_COUNT: usize = W::MentionIndex as usize + 1;

impl W {
    fn sql(self) -> &'static str {
        match self {
            W::Exists => "SELECT EXISTS (SELECT 1 FROM events WHERE id = ?1)",
            W::Target => {
                "SELECT ev.kind, d.did FROM events ev JOIN dids d ON d.n = ev.author WHERE ev.id = ?1"
            }
            W::DidGet => "SELECT n FROM dids WHERE did = ?1",
            W::DidPut => "INSERT INTO dids(did) VALUES (?1)",
            W::TagGet => "SELECT n FROM tag_names WHERE tag = ?1",
            W::TagPut => "INSERT INTO tag_names(tag) VALUES (?1)",
            W::DeletedFirst => {
                "SELECT EXISTS (SELECT 1 FROM events WHERE parent = ?1 AND kind = 6 AND author = ?2)"
            }
            W::Insert => {
                "INSERT INTO events (id, kind, author, ts, parent, hash, content, tags, mentions, deleted) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            }
            W::Embedding => "INSERT INTO embeddings (seq, v) VALUES (?1, ?2)",
            W::MarkDeleted => "UPDATE events SET deleted = 1 WHERE id = ?1",
            W::Unfollow => "DELETE FROM follows WHERE event = ?1",
            W::Follow => {
                "INSERT OR IGNORE INTO follows (follower, followee, event) VALUES (?1, ?2, ?3)"
            }
            W::TagIndex => "INSERT OR IGNORE INTO tag_index (tag, ts, id) VALUES (?1, ?2, ?3)",
            W::MentionIndex => {
                "INSERT OR IGNORE INTO mention_index (did, ts, id) VALUES (?1, ?2, ?3)"
            }
        }
    }
}

/// The batch's transaction as seen by the shared append loop. Each
/// statement is taken from rusqlite's cache once per batch, not once per
/// use: a cache lookup hashes the whole SQL text.
struct Tx<'c> {
    c: &'c Connection,
    stmts: [Option<CachedStatement<'c>>; W_COUNT],
    /// Numbers known from committed batches.
    known: &'c Numbers,
    /// DID and tag numbers this batch looked up or gave out, learnt once it
    /// commits.
    seen_dids: HashMap<[u8; 32], i64>,
    seen_tags: HashMap<String, i64>,
    /// The highest id key stored, this batch's included (`None`: none).
    /// Snowflake ids mostly arrive in order, so most of a batch's ids and
    /// some parents lie above it: not stored, with no index probe.
    high: Option<i64>,
}

impl<'c> Tx<'c> {
    /// Reads the highest stored id (one probe at the end of the `id`
    /// index) inside the batch's transaction: if another connection
    /// commits after this read, the batch's first write fails
    /// (`SQLITE_BUSY_SNAPSHOT`) instead of trusting a stale mark.
    fn new(c: &'c Connection, known: &'c Numbers) -> Res<Self> {
        let high: Option<i64> = c
            .prepare_cached("SELECT max(id) FROM events")?
            .query_row([], |r| r.get(0))?;
        Ok(Tx {
            c,
            stmts: std::array::from_fn(|_| None),
            known,
            seen_dids: HashMap::new(),
            seen_tags: HashMap::new(),
            high,
        })
    }

    /// Whether the id key `k` lies above every stored id.
    fn above_all(&self, k: i64) -> bool {
        self.high.is_none_or(|h| k > h)
    }

    fn st(&mut self, w: W) -> Res<&mut CachedStatement<'c>> {
        let slot = &mut self.stmts[w as usize];
        if slot.is_none() {
            *slot = Some(self.c.prepare_cached(w.sql())?);
        }
        slot.as_mut().ok_or_else(|| corrupt("statement slot empty"))
    }

    /// The number of a DID, given one if it is new.
    fn did_number(&mut self, did: &Did) -> Res<i64> {
        if let Some(n) = self
            .known
            .dids
            .get(&did.0)
            .or_else(|| self.seen_dids.get(&did.0).copied())
        {
            return Ok(n);
        }
        let n = self.number(W::DidGet, W::DidPut, &did.0[..])?;
        self.seen_dids.insert(did.0, n);
        Ok(n)
    }

    /// The number of a tag, given one if it is new.
    fn tag_number(&mut self, tag: &str) -> Res<i64> {
        if let Some(n) = self
            .known
            .tags
            .get(tag)
            .or_else(|| self.seen_tags.get(tag).copied())
        {
            return Ok(n);
        }
        let n = self.number(W::TagGet, W::TagPut, tag)?;
        self.seen_tags.insert(tag.to_owned(), n);
        Ok(n)
    }

    /// The number `get` finds for `value`, or the one `put` gives it.
    fn number(&mut self, get: W, put: W, value: impl rusqlite::ToSql) -> Res<i64> {
        let found = self
            .st(get)?
            .query_row(params![value], |r| r.get(0))
            .optional()?;
        if let Some(n) = found {
            return Ok(n);
        }
        self.st(put)?.execute(params![value])?;
        Ok(self.c.last_insert_rowid())
    }
}

impl Admit for Tx<'_> {
    type Error = LiteError;
    fn existing(&mut self, id: EventId) -> Res<Option<FeedEvent>> {
        Ok(load(self.c, id)?.map(|r| r.ev))
    }
    fn exists(&mut self, id: EventId) -> Res<bool> {
        if self.above_all(key(id)) {
            return Ok(false);
        }
        Ok(self
            .st(W::Exists)?
            .query_row(params![key(id)], |r| r.get(0))?)
    }
    fn target(&mut self, id: EventId) -> Res<Option<TargetRef>> {
        if self.above_all(key(id)) {
            return Ok(None);
        }
        let row = self
            .st(W::Target)?
            .query_row(params![key(id)], |r| {
                Ok((r.get::<_, u8>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        let Some((kind, did)) = row else {
            return Ok(None);
        };
        Ok(Some(TargetRef {
            id,
            kind: EventType::from_code(kind).ok_or_else(|| corrupt("unknown event type"))?,
            author: Did(bytes32(did, "stored DID has the wrong size")?),
        }))
    }
    fn insert(&mut self, ev: FeedEvent, target: Option<TargetRef>) -> Res<()> {
        insert(self, &ev, target)
    }
}

fn insert(w: &mut Tx<'_>, ev: &FeedEvent, target: Option<TargetRef>) -> Res<()> {
    let author = w.did_number(&ev.author)?;
    let id = key(ev.id);
    // A delete that arrived first removes the event on arrival.
    let deleted = ev.kind != EventType::Delete
        && w.st(W::DeletedFirst)?
            .query_row(params![id, author], |r| r.get::<_, bool>(0))?;
    let tags = (!ev.tags.is_empty()).then(|| ev.tags.join(" "));
    let mentions: Option<Vec<u8>> =
        (!ev.mentions.is_empty()).then(|| ev.mentions.iter().flat_map(|m| m.0).collect());
    w.st(W::Insert)?.execute(params![
        id,
        ev.kind.code(),
        author,
        ev.ts,
        ev.parent.map(key),
        &ev.content_hash.0[..],
        ev.content,
        tags,
        mentions,
        deleted
    ])?;
    let seq = w.c.last_insert_rowid();
    w.high = w.high.max(Some(id));
    if let Some(e) = &ev.embedding {
        w.st(W::Embedding)?
            .execute(params![seq, crate::vectors::blob_of(e.as_slice())])?;
    }
    match ev.kind {
        EventType::Delete => {
            if let Some(t) = target.filter(|t| delete_applies(ev, *t)) {
                w.st(W::MarkDeleted)?.execute(params![key(t.id)])?;
                if t.kind == EventType::Follow {
                    w.st(W::Unfollow)?.execute(params![key(t.id)])?;
                }
            }
        }
        EventType::Follow if !deleted => {
            if let Some(m) = ev.mentions.first() {
                let followee = w.did_number(m)?;
                w.st(W::Follow)?.execute(params![author, followee, id])?;
            }
        }
        _ => {}
    }
    if ev.kind.carries_topics() {
        for t in &ev.tags {
            let n = w.tag_number(t)?;
            w.st(W::TagIndex)?.execute(params![n, ev.ts, id])?;
        }
        for m in &ev.mentions {
            let n = w.did_number(m)?;
            w.st(W::MentionIndex)?.execute(params![n, ev.ts, id])?;
        }
    }
    Ok(())
}

/// Ids of the live edits in effect on a post, oldest first (only the
/// newest with `newest_only`). `ev_parent` is named because the planner
/// otherwise walks all of a prolific author's edits through `ev_author`.
/// The few rows are ordered here: an `ORDER BY` would make SQLite build a
/// temporary b-tree on every call, and this runs for every post shown.
fn edit_ids(c: &Connection, post: &Rec, newest_only: bool) -> Res<Vec<i64>> {
    let mut stmt = c.prepare_cached(
        "SELECT ts, id FROM events INDEXED BY ev_parent \
         WHERE parent = ?1 AND kind = 5 AND author = ?2 AND deleted = 0",
    )?;
    let rows = stmt.query_map(params![key(post.ev.id), post.author_n], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut edits: Vec<(i64, i64)> = rows.collect::<Result<_, _>>()?;
    if newest_only {
        // Ids are stored as `key(id)`, which keeps u64 order.
        return Ok(edits
            .into_iter()
            .max()
            .map(|(_, id)| id)
            .into_iter()
            .collect());
    }
    edits.sort_unstable();
    Ok(edits.into_iter().map(|(_, id)| id).collect())
}

/// Live edits in effect on a post, oldest first.
fn edits(c: &Connection, post: &Rec) -> Res<Vec<Rec>> {
    let mut out = Vec::new();
    for k in edit_ids(c, post, false)? {
        out.extend(load(c, unkey(k))?);
    }
    Ok(out)
}

fn view(c: &Connection, r: Rec) -> Res<EventView> {
    if r.ev.kind != EventType::Post {
        return Ok(apply_edit(&r.ev, None));
    }
    let newest = match edit_ids(c, &r, true)?.first() {
        Some(&k) => load(c, unkey(k))?,
        None => None,
    };
    Ok(apply_edit(&r.ev, newest.as_ref().map(|e| &e.ev)))
}

fn views(c: &Connection, rs: Vec<Rec>) -> Res<Vec<EventView>> {
    rs.into_iter().map(|r| view(c, r)).collect()
}

pub(crate) fn get(c: &Connection, id: EventId) -> Res<Option<Entry>> {
    match load(c, id)? {
        None => Ok(None),
        Some(r) if r.deleted => Ok(Some(Entry::Deleted(id))),
        Some(r) => Ok(Some(Entry::Live(view(c, r)?))),
    }
}

pub(crate) fn versions(c: &Connection, id: EventId) -> Res<Vec<FeedEvent>> {
    let Some(r) = load(c, id)?.filter(|r| !r.deleted) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    if r.ev.kind == EventType::Post {
        out.extend(edits(c, &r)?.into_iter().map(|e| e.ev));
    }
    out.insert(0, r.ev);
    Ok(out)
}

/// How `timeline` finds its posts; see the crate README for measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelinePlan {
    /// Up to `limit` newest live posts from each followed author's index
    /// range, merged.
    Merge,
    /// Walk all live posts newest first, keeping the followed authors'.
    Scan,
    /// Merge for small follow sets, scan (with a row budget, then merge)
    /// for large ones.
    Auto,
}

/// Follow sets at most this large are merged; larger ones are scanned.
const MERGE_MAX_AUTHORS: usize = 48;
/// Rows a scan may read before it gives up and merges instead.
const SCAN_BUDGET: usize = 20_000;

pub(crate) fn timeline(
    c: &Connection,
    did: &Did,
    limit: usize,
    before: Option<Cursor>,
    plan: TimelinePlan,
) -> Res<Vec<EventView>> {
    let limit = feed_core::clamp_timeline_limit(limit);
    let Some(me) = did_lookup(c, did)? else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut authors: Vec<i64> = {
        let mut stmt =
            c.prepare_cached("SELECT DISTINCT followee FROM follows WHERE follower = ?1")?;
        let rows = stmt.query_map(params![me], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    authors.push(me);
    let scan = match plan {
        TimelinePlan::Merge => false,
        TimelinePlan::Scan => true,
        TimelinePlan::Auto => authors.len() > MERGE_MAX_AUTHORS,
    };
    let budget = if plan == TimelinePlan::Scan {
        usize::MAX
    } else {
        SCAN_BUDGET
    };
    let keys = match scan
        .then(|| scan_posts(c, &authors, limit, before, budget))
        .transpose()?
    {
        Some(Some(keys)) => keys,
        _ => merge_posts(c, &authors, limit, before)?,
    };
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let r = load(c, unkey(k))?.ok_or_else(|| corrupt("indexed post vanished"))?;
        out.push(view(c, r)?);
    }
    Ok(out)
}

/// The newest `limit` live posts of the given authors, merged: keys,
/// newest first. The newest `limit` found so far are kept with the oldest
/// on top; once there are `limit`, each further author's index range is
/// read only down to that oldest one (the floor), so such an author costs
/// one index seek plus the rows that enter the page, not up to `limit`
/// rows of its own.
fn merge_posts(
    c: &Connection,
    authors: &[i64],
    limit: usize,
    before: Option<Cursor>,
) -> Res<Vec<i64>> {
    use std::cmp::Reverse;
    let mut authors = authors.to_vec();
    // An author given twice would put its posts in the page twice.
    authors.sort_unstable();
    authors.dedup();
    let mut page: std::collections::BinaryHeap<Reverse<(i64, i64)>> =
        std::collections::BinaryHeap::with_capacity(limit + 1);
    let lim = limit_param(limit);
    let before = before.map(|b| (b.ts, key(b.id)));
    // Each author's range down to the floor once there is one.
    let (open_sql, floored_sql) = match before {
        None => (
            "SELECT ts, id FROM events INDEXED BY ev_author \
             WHERE author = ?1 AND kind = 0 AND deleted = 0 \
             ORDER BY ts DESC, id DESC LIMIT ?2",
            "SELECT ts, id FROM events INDEXED BY ev_author \
             WHERE author = ?1 AND kind = 0 AND deleted = 0 \
             AND (ts, id) > (?3, ?4) ORDER BY ts DESC, id DESC LIMIT ?2",
        ),
        Some(_) => (
            "SELECT ts, id FROM events INDEXED BY ev_author \
             WHERE author = ?1 AND kind = 0 AND deleted = 0 \
             AND (ts, id) < (?3, ?4) ORDER BY ts DESC, id DESC LIMIT ?2",
            "SELECT ts, id FROM events INDEXED BY ev_author \
             WHERE author = ?1 AND kind = 0 AND deleted = 0 \
             AND (ts, id) < (?3, ?4) AND (ts, id) > (?5, ?6) \
             ORDER BY ts DESC, id DESC LIMIT ?2",
        ),
    };
    let mut open = c.prepare_cached(open_sql)?;
    let mut floored = c.prepare_cached(floored_sql)?;
    for a in authors {
        let floor = if page.len() >= limit {
            page.peek().map(|r| r.0)
        } else {
            None
        };
        let mut rows = match (before, floor) {
            (None, None) => open.query(params![a, lim])?,
            (Some((t, k)), None) => open.query(params![a, lim, t, k])?,
            (None, Some((ft, fk))) => floored.query(params![a, lim, ft, fk])?,
            (Some((t, k)), Some((ft, fk))) => floored.query(params![a, lim, t, k, ft, fk])?,
        };
        while let Some(r) = rows.next()? {
            page.push(Reverse((r.get(0)?, r.get(1)?)));
            if page.len() > limit {
                page.pop();
            }
        }
    }
    let mut all: Vec<(i64, i64)> = page.into_iter().map(|r| r.0).collect();
    all.sort_unstable_by(|x, y| y.cmp(x));
    Ok(all.into_iter().map(|(_, id)| id).collect())
}

/// Walks live posts newest first keeping the followed authors'; `None` if
/// `budget` rows were read before `limit` were found.
fn scan_posts(
    c: &Connection,
    authors: &[i64],
    limit: usize,
    before: Option<Cursor>,
    budget: usize,
) -> Res<Option<Vec<i64>>> {
    let wanted: std::collections::HashSet<i64> = authors.iter().copied().collect();
    let mut stmt = match before {
        None => c.prepare_cached(
            "SELECT id, author FROM events INDEXED BY ev_time WHERE kind = 0 AND deleted = 0 \
             ORDER BY ts DESC, id DESC",
        )?,
        Some(_) => c.prepare_cached(
            "SELECT id, author FROM events INDEXED BY ev_time WHERE kind = 0 AND deleted = 0 \
             AND (ts, id) < (?1, ?2) ORDER BY ts DESC, id DESC",
        )?,
    };
    let mut rows = match before {
        None => stmt.query([])?,
        Some(b) => stmt.query(params![b.ts, key(b.id)])?,
    };
    let mut out = Vec::with_capacity(limit);
    let mut read = 0usize;
    while let Some(r) = rows.next()? {
        read += 1;
        if wanted.contains(&r.get::<_, i64>(1)?) {
            out.push(r.get(0)?);
            if out.len() == limit {
                return Ok(Some(out));
            }
        }
        if read >= budget {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

pub(crate) fn author_feed(
    c: &Connection,
    did: &Did,
    since: Option<i64>,
    until: Option<i64>,
    limit: usize,
) -> Res<Vec<EventView>> {
    let Some(a) = did_lookup(c, did)? else {
        return Ok(Vec::new());
    };
    let rs = recs(
        c,
        select_ev!(
            "WHERE ev.author = ?1 AND ev.kind = 0 AND ev.deleted = 0 \
             AND ev.ts >= ?2 AND ev.ts <= ?3 ORDER BY ev.ts DESC, ev.id DESC LIMIT ?4"
        ),
        params![
            a,
            since.unwrap_or(i64::MIN),
            until.unwrap_or(i64::MAX),
            limit_param(limit)
        ],
    )?;
    views(c, rs)
}

/// Every post reachable below `root` (which must be a stored post). Only
/// a cycle through the root can be reached (each post has one parent), so
/// not re-entering the root is the whole cycle guard.
fn reach(c: &Connection, root: EventId) -> Res<Vec<ReachedNode>> {
    let mut stmt = c.prepare_cached(
        "WITH RECURSIVE t(id, depth) AS ( \
             SELECT ?1, 0 \
             UNION ALL \
             SELECT e.id, t.depth + 1 FROM t JOIN events e ON e.parent = t.id AND e.kind = 0 \
             WHERE e.id <> ?1 \
         ) \
         SELECT t.id, t.depth, e.parent, e.ts, e.deleted FROM t JOIN events e ON e.id = t.id",
    )?;
    let mut rows = stmt.query(params![key(root)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(ReachedNode {
            id: unkey(r.get(0)?),
            depth: r.get(1)?,
            parent: r.get::<_, Option<i64>>(2)?.map(unkey),
            ts: r.get(3)?,
            live: !r.get::<_, bool>(4)?,
        });
    }
    Ok(out)
}

pub(crate) fn thread(c: &Connection, id: EventId) -> Res<Thread> {
    if load(c, id)?.is_none_or(|r| r.ev.kind != EventType::Post) {
        return Ok(Thread::default());
    }
    let nodes = reach(c, id)?;
    let (picked, truncated) = pick_thread_nodes(&nodes);
    let mut out = Vec::with_capacity(picked.len());
    for i in picked {
        let n = nodes[i];
        let entry = if n.live {
            let r = load(c, n.id)?.ok_or_else(|| corrupt("thread node vanished"))?;
            Entry::Live(view(c, r)?)
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

pub(crate) fn counts(c: &Connection, id: EventId) -> Res<Option<Counts>> {
    let Some(post) = load(c, id)?.filter(|r| !r.deleted && r.ev.kind == EventType::Post) else {
        return Ok(None);
    };
    let k = key(id);
    let mut out = Counts {
        replies: c
            .prepare_cached(
                "SELECT count(*) FROM events WHERE parent = ?1 AND kind = 0 AND deleted = 0",
            )?
            .query_row(params![k], |r| r.get(0))?,
        thread_size: reach(c, id)?
            .iter()
            .filter(|n| n.depth > 0 && n.live)
            .count() as u64,
        edits: edits(c, &post)?.len() as u64,
        ..Counts::default()
    };
    let mut stmt = c.prepare_cached(
        "SELECT CASE WHEN tags IS NULL THEN 'like' \
                ELSE substr(tags, 1, instr(tags || ' ', ' ') - 1) END AS k, \
                count(DISTINCT author) \
         FROM events WHERE parent = ?1 AND kind = 1 AND deleted = 0 GROUP BY k",
    )?;
    let mut rows = stmt.query(params![k])?;
    while let Some(r) = rows.next()? {
        let kind: String = r.get(0)?;
        let n: u64 = r.get(1)?;
        match kind.as_str() {
            "like" => out.likes = n,
            "boost" => out.boosts = n,
            "bookmark" => out.bookmarks = n,
            _ => return Err(corrupt("stored reaction of unknown kind")),
        }
    }
    Ok(Some(out))
}

/// Which topic index a listing reads.
pub(crate) enum Topic {
    /// `tag_index`, keyed by tag number.
    Tag(String),
    /// `mention_index`, keyed by DID number.
    Mention(Did),
}

/// `tag` and `mentions`: live events in a topic index, newest first.
pub(crate) fn topic(
    c: &Connection,
    topic: &Topic,
    limit: usize,
    before: Option<Cursor>,
) -> Res<Vec<EventView>> {
    let (n, sql) = match topic {
        Topic::Tag(t) => (
            tag_lookup(c, t)?,
            select_ev!(
                "JOIN tag_index ti ON ti.id = ev.id WHERE ti.tag = ?1 AND ev.deleted = 0 \
                 AND (?2 IS NULL OR (ti.ts, ti.id) < (?2, ?3)) \
                 ORDER BY ti.ts DESC, ti.id DESC LIMIT ?4"
            ),
        ),
        Topic::Mention(d) => (
            did_lookup(c, d)?,
            select_ev!(
                "JOIN mention_index mi ON mi.id = ev.id WHERE mi.did = ?1 AND ev.deleted = 0 \
                 AND (?2 IS NULL OR (mi.ts, mi.id) < (?2, ?3)) \
                 ORDER BY mi.ts DESC, mi.id DESC LIMIT ?4"
            ),
        ),
    };
    let Some(n) = n else {
        return Ok(Vec::new());
    };
    let (ts, id) = cursor_params(before);
    let rs = recs(c, sql, params![n, ts, id, limit_param(limit)])?;
    views(c, rs)
}

pub(crate) fn follows(c: &Connection, did: &Did, following: bool) -> Res<Vec<Did>> {
    let Some(n) = did_lookup(c, did)? else {
        return Ok(Vec::new());
    };
    let sql = if following {
        "SELECT DISTINCT d.did FROM follows f JOIN dids d ON d.n = f.followee \
         WHERE f.follower = ?1 ORDER BY d.did"
    } else {
        "SELECT DISTINCT d.did FROM follows f JOIN dids d ON d.n = f.follower \
         WHERE f.followee = ?1 ORDER BY d.did"
    };
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(params![n])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(Did(bytes32(r.get(0)?, "stored DID has the wrong size")?));
    }
    Ok(out)
}

/// Hands `visit` the rows of `stmt` that match `f`, at most `limit`.
fn take_matching(
    stmt: &mut rusqlite::CachedStatement<'_>,
    p: impl rusqlite::Params,
    f: &Filter,
    limit: usize,
    visit: &mut dyn FnMut(Rec),
) -> Res<()> {
    let mut rows = stmt.query(p)?;
    let mut taken = 0;
    while taken < limit {
        let Some(row) = rows.next()? else { break };
        let r = rec(row)?;
        if filter_matches(f, &r.ev) {
            visit(r);
            taken += 1;
        }
    }
    Ok(())
}

/// Hands `visit` candidates for `f` from one index, chosen by the first
/// field the filter has among `ids`, `authors` (`ev_author`), `parents`
/// (`ev_parent`), `tags` (`tag_index`) and `mentions` (`mention_index`):
/// every match is among them. With `ids` or `parents` every row is a
/// candidate; otherwise the newest `per_key` matches of each author and
/// type, tag or DID. A candidate may come twice or be deleted: the caller
/// checks it against the whole filter. False when the filter has none of
/// those fields (then nothing was visited).
fn each_candidate(
    c: &Connection,
    f: &Filter,
    per_key: usize,
    visit: &mut dyn FnMut(Rec),
) -> Res<bool> {
    let (since, until) = (f.since.unwrap_or(i64::MIN), f.until.unwrap_or(i64::MAX));
    if let Some(ids) = &f.ids {
        for id in ids {
            if let Some(r) = load(c, *id)? {
                visit(r);
            }
        }
    } else if let Some(authors) = &f.authors {
        let types: &[EventType] = f.types.as_deref().unwrap_or(&EventType::ALL);
        let mut stmt = c.prepare_cached(select_ev!(
            "WHERE ev.author = ?1 AND ev.kind = ?2 AND ev.deleted = 0 \
             AND ev.ts >= ?3 AND ev.ts <= ?4 ORDER BY ev.ts DESC, ev.id DESC"
        ))?;
        for a in authors {
            let Some(n) = did_lookup(c, a)? else { continue };
            for t in types {
                take_matching(
                    &mut stmt,
                    params![n, t.code(), since, until],
                    f,
                    per_key,
                    visit,
                )?;
            }
        }
    } else if let Some(parents) = &f.parents {
        let mut stmt = c.prepare_cached(select_ev!("WHERE ev.parent = ?1 AND ev.deleted = 0"))?;
        for p in parents {
            let mut rows = stmt.query(params![key(*p)])?;
            while let Some(row) = rows.next()? {
                visit(rec(row)?);
            }
        }
    } else if f.tags.is_some() || f.mentions.is_some() {
        // Every live post, mention and hashtag event by each of its tags,
        // or mentioned DIDs, newest first.
        let (sql, numbers) = match (&f.tags, &f.mentions) {
            (Some(tags), _) => (
                select_ev!(
                    "JOIN tag_index ti ON ti.id = ev.id WHERE ti.tag = ?1 AND ev.deleted = 0 \
                     AND ti.ts >= ?2 AND ti.ts <= ?3 ORDER BY ti.ts DESC, ti.id DESC"
                ),
                tags.iter()
                    .map(|t| tag_lookup(c, &query_tag(t)))
                    .collect::<Res<Vec<_>>>()?,
            ),
            (None, dids) => (
                select_ev!(
                    "JOIN mention_index mi ON mi.id = ev.id WHERE mi.did = ?1 AND ev.deleted = 0 \
                     AND mi.ts >= ?2 AND mi.ts <= ?3 ORDER BY mi.ts DESC, mi.id DESC"
                ),
                dids.iter()
                    .flatten()
                    .map(|d| did_lookup(c, d))
                    .collect::<Res<Vec<_>>>()?,
            ),
        };
        let mut stmt = c.prepare_cached(sql)?;
        for n in numbers.into_iter().flatten() {
            take_matching(&mut stmt, params![n, since, until], f, per_key, visit)?;
        }
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// Live events matching `f`, newest first, at most `limit`: the
/// candidates of [`each_candidate`] checked, ordered and cut, or, for a
/// filter of types and time alone, a scan of `ev_time` newest first.
fn matching(c: &Connection, f: &Filter, limit: usize) -> Res<Vec<Rec>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    if !each_candidate(c, f, limit, &mut |r| out.push(r))? {
        for_each_live(c, f, |r| {
            out.push(r);
            Ok(out.len() < limit)
        })?;
        return Ok(out);
    }
    out.retain(|r| !r.deleted && filter_matches(f, &r.ev));
    out.sort_by_key(|r| std::cmp::Reverse(r.ev.cursor()));
    out.dedup_by_key(|r| r.seq);
    out.truncate(limit);
    Ok(out)
}

/// Streams live events matching `f` newest first (in `since..=until`) to
/// `visit` until it returns false; nothing is collected. The types are
/// checked in `ev_time` (a bit mask of type codes), before a row is read.
fn for_each_live(c: &Connection, f: &Filter, mut visit: impl FnMut(Rec) -> Res<bool>) -> Res<()> {
    let mut stmt = c.prepare_cached(select_ev!(
        "WHERE ev.deleted = 0 AND ev.ts >= ?1 AND ev.ts <= ?2 AND ((1 << ev.kind) & ?3) <> 0 \
         ORDER BY ev.ts DESC, ev.id DESC"
    ))?;
    let mut rows = stmt.query(params![
        f.since.unwrap_or(i64::MIN),
        f.until.unwrap_or(i64::MAX),
        f.type_mask()
    ])?;
    while let Some(row) = rows.next()? {
        let r = rec(row)?;
        if filter_matches(f, &r.ev) && !visit(r)? {
            break;
        }
    }
    Ok(())
}

pub(crate) fn query(c: &Connection, f: &Filter) -> Res<Vec<EventView>> {
    let rs = matching(c, f, f.limit.unwrap_or(usize::MAX))?;
    views(c, rs)
}

pub(crate) fn buckets(c: &Connection, f: &Filter, width: BucketWidth) -> Res<Vec<Bucket>> {
    let mut counts: BTreeMap<(i64, EventType), u64> = BTreeMap::new();
    // Candidates from an index where one applies (each counted once: an
    // event can carry two of the filter's tags).
    let mut seen = HashSet::new();
    let indexed = each_candidate(c, f, usize::MAX, &mut |r| {
        if !r.deleted && filter_matches(f, &r.ev) && seen.insert(r.seq) {
            *counts
                .entry((width.start_of(r.ev.ts), r.ev.kind))
                .or_default() += 1;
        }
    })?;
    if !indexed {
        // Activity charts: only time and type matter, read just those.
        let mut stmt = c.prepare_cached(
            "SELECT ts, kind FROM events WHERE deleted = 0 AND ts >= ?1 AND ts <= ?2",
        )?;
        let mut rows = stmt.query(params![
            f.since.unwrap_or(i64::MIN),
            f.until.unwrap_or(i64::MAX)
        ])?;
        // The rows come from `ev_time` in `ts` order, so one bucket's rows
        // are counted in a small array and go into the map together when
        // the bucket changes (rows in any order would still count right).
        let mut run: Option<(i64, [u64; 7])> = None;
        let mut flush = |run: Option<(i64, [u64; 7])>| {
            if let Some((start, n)) = run {
                for (kind, &count) in EventType::ALL.iter().zip(&n) {
                    if count > 0 {
                        *counts.entry((start, *kind)).or_default() += count;
                    }
                }
            }
        };
        while let Some(r) = rows.next()? {
            let kind =
                EventType::from_code(r.get(1)?).ok_or_else(|| corrupt("unknown event type"))?;
            if f.types.as_ref().is_some_and(|t| !t.contains(&kind)) {
                continue;
            }
            let start = width.start_of(r.get(0)?);
            match &mut run {
                Some((s, n)) if *s == start => n[kind.code() as usize] += 1,
                _ => {
                    flush(run.take());
                    let mut n = [0; 7];
                    n[kind.code() as usize] = 1;
                    run = Some((start, n));
                }
            }
        }
        flush(run);
    }
    Ok(counts
        .into_iter()
        .map(|((start, kind), count)| Bucket { start, kind, count })
        .collect())
}

/// SQLite's `PRAGMA integrity_check`: each problem it reports (none when
/// it answers `ok`).
pub(crate) fn integrity(c: &Connection) -> Res<Vec<String>> {
    let mut stmt = c.prepare("PRAGMA integrity_check")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let found: Vec<String> = rows.collect::<Result<_, _>>()?;
    Ok(found
        .into_iter()
        .filter(|l| l != "ok")
        .map(|l| format!("SQLite integrity check: {l}"))
        .collect())
}

pub(crate) fn stats(c: &Connection, dir: &Path) -> Res<StoreStats> {
    let mut s = StoreStats {
        stored: c
            .prepare_cached("SELECT count(*) FROM events")?
            .query_row([], |r| r.get(0))?,
        ..StoreStats::default()
    };
    let mut stmt =
        c.prepare_cached("SELECT kind, count(*) FROM events WHERE deleted = 0 GROUP BY kind")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let kind: usize = r.get(0)?;
        if kind >= s.live.len() {
            return Err(corrupt("unknown event type"));
        }
        s.live[kind] = r.get(1)?;
    }
    for f in [crate::DB_FILE, "events.sqlite-wal"] {
        s.bytes_on_disk += std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
    }
    Ok(s)
}

pub(crate) fn export_page(c: &Connection, after: i64, n: usize) -> Res<Vec<(i64, FeedEvent)>> {
    Ok(recs(
        c,
        select_ev!("WHERE ev.seq > ?1 ORDER BY ev.seq LIMIT ?2"),
        params![after, limit_param(n)],
    )?
    .into_iter()
    .map(|r| (r.seq, r.ev))
    .collect())
}

/// The highest arrival number (0 for an empty store).
pub(crate) fn log_head(c: &Connection) -> Res<u64> {
    let seq: i64 = c
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
        .query_row([], |r| r.get(0))?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().expect("in-memory database");
        c.execute_batch("CREATE TABLE t (x INTEGER)")
            .expect("table");
        c
    }

    #[test]
    fn read_ends_its_transaction_on_success_and_on_error() {
        let c = conn();
        let n: i64 = read(&c, |c| {
            assert!(
                !c.is_autocommit(),
                "the statements run inside one transaction"
            );
            Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
        })
        .expect("read");
        assert_eq!(n, 0);
        assert!(c.is_autocommit());
        let err = read(&c, |c| -> Res<()> {
            c.query_row("SELECT nothing FROM t", [], |_| Ok(()))?;
            Ok(())
        });
        assert!(err.is_err());
        assert!(
            c.is_autocommit(),
            "a failed read leaves no transaction open"
        );
        // A write after reads starts its own transaction.
        let mut c = c;
        let tx = c.transaction().expect("a new transaction");
        tx.execute("INSERT INTO t VALUES (1)", []).expect("insert");
        tx.commit().expect("commit");
    }

    #[test]
    fn read_inside_a_transaction_leaves_it_to_its_owner() {
        let c = conn();
        c.execute_batch("BEGIN; INSERT INTO t VALUES (7);")
            .expect("begin");
        let n: i64 = read(&c, |c| {
            Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
        })
        .expect("read");
        assert_eq!(n, 1);
        assert!(!c.is_autocommit(), "the outer transaction is still open");
        c.execute_batch("ROLLBACK").expect("rollback");
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 0, "read did not commit the outer transaction");
    }
}
