//! Opening a store directory with the backend it remembers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use feed_core::{
    Embedder, Embedding as Vector, EventId, EventStore, FeedStore, Hit, IndexError, SearchMode,
    VectorFilter, VectorIndex,
};

/// The facade over whichever backend the store uses.
pub type Store = FeedStore<Box<dyn EventStore>, Box<dyn VectorIndex>>;

/// File in the store directory naming its backend.
pub const META_FILE: &str = "feed.json";

/// Backends compiled into this binary, default first.
pub fn compiled_backends() -> Vec<&'static str> {
    [
        ("lite", cfg!(feature = "lite")),
        ("reference", cfg!(feature = "reference")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}

/// Why a store could not be opened: the caller maps these to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The user asked for something impossible (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The store itself failed (exit 4).
    #[error("{0:#}")]
    Store(anyhow::Error),
}

fn read_backend(dir: &Path) -> anyhow::Result<Option<String>> {
    let path = dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            let b = v
                .get("backend")
                .and_then(|b| b.as_str())
                .ok_or_else(|| anyhow!("{} names no backend", path.display()))?;
            Ok(Some(b.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Whether a store gets the local embedder (text search, and vectors for
/// posts that carry none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embedding {
    /// When the model is installed (the `feed` command).
    IfInstalled,
    /// Never (benchmarks of the stores themselves).
    Off,
}

/// The embedder for a store with a vector index, if compiled in and
/// installed; otherwise why not, for the message of a text search.
pub fn embedder(mode: Embedding) -> Result<Arc<dyn Embedder>, String> {
    if mode == Embedding::Off {
        return Err("embedding is off".into());
    }
    #[cfg(feature = "embed")]
    {
        let cfg = feed_embed::OnnxConfig::from_env();
        cfg.check_files().map_err(|e| e.to_string())?;
        Ok(Arc::new(feed_embed::LazyEmbedder::new(cfg)))
    }
    #[cfg(not(feature = "embed"))]
    Err("this binary is built without the `embed` feature".into())
}

/// Opens the store in `dir`. With `create`, a missing store is initialised
/// with `requested` (or the default backend); otherwise it must exist. A
/// requested backend must match the one the store remembers. Returns the
/// store and its backend's name.
pub async fn open(
    dir: &Path,
    requested: Option<&str>,
    create: bool,
    embedding: Embedding,
) -> Result<(Store, String), OpenError> {
    let compiled = compiled_backends();
    if let Some(r) = requested {
        if !compiled.contains(&r) {
            return Err(OpenError::Usage(format!(
                "backend {r:?} is not compiled into this binary (have: {})",
                compiled.join(", ")
            )));
        }
    }
    let remembered = read_backend(dir).map_err(OpenError::Store)?;
    let backend = match (remembered, requested) {
        (Some(b), Some(r)) if b != r => {
            return Err(OpenError::Usage(format!(
                "the store at {} uses backend {b:?}, not {r:?}",
                dir.display()
            )))
        }
        (Some(b), _) => b,
        (None, _) if !create => {
            return Err(OpenError::Store(anyhow!(
                "no store at {} (create one with `feed --store {} init`)",
                dir.display(),
                dir.display()
            )))
        }
        (None, r) => {
            let b = r
                .or(compiled.first().copied())
                .ok_or_else(|| OpenError::Usage("no backend is compiled in".into()))?
                .to_string();
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {}", dir.display()))
                .map_err(OpenError::Store)?;
            // The backend's files first, then the note that names it: a
            // store that names its backend always had its files made.
            let store = open_backend(dir, &b, embedding)
                .await
                .map_err(OpenError::Store)?;
            let meta = serde_json::json!({ "backend": b, "format": 1 });
            let tmp = dir.join(format!("{META_FILE}.tmp"));
            std::fs::write(&tmp, format!("{meta}\n"))
                .and_then(|()| std::fs::rename(&tmp, dir.join(META_FILE)))
                .with_context(|| format!("writing {}", dir.join(META_FILE).display()))
                .map_err(OpenError::Store)?;
            return Ok((store, b));
        }
    };
    check_files(dir, &backend).map_err(OpenError::Store)?;
    let store = open_backend(dir, &backend, embedding)
        .await
        .map_err(OpenError::Store)?;
    Ok((store, backend))
}

/// The events file of a store that names its backend must be there: a
/// missing or emptied one is damage, not a new empty store (SQLite and
/// DuckDB would quietly start one).
fn check_files(dir: &Path, backend: &str) -> anyhow::Result<()> {
    let Some((main, wal)) = events_files(dir, backend) else {
        return Ok(());
    };
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    // SQLite in WAL mode may leave the main file empty until a checkpoint.
    let wal_len = len(&wal).unwrap_or(0);
    match len(&main) {
        Some(n) if n > 0 || wal_len > 0 => Ok(()),
        Some(_) => bail!(
            "the store is damaged: {} is empty, though {} names a {backend} store",
            main.display(),
            dir.join(META_FILE).display()
        ),
        None => bail!(
            "the store is damaged: {} is missing, though {} names a {backend} store",
            main.display(),
            dir.join(META_FILE).display()
        ),
    }
}

/// A backend's events file and its write-ahead log, by the backend
/// crate's own file name.
fn events_files(dir: &Path, backend: &str) -> Option<(PathBuf, PathBuf)> {
    match backend {
        #[cfg(feature = "lite")]
        "lite" => {
            let d = dir.join("lite");
            let wal = d.join(format!("{}-wal", feed_sqlite_lite::DB_FILE));
            Some((d.join(feed_sqlite_lite::DB_FILE), wal))
        }
        #[cfg(feature = "reference")]
        "reference" => {
            let d = dir.join("reference");
            let wal = d.join(format!("{}.wal", feed_duckdb::DB_FILE));
            Some((d.join(feed_duckdb::DB_FILE), wal))
        }
        _ => None,
    }
}

/// The directory of a store's vector index: `<store>/<backend>/vectors`.
fn index_dir(dir: &Path, backend: &str) -> PathBuf {
    dir.join(backend).join("vectors")
}

/// Bytes of the files under a store's vector index directory (0 when it
/// has none); an entry that vanishes or cannot be read counts 0.
pub fn index_bytes(dir: &Path, backend: &str) -> u64 {
    fn walk(p: &Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p).map_or(0, |entries| {
                entries.flatten().map(|e| walk(&e.path())).sum()
            }),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        }
    }
    walk(&index_dir(dir, backend))
}

async fn open_backend(dir: &Path, backend: &str, embedding: Embedding) -> anyhow::Result<Store> {
    match backend {
        #[cfg(feature = "lite")]
        "lite" => {
            // Benchmarks compare timeline plans and vector layouts
            // (`feed bench --backends lite/scan,lite/graph`).
            let variant = std::env::var("FEED_LITE_VARIANT").unwrap_or_default();
            let config = feed_sqlite_lite::SqliteConfig {
                timeline: match variant.as_str() {
                    "merge" => feed_sqlite_lite::TimelinePlan::Merge,
                    "scan" => feed_sqlite_lite::TimelinePlan::Scan,
                    _ => feed_sqlite_lite::TimelinePlan::Auto,
                },
                ..feed_sqlite_lite::SqliteConfig::default()
            };
            let events = feed_sqlite_lite::SqliteEventStore::open(&dir.join("lite"), &config)
                .with_context(|| format!("opening the lite store in {}", dir.display()))?;
            let mut vector_config = feed_sqlite_lite::UsearchConfig::default();
            if variant == "graph" {
                vector_config.flat_max = 0;
            }
            let vectors =
                feed_sqlite_lite::UsearchVectorIndex::open(&index_dir(dir, "lite"), vector_config)
                    .map(|v| Box::new(v) as Box<dyn VectorIndex>)
                    .with_context(|| format!("opening the lite vector index in {}", dir.display()));
            // A step's events (vectors included) are in memory together
            // while the index catches up: smaller steps keep the lite
            // profile's ingest within its budget.
            Ok(Store::new(
                Box::new(events),
                Some(or_unavailable(vectors)),
                embedder(embedding).ok(),
            )
            .with_log_page(256))
        }
        #[cfg(feature = "reference")]
        "reference" => {
            let events = feed_duckdb::DuckEventStore::open(
                &dir.join("reference"),
                &feed_duckdb::DuckConfig::default(),
            )
            .with_context(|| format!("opening the reference store in {}", dir.display()))?;
            let vectors = feed_lance::LanceVectorIndex::open(
                &index_dir(dir, "reference"),
                feed_lance::LanceConfig::default(),
            )
            .await
            .map(|v| Box::new(v) as Box<dyn VectorIndex>)
            .with_context(|| format!("opening the reference vector index in {}", dir.display()));
            Ok(Store::new(
                Box::new(events),
                Some(or_unavailable(vectors)),
                embedder(embedding).ok(),
            )
            // Steps of 4,096 log entries instead of 1,024: a quarter of
            // the DuckDB statements and Lance writes per event. `feed
            // bench-worker --phase ingest`, 100k events in batches of
            // 10,000, no embedder: 20.2k → 25.8k events/s without vectors,
            // 4.3k → 5.5k with 33,764 vectors; peak RSS 443 → 453 MiB.
            .with_log_page(4_096))
        }
        other => bail!("backend {other:?} is not compiled into this binary"),
    }
}

/// The opened vector index, or one that fails every call with the reason
/// it could not be opened (a full disk, a damaged file). The index is
/// derived from the events, so a store whose index will not open still
/// reads, exports and takes new events; `stats` and `check` report the
/// reason with the index lag, and `search` fails with it.
#[allow(dead_code)] // unused when no backend is compiled in
fn or_unavailable(opened: anyhow::Result<Box<dyn VectorIndex>>) -> Box<dyn VectorIndex> {
    opened.unwrap_or_else(|e| {
        Box::new(UnavailableIndex {
            reason: format!("{e:#}"),
        })
    })
}

/// A vector index that could not be opened: every call fails with why.
struct UnavailableIndex {
    reason: String,
}

impl UnavailableIndex {
    fn fail<T>(&self) -> Result<T, IndexError> {
        Err(IndexError::Backend(self.reason.clone()))
    }
}

#[async_trait::async_trait]
impl VectorIndex for UnavailableIndex {
    async fn upsert(&self, _: Vec<feed_core::VectorRecord>) -> Result<(), IndexError> {
        self.fail()
    }
    async fn remove(&self, _: &[EventId]) -> Result<(), IndexError> {
        self.fail()
    }
    async fn search(&self, _: &Vector, _: &VectorFilter, _: usize) -> Result<Vec<Hit>, IndexError> {
        self.fail()
    }
    async fn ids(&self) -> Result<Vec<EventId>, IndexError> {
        self.fail()
    }
    async fn len(&self) -> Result<usize, IndexError> {
        self.fail()
    }
    async fn flush(&self) -> Result<(), IndexError> {
        self.fail()
    }
    fn mode(&self) -> SearchMode {
        SearchMode::Exact
    }
    async fn checkpoint(&self) -> Result<u64, IndexError> {
        self.fail()
    }
    async fn set_checkpoint(&self, _: u64) -> Result<(), IndexError> {
        self.fail()
    }
}
