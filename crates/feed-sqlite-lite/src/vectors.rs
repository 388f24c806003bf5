//! [`UsearchVectorIndex`]: the lite profile's [`VectorIndex`].
//!
//! Layout in the index directory:
//! - `vectors.sqlite` — the truth: one row per vector with its filter fields
//!   and the exact f32 vector (for exact scoring and rebuilds), plus a
//!   write number `seq`;
//! - the *base*, immutable, over 1-bit codes (sign of each component,
//!   packed by us, Hamming distance), in one of two forms:
//!   `vectors-<gen>.bits`, a flat file of (key, code) records scanned in
//!   full with `pread` (bases of at most `flat_max` vectors: nothing is
//!   mapped, so the process stays small), or `vectors-<gen>.usearch`, a
//!   usearch HNSW served from a memory-mapped view (usearch refuses writes
//!   to a view, and we never try);
//! - in memory, the *delta*: the rows written since the base was built
//!   (`seq > base_seq`), as flat records beside a flat base (or none) and
//!   as a small mutable usearch index beside a graph.
//!
//! Search: when at most `exact_max` rows pass the filter, they are scored
//! exactly straight from SQLite (exact mode). Otherwise the base and the
//! delta each propose candidates (a scan of every code, or a graph search;
//! only rows passing the filter when one is set, listed from SQLite, or,
//! for a filter passing a quarter of the rows or more, four times as many
//! candidates from all rows, the filter checked on each row rescored), the
//! nearest codes of both are kept, and each is rescored exactly from its
//! stored vector;
//! removed or replaced rows are dropped or rescored there, so the stale
//! codes a base may hold never leak. When the delta (plus the base's stale
//! rows) outgrows `max(merge_min, base / 8)`, a background thread builds the
//! next base from SQLite, saves it, fsyncs it, renames it into place and
//! only then records it in `vectors.sqlite`; a crash at any point leaves the
//! previous base in force.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use usearch::{b1x8, Index, IndexOptions, MetricKind, ScalarKind};

use feed_core::memvec::rank;

use crate::codes::{
    words, write_base, Allowed, Asymmetric, FlatBase, FlatDelta, FlatError, Nearest, CODE_BYTES,
};
use feed_core::{
    dot, Did, Embedding, EventId, EventType, Hit, IndexError, SearchMode, VectorFilter,
    VectorIndex, VectorRecord, EMBEDDING_DIM,
};

use crate::schema::connect;
use crate::SqliteConfig;

/// The SQLite file inside an index directory.
pub const VECTOR_DB: &str = "vectors.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vec (
    id     INTEGER PRIMARY KEY,  -- event id ^ 2^63 (signed order = unsigned order)
    seq    INTEGER NOT NULL,     -- write number: rows with seq > base_seq are in the delta
    kind   INTEGER NOT NULL,
    author BLOB NOT NULL,
    ts     INTEGER NOT NULL,
    v      BLOB NOT NULL         -- 384 little-endian f32, unit length
);
CREATE INDEX IF NOT EXISTS vec_seq ON vec(seq);
CREATE INDEX IF NOT EXISTS vec_author ON vec(author, ts);
CREATE INDEX IF NOT EXISTS vec_ts ON vec(ts);
CREATE INDEX IF NOT EXISTS vec_kind ON vec(kind, ts);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
";

/// Tuning of the lite vector index.
#[derive(Clone, Debug)]
pub struct UsearchConfig {
    /// Pragmas of `vectors.sqlite` (sync mode, page cache, mmap, page
    /// size: 4 KiB by default, which holds two 1.6 kB rows; 8 KiB holds
    /// five, see the crate README).
    pub sqlite: SqliteConfig,
    /// Filters matching at most this many rows are answered exactly from
    /// SQLite (default 2,048). 0 sends every search through the graph.
    pub exact_max: usize,
    /// HNSW connectivity (default 16).
    pub connectivity: usize,
    /// Candidate list width while building (default 128).
    pub expansion_add: usize,
    /// Candidate list width while searching (default 256).
    pub expansion_search: usize,
    /// Bases of at most this many vectors are flat files scanned in full
    /// (default 262,144): no graph to build or map, memory bounded by one
    /// 56 KiB read buffer. Larger bases are usearch graphs. 0 makes every
    /// base a graph.
    pub flat_max: usize,
    /// Graph bases: candidates rescored exactly per search, at least
    /// (default 160; `4 × k` when that is more): the nearest codes of base
    /// and delta together.
    pub candidates: usize,
    /// Flat bases: the nearest codes by Hamming distance kept per search
    /// (default 320; `8 × k` when that is more), re-ranked by the query's
    /// values against their bits.
    pub pool: usize,
    /// Flat bases: of the pool, how many of the best are rescored exactly
    /// (default 96; `4 × k` when that is more).
    pub rescored: usize,
    /// The delta is merged into a new base once it holds this many rows,
    /// or an eighth of the base if that is more (default 1,024).
    pub merge_min: usize,
    /// Merge on a background thread (default); `false` merges inside the
    /// write that crosses the threshold.
    pub background_merge: bool,
}

impl Default for UsearchConfig {
    fn default() -> Self {
        UsearchConfig {
            sqlite: SqliteConfig {
                cache_kib: 256,
                ..SqliteConfig::default()
            },
            exact_max: 2_048,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 256,
            flat_max: 262_144,
            candidates: 160,
            pool: 320,
            rescored: 96,
            merge_min: 1_024,
            background_merge: true,
        }
    }
}

/// A [`VectorIndex`] on usearch (binary codes, viewed base + mutable delta)
/// with exact rescoring from SQLite. See the module docs for the layout.
pub struct UsearchVectorIndex {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    cfg: UsearchConfig,
    conn: Mutex<Connection>,
    state: RwLock<State>,
    len: AtomicUsize,
    merge: Mutex<Option<JoinHandle<Result<(), IndexError>>>>,
}

/// The base: a flat code file or a viewed usearch graph.
enum Base {
    Flat(FlatBase),
    Graph(Index),
}

/// The rows written since the base: flat records, or a usearch index
/// beside a graph base.
enum Delta {
    Flat(FlatDelta),
    Graph(Index),
}

impl Delta {
    /// An empty delta of the kind that goes with a base of that kind.
    fn new(cfg: &UsearchConfig, graph_base: bool) -> Result<Delta, IndexError> {
        Ok(if graph_base {
            Delta::Graph(new_index(cfg)?)
        } else {
            Delta::Flat(FlatDelta::default())
        })
    }

    /// Rows held (a flat delta counts a key written twice twice).
    fn len(&self) -> usize {
        match self {
            Delta::Flat(d) => d.len(),
            Delta::Graph(ix) => ix.size(),
        }
    }

    /// Adds (or replaces) the code of `id`.
    fn put(&mut self, id: u64, v: &[f32]) -> Result<(), IndexError> {
        match self {
            Delta::Flat(d) => d.push(id, &pack_bits(v)),
            Delta::Graph(ix) => {
                if ix.contains(id) {
                    ix.remove(id).map_err(backend("remove"))?;
                }
                add_code(ix, id, v)?;
            }
        }
        Ok(())
    }

    /// Drops the code of `id`; false when a stale code stays behind (a
    /// flat delta, where rescoring skips it) until the next merge.
    fn drop_key(&mut self, id: u64) -> Result<bool, IndexError> {
        match self {
            Delta::Flat(_) => Ok(false),
            Delta::Graph(ix) => {
                if ix.contains(id) {
                    ix.remove(id).map_err(backend("remove"))?;
                }
                Ok(true)
            }
        }
    }
}

struct State {
    base: Option<Base>,
    base_gen: i64,
    base_seq: i64,
    delta: Delta,
    /// Writes since the base was built (delta rows, replaced and removed
    /// base rows): what makes a merge worthwhile.
    changes: usize,
}

impl State {
    /// Vectors in the base, stale ones included.
    fn base_len(&self) -> usize {
        match &self.base {
            None => 0,
            Some(Base::Flat(b)) => b.len(),
            Some(Base::Graph(ix)) => ix.size(),
        }
    }
}

fn backend<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> IndexError + '_ {
    move |e| IndexError::Backend(format!("usearch {what}: {e}"))
}

fn sql_err(e: rusqlite::Error) -> IndexError {
    IndexError::Backend(format!("vectors.sqlite: {e}"))
}

/// Column `i` of a `vec` row: a stored vector's bytes.
fn blob_at<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r [u8], IndexError> {
    r.get_ref(i)
        .map_err(sql_err)?
        .as_blob()
        .map_err(|e| IndexError::Backend(format!("vectors.sqlite holds a non-blob vector: {e}")))
}

impl From<FlatError> for IndexError {
    fn from(e: FlatError) -> IndexError {
        match e {
            FlatError::Io(source) => IndexError::Io {
                context: "writing a flat vector base".into(),
                source,
            },
            FlatError::Format(what) => IndexError::Backend(format!("flat vector base: {what}")),
        }
    }
}

/// A flat base that cannot be read, named by its path.
fn flat_err(path: &Path, e: FlatError) -> IndexError {
    match e {
        FlatError::Io(source) => IndexError::Io {
            context: format!("reading {}", path.display()),
            source,
        },
        FlatError::Format(what) => IndexError::Backend(format!("{}: {what}", path.display())),
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> IndexError {
    move |source| IndexError::Io { context, source }
}

fn key_sql(id: u64) -> i64 {
    (id ^ (1 << 63)) as i64
}

fn key_of(sql: i64) -> u64 {
    (sql as u64) ^ (1 << 63)
}

/// A vector as stored: its components as little-endian f32, in order (the
/// layout of `vectors.sqlite`'s `v` and of `events.sqlite`'s embeddings).
pub(crate) fn blob_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored vector, decoded onto the stack (rescoring decodes hundreds
/// per search).
fn vector_of(blob: &[u8]) -> Result<[f32; EMBEDDING_DIM], IndexError> {
    let Ok(blob) = <&[u8; EMBEDDING_DIM * 4]>::try_from(blob) else {
        return Err(IndexError::Backend(format!(
            "vectors.sqlite holds a vector of {} bytes, want {}",
            blob.len(),
            EMBEDDING_DIM * 4
        )));
    };
    // An indexed loop over a fixed-size array: the size-optimised build
    // does not inline `chunks_exact` and `zip`.
    let mut v = [0f32; EMBEDDING_DIM];
    for (i, x) in v.iter_mut().enumerate() {
        let at = 4 * i;
        *x = f32::from_le_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]]);
    }
    Ok(v)
}

/// The exact score of a stored vector against `q`: the same `dot` as every
/// backend.
fn score_blob(q: &Embedding, blob: &[u8]) -> Result<f32, IndexError> {
    Ok(dot(q.as_slice(), &vector_of(blob)?))
}

/// The 1-bit code of a vector: bit `i` set when component `i` is positive.
pub fn pack_bits(v: &[f32]) -> [u8; CODE_BYTES] {
    let mut out = [0u8; CODE_BYTES];
    for (i, x) in v.iter().enumerate().take(EMBEDDING_DIM) {
        if *x > 0.0 {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

fn new_index(cfg: &UsearchConfig) -> Result<Index, IndexError> {
    let opts = IndexOptions {
        dimensions: EMBEDDING_DIM,
        metric: MetricKind::Hamming,
        quantization: ScalarKind::B1,
        connectivity: cfg.connectivity,
        expansion_add: cfg.expansion_add,
        expansion_search: cfg.expansion_search,
        multi: false,
    };
    Index::new(&opts).map_err(backend("new index"))
}

fn add_code(index: &Index, id: u64, v: &[f32]) -> Result<(), IndexError> {
    if index.size() + 1 > index.capacity() {
        let grow = (index.capacity() * 2).max(64);
        index.reserve(grow).map_err(backend("reserve"))?;
    }
    index
        .add(id, b1x8::from_u8s(&pack_bits(v)))
        .map_err(backend("add"))
}

fn base_path(dir: &Path, gen: i64, flat: bool) -> PathBuf {
    let ext = if flat { "bits" } else { "usearch" };
    dir.join(format!("vectors-{gen}.{ext}"))
}

/// Opens the base file of generation `gen`.
fn open_base(dir: &Path, cfg: &UsearchConfig, gen: i64, flat: bool) -> Result<Base, IndexError> {
    let p = base_path(dir, gen, flat);
    if flat {
        return FlatBase::open(&p)
            .map(Base::Flat)
            .map_err(|e| flat_err(&p, e));
    }
    let ix = new_index(cfg)?;
    ix.view(path_str(&p)?).map_err(backend("view"))?;
    Ok(Base::Graph(ix))
}

fn path_str(p: &Path) -> Result<&str, IndexError> {
    p.to_str()
        .ok_or_else(|| IndexError::Backend(format!("path is not UTF-8: {}", p.display())))
}

fn meta(c: &Connection, k: &str) -> Result<i64, IndexError> {
    c.query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
        .map_err(sql_err)
}

fn set_meta(c: &Connection, k: &str, v: i64) -> Result<(), IndexError> {
    c.execute(
        "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
        params![k, v],
    )
    .map(|_| ())
    .map_err(sql_err)
}

/// Calls `each` with the key and vector of every row `sql` (selecting
/// `id, v`, one `?1`) returns, in the order it returns them.
fn each_row(
    c: &Connection,
    sql: &str,
    seq: i64,
    mut each: impl FnMut(u64, &[f32; EMBEDDING_DIM]) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    let mut st = c.prepare(sql).map_err(sql_err)?;
    let mut rows = st.query([seq]).map_err(sql_err)?;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let id: i64 = r.get(0).map_err(sql_err)?;
        let blob = blob_at(r, 1)?;
        each(key_of(id), &vector_of(blob)?)?;
    }
    Ok(())
}

/// Builds a delta (to go with a base of that kind) from the rows written
/// after `base_seq`.
fn load_delta(
    c: &Connection,
    cfg: &UsearchConfig,
    graph_base: bool,
    base_seq: i64,
) -> Result<Delta, IndexError> {
    let mut delta = Delta::new(cfg, graph_base)?;
    each_row(
        c,
        "SELECT id, v FROM vec WHERE seq > ?1",
        base_seq,
        |id, v| delta.put(id, v),
    )?;
    Ok(delta)
}

/// The WHERE clause and its bound values for a filter (never a value in
/// the SQL text). `None` when the filter can match nothing.
fn where_clause(f: &VectorFilter) -> Option<(String, Vec<Value>)> {
    let mut sql = vec!["1".to_string()];
    let mut vals = Vec::new();
    if let Some(types) = &f.types {
        if types.is_empty() {
            return None;
        }
        sql.push(format!("kind IN ({})", vec!["?"; types.len()].join(",")));
        vals.extend(types.iter().map(|t| Value::Integer(t.code() as i64)));
    }
    if let Some(authors) = &f.authors {
        if authors.is_empty() {
            return None;
        }
        sql.push(format!(
            "author IN ({})",
            vec!["?"; authors.len()].join(",")
        ));
        vals.extend(authors.iter().map(|a| Value::Blob(a.0.to_vec())));
    }
    if let Some(s) = f.since {
        sql.push("ts >= ?".into());
        vals.push(Value::Integer(s));
    }
    if let Some(u) = f.until {
        sql.push("ts <= ?".into());
        vals.push(Value::Integer(u));
    }
    Some((sql.join(" AND "), vals))
}

fn is_unfiltered(f: &VectorFilter) -> bool {
    f.types.is_none() && f.authors.is_none() && f.since.is_none() && f.until.is_none()
}

impl UsearchVectorIndex {
    /// Opens (creating if needed) the index in directory `dir`.
    pub fn open(dir: &Path, cfg: UsearchConfig) -> Result<UsearchVectorIndex, IndexError> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let conn = connect(&dir.join(VECTOR_DB), &cfg.sqlite).map_err(sql_err)?;
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        let base_gen = meta(&conn, "base_gen")?;
        let mut base_seq = meta(&conn, "base_seq")?;
        let base_flat = meta(&conn, "base_flat")? != 0;
        let mut base = None;
        if base_gen > 0 {
            match open_base(dir, &cfg, base_gen, base_flat) {
                Ok(b) => base = Some(b),
                // The base is derived data: without it every row goes to
                // the delta, and the next merge writes a fresh base.
                Err(_) => base_seq = 0,
            }
        }
        remove_stray_bases(
            dir,
            base.as_ref().map(|_| base_path(dir, base_gen, base_flat)),
        )?;
        let graph_base = matches!(base, Some(Base::Graph(_)));
        let delta = load_delta(&conn, &cfg, graph_base, base_seq)?;
        let len: i64 = conn
            .query_row("SELECT count(*) FROM vec", [], |r| r.get(0))
            .map_err(sql_err)?;
        let changes = delta.len();
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            cfg,
            conn: Mutex::new(conn),
            state: RwLock::new(State {
                base,
                base_gen,
                base_seq,
                delta,
                changes,
            }),
            len: AtomicUsize::new(len as usize),
            merge: Mutex::new(None),
        });
        let index = UsearchVectorIndex { inner };
        index.inner.maybe_merge()?;
        Ok(index)
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Waits for a running merge; reports its failure, if any.
    pub fn wait_for_merge(&self) -> Result<(), IndexError> {
        self.inner.join_merge()
    }

    /// Codes in the base and in the in-memory delta (stale ones included).
    pub fn segments(&self) -> (usize, usize) {
        let st = self.inner.state();
        (st.base_len(), st.delta.len())
    }

    async fn run<T, F>(&self, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Arc<Inner>) -> Result<T, IndexError> + Send + 'static,
    {
        let inner = self.inner.clone();
        feed_core::worker::off_thread(move || f(&inner))
            .await
            .map_err(|e| IndexError::Backend(format!("worker thread failed: {e}")))?
    }
}

fn remove_stray_bases(dir: &Path, keep: Option<PathBuf>) -> Result<(), IndexError> {
    let entries = std::fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("vectors-")
            && (name.ends_with(".usearch") || name.ends_with(".bits") || name.ends_with(".tmp"))
            && Some(e.path()) != keep
        {
            std::fs::remove_file(e.path())
                .map_err(io_err(format!("removing {}", e.path().display())))?;
        }
    }
    Ok(())
}

impl Drop for UsearchVectorIndex {
    fn drop(&mut self) {
        // A merge in flight finishes (or fails harmlessly) before the files
        // are handed to whoever opens the directory next.
        let _ = self.inner.join_merge();
    }
}

impl Inner {
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn join_merge(&self) -> Result<(), IndexError> {
        // The slot stays locked until the merge has ended, so no write can
        // start the next merge (with the same generation) beside it.
        let mut slot = self.merge.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            None => Ok(()),
            Some(h) => h
                .join()
                .map_err(|_| IndexError::Backend("merge thread panicked".into()))?,
        }
    }

    fn upsert(&self, records: Vec<VectorRecord>) -> Result<(), IndexError> {
        let mut c = self.conn();
        let base_seq = self.state().base_seq;
        let tx = c.transaction().map_err(sql_err)?;
        let mut seq = meta(&tx, "next_seq")?;
        let (mut added, mut stale) = (0usize, 0usize);
        {
            let mut old = tx
                .prepare_cached("SELECT seq FROM vec WHERE id = ?1")
                .map_err(sql_err)?;
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO vec (id, seq, kind, author, ts, v) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql_err)?;
            for r in &records {
                seq += 1;
                let k = key_sql(r.id.0);
                match old
                    .query_row([k], |row| row.get::<_, i64>(0))
                    .optional()
                    .map_err(sql_err)?
                {
                    None => added += 1,
                    Some(s) if s <= base_seq => stale += 1,
                    Some(_) => {}
                }
                put.execute(params![
                    k,
                    seq,
                    r.kind.code() as i64,
                    &r.author.0[..],
                    r.ts,
                    blob_of(r.vector.as_slice())
                ])
                .map_err(sql_err)?;
            }
        }
        set_meta(&tx, "next_seq", seq)?;
        tx.commit().map_err(sql_err)?;
        {
            let mut st = self.state_mut();
            for r in &records {
                st.delta.put(r.id.0, r.vector.as_slice())?;
            }
            st.changes += records.len() + stale;
        }
        self.len.fetch_add(added, Ordering::SeqCst);
        Ok(())
    }

    fn remove(&self, ids: &[EventId]) -> Result<(), IndexError> {
        let c = self.conn();
        let base_seq = self.state().base_seq;
        let tx = c.unchecked_transaction().map_err(sql_err)?;
        let mut gone = Vec::new();
        {
            // A lookup, then a delete only of what is held: most removals
            // are of posts that never had a vector, and `RETURNING` would
            // make SQLite build a temporary b-tree for each.
            let mut find = tx
                .prepare_cached("SELECT seq FROM vec WHERE id = ?1")
                .map_err(sql_err)?;
            let mut del = tx
                .prepare_cached("DELETE FROM vec WHERE id = ?1")
                .map_err(sql_err)?;
            for id in ids {
                let k = key_sql(id.0);
                if let Some(s) = find
                    .query_row([k], |r| r.get::<_, i64>(0))
                    .optional()
                    .map_err(sql_err)?
                {
                    del.execute([k]).map_err(sql_err)?;
                    gone.push((id.0, s));
                }
            }
        }
        tx.commit().map_err(sql_err)?;
        let mut st = self.state_mut();
        for (id, s) in &gone {
            if *s <= base_seq || !st.delta.drop_key(*id)? {
                st.changes += 1;
            }
        }
        self.len.fetch_sub(gone.len(), Ordering::SeqCst);
        Ok(())
    }

    /// Starts a merge when the delta has outgrown its share.
    fn maybe_merge(self: &Arc<Self>) -> Result<(), IndexError> {
        let due = {
            let st = self.state();
            st.changes > 0 && st.changes >= self.cfg.merge_min.max(st.base_len() / 8)
        };
        if !due {
            return Ok(());
        }
        let mut slot = self.merge.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = slot.as_ref() {
            if !h.is_finished() {
                return Ok(());
            }
            if let Some(h) = slot.take() {
                h.join()
                    .map_err(|_| IndexError::Backend("merge thread panicked".into()))??;
            }
        }
        if self.cfg.background_merge {
            let me = self.clone();
            let h = std::thread::Builder::new()
                .name("feed-usearch-merge".into())
                .spawn(move || me.merge())
                .map_err(io_err("starting the merge thread".into()))?;
            *slot = Some(h);
            Ok(())
        } else {
            drop(slot);
            self.merge()
        }
    }

    /// Builds the next base from every row up to now, then swaps it in.
    fn merge(&self) -> Result<(), IndexError> {
        let gen = self.state().base_gen + 1;
        let tmp = self.dir.join(format!("vectors-{gen}.tmp"));
        // 1. Build from a snapshot, on a connection of our own, while
        //    writers carry on.
        let snapshot_seq;
        let flat;
        let path;
        {
            let mut c = connect(&self.dir.join(VECTOR_DB), &self.cfg.sqlite).map_err(sql_err)?;
            let tx = c.transaction().map_err(sql_err)?;
            snapshot_seq = meta(&tx, "next_seq")?;
            let n: i64 = tx
                .query_row(
                    "SELECT count(*) FROM vec WHERE seq <= ?1",
                    [snapshot_seq],
                    |r| r.get(0),
                )
                .map_err(sql_err)?;
            flat = n as usize <= self.cfg.flat_max;
            path = base_path(&self.dir, gen, flat);
            // Key order (the rowid's): a flat base must be sorted.
            let rows = "SELECT id, v FROM vec WHERE seq <= ?1 ORDER BY id";
            if flat {
                write_flat(&tx, rows, snapshot_seq, &tmp)?;
                tx.finish().map_err(sql_err)?;
            } else {
                let index = new_index(&self.cfg)?;
                index
                    .reserve((n as usize).max(1))
                    .map_err(backend("reserve"))?;
                each_row(&tx, rows, snapshot_seq, |id, v| add_code(&index, id, v))?;
                tx.finish().map_err(sql_err)?;
                index.save(path_str(&tmp)?).map_err(backend("save"))?;
                drop(index);
                let f = std::fs::File::open(&tmp)
                    .map_err(io_err(format!("opening {}", tmp.display())))?;
                f.sync_all()
                    .map_err(io_err(format!("syncing {}", tmp.display())))?;
            }
            std::fs::rename(&tmp, &path).map_err(io_err(format!("renaming {}", tmp.display())))?;
            if let Ok(d) = std::fs::File::open(&self.dir) {
                d.sync_all()
                    .map_err(io_err(format!("syncing {}", self.dir.display())))?;
            }
        }
        // 2. Swap, with writers held off: record the base, rebuild the
        //    delta from what arrived meanwhile, view the new file.
        let c = self.conn();
        let base = open_base(&self.dir, &self.cfg, gen, flat)?;
        let delta = load_delta(&c, &self.cfg, !flat, snapshot_seq)?;
        let tx = c.unchecked_transaction().map_err(sql_err)?;
        set_meta(&tx, "base_gen", gen)?;
        set_meta(&tx, "base_seq", snapshot_seq)?;
        set_meta(&tx, "base_flat", i64::from(flat))?;
        tx.commit().map_err(sql_err)?;
        let old = {
            let mut st = self.state_mut();
            let old = match st.base {
                Some(Base::Flat(_)) => Some(base_path(&self.dir, st.base_gen, true)),
                Some(Base::Graph(_)) => Some(base_path(&self.dir, st.base_gen, false)),
                None => None,
            };
            st.changes = delta.len();
            st.base = Some(base);
            st.base_gen = gen;
            st.base_seq = snapshot_seq;
            st.delta = delta;
            old
        };
        drop(c);
        if let Some(old) = old {
            std::fs::remove_file(&old).map_err(io_err(format!("removing {}", old.display())))?;
        }
        Ok(())
    }

    fn search(
        &self,
        q: &Embedding,
        filter: &VectorFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let Some((clause, vals)) = where_clause(filter) else {
            return Ok(Vec::new());
        };
        let mut conn = self.conn();
        // One read transaction for the whole search: the rows listed and
        // the vectors rescored are one snapshot, and SQLite takes its file
        // locks once rather than once per statement (unfiltered search over
        // 100k vectors: 424 → 462 queries/s, medians of seven runs).
        let c = conn.transaction().map_err(sql_err)?;
        let len = self.len.load(Ordering::SeqCst);
        // No search returns more rows than there are (and a huge `k` must
        // not size the candidate lists).
        let k = k.min(len);
        if k == 0 {
            return Ok(Vec::new());
        }
        if is_unfiltered(filter) {
            if len <= self.cfg.exact_max {
                return exact(&c, q, &clause, &vals, k);
            }
            let hits = self.nearest(&c, q, Among::All, k)?;
            if hits.len() < k {
                return exact(&c, q, &clause, &vals, k);
            }
            return Ok(hits);
        }
        // The rows a filter lets through, in key order (the graph's
        // predicate binary-searches them), listed up to the broad threshold.
        // `clause` is fixed text with `?` placeholders; `vals` and the cap
        // are bound, the cap last (-1: SQLite's "no limit").
        let broad = (len / BROAD_SHARE).max(self.cfg.exact_max + 1);
        let sql = format!("SELECT id FROM vec WHERE {clause} LIMIT ?");
        let list = |cap: i64| -> Result<Vec<u64>, IndexError> {
            let mut s = c.prepare_cached(&sql).map_err(sql_err)?;
            let cap = Value::Integer(cap);
            let mut ids = s
                .query_map(params_from_iter(vals.iter().chain([&cap])), |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(sql_err)?
                .map(|r| r.map(key_of))
                .collect::<Result<Vec<u64>, _>>()
                .map_err(sql_err)?;
            ids.sort_unstable();
            Ok(ids)
        };
        let mut ids = list(i64::try_from(broad).unwrap_or(i64::MAX))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if ids.len() <= self.cfg.exact_max {
            return exact(&c, q, &clause, &vals, k);
        }
        if ids.len() >= broad {
            // A broad filter: candidates from every row, BROAD_SHARE times
            // as many, each rescored row checked against the filter;
            // cheaper than listing the ids of a quarter or more of the rows.
            // The nearest codes that pass are the ones a scan of the passing
            // rows alone would keep, unless fewer than `k` of them pass:
            // then all ids are listed after all.
            let hits = self.nearest(&c, q, Among::Passing(filter), k)?;
            if hits.len() >= k {
                return Ok(hits);
            }
            ids = list(-1)?;
        }
        let hits = self.nearest(&c, q, Among::Listed(&ids), k)?;
        if hits.len() < k.min(ids.len()) {
            // The graph could not offer enough matching rows: answer exactly.
            return exact(&c, q, &clause, &vals, k);
        }
        Ok(hits)
    }

    /// The `k` best of the candidates the bases offer among `among`,
    /// rescored exactly from `vec`; fewer if fewer pass.
    fn nearest(
        &self,
        c: &Connection,
        q: &Embedding,
        among: Among<'_>,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let (allowed, widen) = match among {
            Among::All => (None, 1),
            Among::Listed(ids) => (Some(ids), 1),
            Among::Passing(_) => (None, BROAD_SHARE),
        };
        let mut keys = {
            let st = self.state();
            match (&st.base, &st.delta) {
                (Some(Base::Graph(b)), Delta::Graph(d)) => {
                    graph_candidates(&[b, d], q, allowed, &self.cfg, k, widen)?
                }
                (None, Delta::Graph(d)) => graph_candidates(&[d], q, allowed, &self.cfg, k, widen)?,
                (base, delta) => {
                    let base = match base {
                        Some(Base::Flat(b)) => Some(b),
                        _ => None,
                    };
                    let delta = match delta {
                        Delta::Flat(d) => Some(d),
                        Delta::Graph(_) => None,
                    };
                    flat_candidates(base, delta, q, allowed, &self.cfg, k, widen)
                        .map_err(|e| flat_err(&base_path(&self.dir, st.base_gen, true), e))?
                }
            }
        };
        // Key order: neighbouring rows share pages of `vec`.
        keys.sort_unstable();
        // Rescoring: every candidate passes the filter as the rows stand now
        // (`allowed` was read in the same read transaction, and a broad
        // filter is checked on the row itself), except a base row removed
        // since the base was built, which is gone from `vec` and skipped.
        let mut hits = Vec::with_capacity(keys.len());
        let sql = match among {
            Among::Passing(_) => "SELECT v, kind, author, ts FROM vec WHERE id = ?1",
            _ => "SELECT v FROM vec WHERE id = ?1",
        };
        let mut row = c.prepare_cached(sql).map_err(sql_err)?;
        for key in keys {
            if allowed.is_some_and(|a| a.binary_search(&key).is_err()) {
                continue;
            }
            let mut rows = row.query([key_sql(key)]).map_err(sql_err)?;
            let Some(r) = rows.next().map_err(sql_err)? else {
                continue;
            };
            if let Among::Passing(f) = among {
                if !row_passes(r, f)? {
                    continue;
                }
            }
            hits.push(Hit {
                id: EventId(key),
                score: score_blob(q, blob_at(r, 0)?)?,
            });
        }
        rank(&mut hits);
        hits.truncate(k);
        Ok(hits)
    }
}

/// Which rows a search may return.
#[derive(Clone, Copy)]
enum Among<'a> {
    /// Every row.
    All,
    /// The rows of these keys (ascending).
    Listed(&'a [u64]),
    /// The rows passing this filter, checked on each rescored row.
    Passing(&'a VectorFilter),
}

/// A filter passing at least one row in `BROAD_SHARE` is broad: its search
/// takes `BROAD_SHARE` times as many candidates from all rows and checks
/// the filter on the rows it rescores, instead of listing their ids.
const BROAD_SHARE: usize = 4;

/// Whether a `vec` row read as `v, kind, author, ts` passes `f`.
fn row_passes(r: &rusqlite::Row<'_>, f: &VectorFilter) -> Result<bool, IndexError> {
    let code: u8 = r.get(1).map_err(sql_err)?;
    let kind = EventType::from_code(code).ok_or_else(|| {
        IndexError::Backend(format!("vectors.sqlite: a row of unknown type {code}"))
    })?;
    let author = blob_at(r, 2)?;
    let author = Did(author
        .try_into()
        .map_err(|_| IndexError::Backend("vectors.sqlite: an author of the wrong size".into()))?);
    let ts: i64 = r.get(3).map_err(sql_err)?;
    Ok(f.matches(kind, &author, ts))
}

/// Candidates from usearch graphs (a base and its delta, or a delta alone):
/// the `max(candidates, 4k)` nearest codes of all of them together, a key
/// in two counting once at its nearest code.
fn graph_candidates(
    graphs: &[&Index],
    q: &Embedding,
    allowed: Option<&[u64]>,
    cfg: &UsearchConfig,
    k: usize,
    widen: usize,
) -> Result<Vec<u64>, IndexError> {
    let want = cfg
        .candidates
        .max(k.saturating_mul(4))
        .saturating_mul(widen);
    let bits = pack_bits(q.as_slice());
    let code = b1x8::from_u8s(&bits);
    let mut near: Vec<(f32, u64)> = Vec::new();
    for ix in graphs {
        if ix.size() == 0 {
            continue;
        }
        let count = want.min(ix.size());
        let found = match allowed {
            None => ix.search(code, count),
            Some(a) => ix.filtered_search(code, count, |key| a.binary_search(&key).is_ok()),
        }
        .map_err(backend("search"))?;
        near.extend(found.distances.into_iter().zip(found.keys));
    }
    near.sort_unstable_by(|a, b| a.1.cmp(&b.1).then(a.0.total_cmp(&b.0)));
    near.dedup_by_key(|n| n.1);
    near.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    near.truncate(want);
    Ok(near.into_iter().map(|(_, key)| key).collect())
}

/// Candidates from a flat base and a flat delta: the `max(pool, 8k)`
/// nearest codes by Hamming distance over both, re-ranked by the query's
/// own values against each code's bits ([`Asymmetric`]); the best
/// `max(rescored, 4k)` of those, a key in two counting once at its best.
fn flat_candidates(
    base: Option<&FlatBase>,
    delta: Option<&FlatDelta>,
    q: &Embedding,
    allowed: Option<&[u64]>,
    cfg: &UsearchConfig,
    k: usize,
    widen: usize,
) -> Result<Vec<u64>, FlatError> {
    let qw = words(&pack_bits(q.as_slice()));
    let mut found = Nearest::new(cfg.pool.max(k.saturating_mul(8)).saturating_mul(widen));
    if let Some(b) = base {
        b.search(&qw, allowed.map(Allowed::new).as_mut(), &mut found)?;
    }
    if let Some(d) = delta {
        d.search(&qw, allowed.map(Allowed::new).as_mut(), &mut found);
    }
    let asym = Asymmetric::new(q.as_slice());
    let mut near: Vec<(f32, u64)> = found
        .into_vec()
        .iter()
        .map(|(_, key, code)| (asym.score(code), *key))
        .collect();
    near.sort_unstable_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)));
    near.dedup_by_key(|n| n.1);
    near.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    near.truncate(cfg.rescored.max(k.saturating_mul(4)).saturating_mul(widen));
    Ok(near.into_iter().map(|(_, key)| key).collect())
}

/// Writes a flat base of the rows `sql` returns (in key order) to `tmp`,
/// fsynced.
fn write_flat(c: &Connection, sql: &str, seq: i64, tmp: &Path) -> Result<(), IndexError> {
    let mut st = c.prepare(sql).map_err(sql_err)?;
    let mut rows = st.query([seq]).map_err(sql_err)?;
    let records = std::iter::from_fn(|| match rows.next() {
        Err(e) => Some(Err(sql_err(e))),
        Ok(None) => None,
        Ok(Some(r)) => Some((|| {
            let id: i64 = r.get(0).map_err(sql_err)?;
            let blob = blob_at(r, 1)?;
            Ok((key_of(id), pack_bits(&vector_of(blob)?)))
        })()),
    });
    write_base(tmp, records).map(|_| ())
}

/// Exact scoring of every row passing the filter.
fn exact(
    c: &Connection,
    q: &Embedding,
    clause: &str,
    vals: &[Value],
    k: usize,
) -> Result<Vec<Hit>, IndexError> {
    let sql = format!("SELECT id, v FROM vec WHERE {clause}");
    let mut s = c.prepare_cached(&sql).map_err(sql_err)?;
    let mut rows = s.query(params_from_iter(vals.iter())).map_err(sql_err)?;
    let mut hits = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        let id: i64 = r.get(0).map_err(sql_err)?;
        let blob = blob_at(r, 1)?;
        hits.push(Hit {
            id: EventId(key_of(id)),
            score: score_blob(q, blob)?,
        });
        // Keep memory bounded on large exact scans.
        if hits.len() >= 4 * k.max(256) {
            rank(&mut hits);
            hits.truncate(k);
        }
    }
    rank(&mut hits);
    hits.truncate(k);
    Ok(hits)
}

#[async_trait]
impl VectorIndex for UsearchVectorIndex {
    async fn upsert(&self, records: Vec<VectorRecord>) -> Result<(), IndexError> {
        if records.is_empty() {
            return Ok(());
        }
        self.run(move |inner| {
            inner.upsert(records)?;
            inner.maybe_merge()
        })
        .await
    }

    async fn remove(&self, ids: &[EventId]) -> Result<(), IndexError> {
        let ids = ids.to_vec();
        self.run(move |inner| {
            inner.remove(&ids)?;
            inner.maybe_merge()
        })
        .await
    }

    async fn search(
        &self,
        query: &Embedding,
        filter: &VectorFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let (q, f) = (query.clone(), filter.clone());
        self.run(move |inner| inner.search(&q, &f, k)).await
    }

    async fn ids(&self) -> Result<Vec<EventId>, IndexError> {
        self.run(|inner| {
            let c = inner.conn();
            let mut s = c
                .prepare_cached("SELECT id FROM vec ORDER BY id")
                .map_err(sql_err)?;
            let ids = s
                .query_map([], |r| r.get::<_, i64>(0))
                .map_err(sql_err)?
                .map(|r| r.map(|k| EventId(key_of(k))))
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            Ok(ids)
        })
        .await
    }

    async fn len(&self) -> Result<usize, IndexError> {
        Ok(self.inner.len.load(Ordering::SeqCst))
    }

    async fn flush(&self) -> Result<(), IndexError> {
        self.run(|inner| {
            inner.join_merge()?;
            // Rows written while that merge ran may have made another one
            // due: a flushed index leaves no oversized delta behind. Started
            // through the merge slot, as writes start theirs.
            inner.maybe_merge()?;
            inner.join_merge()?;
            inner
                .conn()
                .execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
                .map_err(sql_err)
        })
        .await
    }

    async fn checkpoint(&self) -> Result<u64, IndexError> {
        self.run(|inner| meta(&inner.conn(), "checkpoint").map(|v| u64::try_from(v).unwrap_or(0)))
            .await
    }

    async fn set_checkpoint(&self, seq: u64) -> Result<(), IndexError> {
        let v = i64::try_from(seq)
            .map_err(|_| IndexError::Backend(format!("checkpoint {seq} is out of range")))?;
        // Committed after (and in the same WAL as) every vector written
        // before it, so it never survives a crash they did not.
        self.run(move |inner| set_meta(&inner.conn(), "checkpoint", v))
            .await
    }

    fn mode(&self) -> SearchMode {
        if self.inner.len.load(Ordering::SeqCst) <= self.inner.cfg.exact_max {
            SearchMode::Exact
        } else {
            SearchMode::Approximate
        }
    }
}
