//! Opening the database: settings and schema.

use std::path::Path;

use duckdb::{Config, Connection};

use feed_core::StoreError;

use crate::sql::DuckError;
use crate::DuckConfig;

/// Schema version, kept in `meta`.
const VERSION: i64 = 1;

/// RFC-0130's `events` and `event_content`, plus what the queries need.
/// No keys and no ART indexes: uniqueness is decided by the append path,
/// lookups scan time-ordered id columns that row-group min/max prunes, and
/// DuckDB would hold every ART in its memory budget (see the crate README
/// for the measurements).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k VARCHAR, v BIGINT);
CREATE TABLE IF NOT EXISTS dids (n INTEGER NOT NULL, did BLOB NOT NULL);
-- One row per stored event; `seq` is the arrival order; `deleted` is set
-- when a delete by the same author is stored (whichever came first);
-- `edited` spares the edit lookup for the posts no edit ever targeted.
-- Thread groups: posts joined by `parent` links share one `root` id (a
-- reply takes its parent's; a parent arriving after its replies absorbs
-- their groups), so a thread is read with one query.
CREATE TABLE IF NOT EXISTS events (
    seq     BIGINT   NOT NULL,
    id      UBIGINT  NOT NULL,
    kind    UTINYINT NOT NULL,
    author  INTEGER  NOT NULL,
    ts      BIGINT   NOT NULL,
    parent  UBIGINT,
    hash    BLOB     NOT NULL,
    deleted BOOLEAN  NOT NULL,
    edited  BOOLEAN  NOT NULL,  -- a post some edit has targeted
    root    UBIGINT,            -- a post's thread group (below)
    reaction UTINYINT           -- a reaction's kind: 0 like, 1 boost, 2 bookmark
);
CREATE TABLE IF NOT EXISTS event_content (
    id        UBIGINT NOT NULL,
    content   VARCHAR,
    tags      VARCHAR,   -- space-separated (tags hold no whitespace)
    mentions  BLOB,      -- concatenated 32-byte DIDs
    embedding BLOB       -- 384 little-endian f32
);
-- Live posts, mention and hashtag events by tag and by mentioned DID.
CREATE TABLE IF NOT EXISTS event_tags (tag VARCHAR NOT NULL, ts BIGINT NOT NULL, id UBIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS event_mentions (did INTEGER NOT NULL, ts BIGINT NOT NULL, id UBIGINT NOT NULL);
-- Live follow events as edges.
CREATE TABLE IF NOT EXISTS follows (follower INTEGER NOT NULL, followee INTEGER NOT NULL, event UBIGINT NOT NULL);
-- The append path's scratch lists (per connection, never on disk).
CREATE TEMP TABLE IF NOT EXISTS q_ids (id UBIGINT);
CREATE TEMP TABLE IF NOT EXISTS q_groups (old UBIGINT, new UBIGINT);
CREATE TEMP TABLE IF NOT EXISTS q_flags (seq BIGINT, del BOOLEAN, ed BOOLEAN);
";

// The setting below is spelled out in the statement text.
const _: () = assert!(crate::sql::LOAD_CHUNK == 256);

/// Opens (creating if needed) `DB_FILE` in directory `dir`, with row groups
/// of 16,384 rows instead of DuckDB's 122,880: a statement scans whole row
/// groups, so a thread's group query (pruned by `seq`) and single-row
/// fetches scan much less (see the crate README).
///
/// DuckDB takes a row-group size only as an `ATTACH` option, and `ATTACH`
/// takes its path only as a literal. So the store opens an in-memory
/// database whose `home_directory` setting (a configuration value, not SQL
/// text) is `dir`, and attaches the constant path `~/events.duckdb`,
/// which DuckDB expands against it: no value is pasted into SQL. External
/// access is switched off once the file is attached.
pub(crate) fn open(dir: &Path, cfg: &DuckConfig) -> Result<Connection, StoreError> {
    let home = dir.to_str().ok_or_else(|| StoreError::Io {
        context: format!("opening {}", dir.display()),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "DuckDB needs a store path that is valid UTF-8",
        ),
    })?;
    // DuckDB reads an empty `home_directory` as "not set" and would expand
    // `~` to $HOME: the empty path is the current directory.
    let home = if home.is_empty() { "." } else { home };
    let inner = || -> Result<Connection, DuckError> {
        let config = Config::default()
            .max_memory(&format!("{}MB", cfg.memory_limit_mib))?
            .threads(i64::from(cfg.threads.max(1)))?
            .enable_autoload_extension(false)?
            .with("home_directory", home)?;
        let conn = Connection::open_in_memory_with_flags(config)?;
        conn.execute_batch(concat!(
            "ATTACH '~/",
            db_file!(),
            "' AS feed (ROW_GROUP_SIZE 16384); USE feed; ",
            "SET enable_external_access = false;"
        ))?;
        // Fetching one row from an FSST-compressed string segment decodes
        // the segment up to it, and from an RLE segment walks its runs:
        // loading 50 rows by id at 100k events took 23 ms with FSST and
        // 1.1 ms without. (A connection setting; the database config key of
        // the same name is not applied.)
        conn.execute_batch("SET disabled_compression_methods = 'fsst,rle'")?;
        // Loads join `events` with a list of up to LOAD_CHUNK `rowid`s;
        // DuckDB filters the scan by the list itself only up to this many
        // rows (default 50), by their min/max range past it: 200 rows
        // spread over 1M events loaded in 19 + 40 ms at 50, 7 + 11 at 256.
        conn.execute_batch("SET dynamic_or_filter_threshold = 256")?;
        conn.execute_batch(SCHEMA)?;
        conn.set_prepared_statement_cache_capacity(64);
        let version: Option<i64> = conn
            .prepare("SELECT max(v) FROM meta WHERE k = 'version'")?
            .query_row([], |r| r.get(0))?;
        match version {
            Some(v) if v > VERSION => {
                return Err(DuckError::Store(StoreError::Corrupt(format!(
                    "{} has schema version {v}, this build knows {VERSION}",
                    dir.join(crate::DB_FILE).display()
                ))))
            }
            Some(_) => {}
            None => {
                conn.execute("INSERT INTO meta VALUES ('version', ?)", [VERSION])?;
            }
        }
        Ok(conn)
    };
    inner().map_err(StoreError::from)
}
