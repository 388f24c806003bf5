//! Opening the database: pragmas and schema.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use feed_core::StoreError;

use crate::sql::LiteError;
use crate::{SqliteConfig, SyncMode};

/// Schema version in `PRAGMA user_version`.
const VERSION: i64 = 1;

/// Ids and parents are u64; they are stored as `id ^ 2^63` so that SQLite's
/// signed integer order equals the unsigned order.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dids (
    n   INTEGER PRIMARY KEY,
    did BLOB NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS tag_names (
    n   INTEGER PRIMARY KEY,
    tag TEXT NOT NULL UNIQUE
);
-- One row per stored event; rowid `seq` is the arrival order.
CREATE TABLE IF NOT EXISTS events (
    seq      INTEGER PRIMARY KEY,
    id       INTEGER NOT NULL UNIQUE,
    kind     INTEGER NOT NULL,
    author   INTEGER NOT NULL,
    ts       INTEGER NOT NULL,
    parent   INTEGER,
    hash     BLOB NOT NULL,
    content  TEXT,
    tags     TEXT,      -- space-separated (tags hold no whitespace)
    mentions BLOB,      -- concatenated 32-byte DIDs
    deleted  INTEGER NOT NULL DEFAULT 0
);
-- Live events only (a delete drops its target's entries): newest-first
-- scans, buckets and timeline scans read ev_time alone; author feeds and
-- timeline merges read ev_author alone.
CREATE INDEX IF NOT EXISTS ev_time   ON events(ts, id, kind, author) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS ev_author ON events(author, kind, ts, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS ev_parent ON events(parent, kind) WHERE parent IS NOT NULL;
CREATE TABLE IF NOT EXISTS embeddings (
    seq INTEGER PRIMARY KEY,   -- events.seq
    v   BLOB NOT NULL          -- 384 little-endian f32
);
-- Posts, mention and hashtag events by tag and by mentioned DID.
CREATE TABLE IF NOT EXISTS tag_index (
    tag INTEGER NOT NULL, ts INTEGER NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (tag, ts, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mention_index (
    did INTEGER NOT NULL, ts INTEGER NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (did, ts, id)
) WITHOUT ROWID;
-- Live follow events as edges.
CREATE TABLE IF NOT EXISTS follows (
    follower INTEGER NOT NULL, followee INTEGER NOT NULL, event INTEGER NOT NULL,
    PRIMARY KEY (follower, followee, event)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS follows_rev ON follows(followee, follower);
CREATE INDEX IF NOT EXISTS follows_event ON follows(event);
";

/// Opens `path` with the pragmas of `cfg` (WAL, sync mode, bounded cache
/// and mmap); shared by the event store and the vector index.
pub(crate) fn connect(path: &Path, cfg: &SqliteConfig) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Only a new, empty database takes it, and only before WAL mode is
    // set; SQLite ignores a size that is not a power of two in range.
    conn.pragma_update(None, "page_size", cfg.page_bytes)?;
    // Fails with NOTADB on a file that is not a database.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match cfg.sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        },
    )?;
    conn.pragma_update(None, "cache_size", -(cfg.cache_kib as i64))?;
    conn.pragma_update(None, "mmap_size", cfg.mmap_bytes as i64)?;
    conn.pragma_update(None, "temp_store", "FILE")?;
    // The log file keeps its size after a checkpoint (up to twice the
    // checkpoint threshold) and is emptied when the store closes.
    conn.pragma_update(None, "journal_size_limit", WAL_OPEN_BYTES)?;
    // In pages of this file's own size (a database made before keeps its
    // page size), so that the log grows to the same number of bytes.
    let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        WAL_CHECKPOINT_BYTES / page.max(512),
    )?;
    keep_wal_files(&conn)?;
    conn.set_prepared_statement_cache_capacity(48);
    Ok(conn)
}

/// Bytes of write-ahead log (32 MiB: 8,192 pages of 4 KiB) after which a
/// commit copies them into the database file; SQLite's default is 1,000
/// pages. Fewer checkpoints write a page that many batches touch (an
/// index's hot leaves) once instead of once per checkpoint: ingest of 100k
/// events, three alternating runs, 47.8k → 53.7k events/s (median), for
/// 0.3 MiB more peak RSS.
const WAL_CHECKPOINT_BYTES: i64 = 32 << 20;

/// Bytes of write-ahead log file kept while the store is open. SQLite
/// cuts the file down to this size each time it starts the log over after
/// a checkpoint; at 4 MiB (before 2026-12-02), every 32 MiB written meant
/// truncating 28 MiB and allocating it again. Ingest of 100k events,
/// three alternating runs: 22.6 / 25.0 / 25.3k → 27.2 / 27.5 / 25.4k
/// events/s. When the last connection closes, SQLite checkpoints and
/// truncates the file to nothing (any limit but -1 has it do so).
const WAL_OPEN_BYTES: i64 = 2 * WAL_CHECKPOINT_BYTES;

/// Keeps the `-wal` and `-shm` files when the last connection closes
/// (`SQLITE_FCNTL_PERSIST_WAL`). SQLite deletes them by default, and the
/// next open must then create a 32 KiB `-shm` file before it can read at
/// all: on a full disk that fails and a store that was readable when
/// closed could no longer be opened even to export it.
fn keep_wal_files(conn: &Connection) -> Result<(), rusqlite::Error> {
    let mut on: std::ffi::c_int = 1;
    // SAFETY: `conn.handle()` is this open connection's live handle and
    // `on` outlives the call; PERSIST_WAL reads and writes one int.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::ffi::c_int).cast(),
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("keeping the WAL files (SQLITE_FCNTL_PERSIST_WAL)".into()),
        ))
    }
}

pub(crate) fn open(path: &Path, cfg: &SqliteConfig) -> Result<Connection, StoreError> {
    let inner = || -> Result<Connection, LiteError> {
        let conn = connect(path, cfg)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > VERSION {
            return Err(LiteError::Store(StoreError::Corrupt(format!(
                "{} has schema version {version}, this build knows {VERSION}",
                path.display()
            ))));
        }
        // An opened store that is already current is only read: opening
        // must work on a full disk.
        if version < VERSION {
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", VERSION)?;
        }
        Ok(conn)
    };
    inner().map_err(StoreError::from)
}
