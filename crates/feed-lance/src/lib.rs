//! [`LanceVectorIndex`]: the reference profile's [`VectorIndex`], on LanceDB.
//!
//! Layout in the index directory:
//! - `posts.lance` — one Lance table: `id` (u64), `event_type` and `author`
//!   (strings), `ts` (i64) and `vector` (384 × f32, unit length);
//! - `checkpoint` — the write path's checkpoint, a decimal number, replaced
//!   atomically (write, fsync, rename, fsync the directory);
//! - `trained` — the row count the ANN index was last trained on, replaced
//!   the same way.
//!
//! Writes: a batch whose ids are all new is appended; otherwise it goes
//! through `merge_insert` on `id` (upsert). Removes are a `delete` with a
//! typed `id IN (…)` expression. Filters are typed DataFusion expressions,
//! never strings with values in them.
//!
//! Search: cosine distance throughout. Until an ANN index exists every
//! search is a flat (exact) scan with the filter applied first. Once the
//! table holds `index_min_rows` rows, maintenance trains an IVF_HNSW_SQ
//! index (see [`LanceConfig`] for why) and scalar indexes on `event_type`,
//! `author`, `ts` and `id`; later maintenance folds new rows into them,
//! and trains the ANN index again once the rows have doubled.
//! A filter that lets at most `exact_max` rows through is still answered
//! by a flat scan of those rows. Every hit is rescored from its stored
//! vector with [`feed_core::dot`] and ranked by score, then id, so scores
//! equal the reference computation's whichever way the candidates came.
//!
//! Maintenance (compact small files, fold new rows into the indexes, prune
//! old versions) runs inside the write that reaches `optimize_writes`
//! writes or `optimize_rows` rows written since the last run, or the
//! first write after `optimize_age`.
//!
//! Durability: Lance does not fsync local files, so [`VectorIndex::flush`]
//! and [`VectorIndex::set_checkpoint`] fsync every file and directory of
//! the table before returning (the checkpoint file last): after a crash or
//! power cut the index holds at least what its checkpoint says.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::TryStreamExt;
use lancedb::arrow::arrow_array::{
    Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, RecordBatchIterator,
    RecordBatchReader, StringArray, UInt64Array,
};
use lancedb::arrow::arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use lancedb::expr::{col, lit, DfExpr};
use lancedb::index::scalar::{BTreeIndexBuilder, BitmapIndexBuilder};
use lancedb::index::vector::IvfHnswSqIndexBuilder;
use lancedb::index::Index;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::{CompactionOptions, OptimizeAction, OptimizeOptions};
use lancedb::{Connection, DistanceType, ObjectStoreRegistry, Session, Table};
use tokio::sync::Mutex;

mod rows;
mod uring;

use feed_core::memvec::rank;
use feed_core::{
    dot, Did, Embedding, EventId, EventType, Hit, IndexError, SearchMode, VectorFilter,
    VectorIndex, VectorRecord, EMBEDDING_DIM,
};
use rows::Rows;

/// The table's name (its folder is `posts.lance`).
pub const TABLE: &str = "posts";
/// The checkpoint file inside an index directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// The file holding the row count the ANN index was last trained on.
pub const TRAINED_FILE: &str = "trained";

/// Extra exact candidates fetched past `k`, so rows tied with the k-th are
/// ranked by id rather than by Lance's scan order.
const TIE_MARGIN: usize = 16;

/// Tuning of the LanceDB vector index.
#[derive(Clone, Debug)]
pub struct LanceConfig {
    /// The ANN index is trained once the table holds this many rows
    /// (default 20,000); below it, flat scans are exact and fast enough.
    pub index_min_rows: usize,
    /// Filters letting at most this many rows through are answered by an
    /// exact flat scan of those rows even when an ANN index exists
    /// (default 500: the scan reads each row's vector at random, about
    /// 12 ms per 1,000 rows, where the graph answers in about 6).
    pub exact_max: usize,
    /// IVF partitions probed per search (default 4: 100,000 vectors in 10
    /// partitions, recall@10 0.98–0.99 at 100/50/10% selectivity; 3 probes
    /// gave 0.957–0.98 and 2 probes 0.90).
    pub nprobes: usize,
    /// IVF partitions probed when a filter passes under 5% of the rows
    /// (default 8: matches are sparse in each partition's graph).
    pub nprobes_selective: usize,
    /// Filters passing at least this share of the rows are applied after
    /// the graph search (which then asks for `2k / share` candidates)
    /// rather than before it (default 0.3); evaluating a broad filter over
    /// the whole table costs more than the search.
    pub postfilter_min: f64,
    /// HNSW candidate list width while searching (default 40; at least
    /// the candidates asked for).
    pub ef: usize,
    /// Candidates Lance re-ranks from full vectors before we rescore them
    /// (`k × refine_factor`, default 2).
    pub refine_factor: u32,
    /// Rows per IVF partition when training (default 10,000).
    pub partition_rows: u32,
    /// The ANN index is trained again, with partitions for the rows held
    /// then, once the table holds this many times the rows of the last
    /// training (default 2.0). New rows are otherwise only folded into the
    /// partitions trained first, which then grow without bound: trained at
    /// 64,000 rows and grown to 100,000, 6 partitions of ~16,700 rows
    /// thrashed a 64 MiB index cache (15 queries/s on two threads); trained
    /// again into 10, the same cache served 269 queries/s.
    pub retrain_growth: f64,
    /// Maintenance runs after this many writes since the last run
    /// (default 64).
    pub optimize_writes: usize,
    /// … or once this many rows were upserted or removed since the last
    /// run (default 25,000: about 64 writes of the 1,024-event steps the
    /// index once caught up by; counting writes alone, steps of 10,000
    /// left 100k events with 33,764 vectors untrained, each search a flat
    /// scan, 68 ms against 34 with the ANN index).
    pub optimize_rows: usize,
    /// … or with the first write once this long has passed since the last
    /// run (default 60 s).
    pub optimize_age: Duration,
    /// Old table versions older than this are pruned (default 60 s; a
    /// search in flight reads a version at most this old).
    pub keep_versions: Duration,
    /// Bytes of Lance's index cache (default 128 MiB). It should hold the
    /// whole ANN index, about 600 bytes per vector (SQ codes and graph;
    /// 100,000 vectors: 60 MB on disk), or searches load partitions again.
    pub index_cache_bytes: usize,
    /// Bytes of Lance's metadata cache (default 16 MiB).
    pub metadata_cache_bytes: usize,
    /// Read the table through io_uring where the kernel allows it (default
    /// true; Linux only). Lance otherwise reads each range on a tokio
    /// blocking thread, a thread hand-off per read, and a search makes
    /// tens of reads. Containers and Android often forbid io_uring: a
    /// probe at open falls back to ordinary reads. Lance runs two ring
    /// threads for the process; `LANCE_URING_POLL_TIMEOUT_MS` sets how
    /// often they wake while idle (Lance's default 10 ms; `feed` sets
    /// 1,000 unless it is set).
    pub io_uring: bool,
}

impl Default for LanceConfig {
    fn default() -> Self {
        LanceConfig {
            index_min_rows: 20_000,
            exact_max: 500,
            nprobes: 4,
            nprobes_selective: 8,
            postfilter_min: 0.3,
            ef: 40,
            refine_factor: 2,
            partition_rows: 10_000,
            retrain_growth: 2.0,
            optimize_writes: 64,
            optimize_rows: 25_000,
            optimize_age: Duration::from_secs(60),
            keep_versions: Duration::from_secs(60),
            index_cache_bytes: 128 << 20,
            metadata_cache_bytes: 16 << 20,
            io_uring: true,
        }
    }
}

struct Maintenance {
    writes: usize,
    /// Rows upserted or removed since the last run.
    rows: usize,
    last: Instant,
    /// Rows the ANN index was last trained on (0: unknown, or never).
    trained: usize,
}

/// A [`VectorIndex`] on LanceDB. See the module docs.
pub struct LanceVectorIndex {
    dir: PathBuf,
    cfg: LanceConfig,
    table: Table,
    schema: SchemaRef,
    rows: RwLock<Rows>,
    indexed: AtomicBool,
    /// Serialises writes and maintenance.
    write: Mutex<Maintenance>,
}

fn backend(what: &str) -> impl Fn(lancedb::Error) -> IndexError + '_ {
    move |e| IndexError::Backend(format!("{what}: {e}"))
}

fn arrow(what: &str) -> impl Fn(ArrowError) -> IndexError + '_ {
    move |e| IndexError::Backend(format!("{what}: {e}"))
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> IndexError {
    move |source| IndexError::Io { context, source }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("author", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, true)),
                EMBEDDING_DIM as i32,
            ),
            false,
        ),
    ]))
}

impl LanceVectorIndex {
    /// Opens (creating when absent) the index in `dir`.
    ///
    /// A damaged table can make Lance panic while it opens (lance 14.0.2
    /// subtracts with overflow on a cut manifest, which builds with overflow
    /// checks trap); such a panic is returned as an error, not unwound into
    /// the caller.
    pub async fn open(dir: &Path, cfg: LanceConfig) -> Result<LanceVectorIndex, IndexError> {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(Self::open_table(dir, cfg))
            .catch_unwind()
            .await
        {
            Ok(opened) => opened,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Err(IndexError::Backend(format!(
                    "the Lance table in {} could not be read ({why})",
                    dir.display()
                )))
            }
        }
    }

    async fn open_table(dir: &Path, cfg: LanceConfig) -> Result<LanceVectorIndex, IndexError> {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let uri = dir
            .to_str()
            .ok_or_else(|| IndexError::Backend(format!("{} is not UTF-8", dir.display())))?;
        let session = Arc::new(Session::new(
            cfg.index_cache_bytes,
            cfg.metadata_cache_bytes,
            Arc::new(ObjectStoreRegistry::default()),
        ));
        let uri = if cfg.io_uring && uring::available() {
            // Lance's io_uring reader, named by the URI's scheme; the path
            // made absolute, as a URI needs.
            let abs = fs::canonicalize(dir).map_err(io(format!("resolving {}", dir.display())))?;
            let abs = abs
                .to_str()
                .ok_or_else(|| IndexError::Backend(format!("{} is not UTF-8", abs.display())))?;
            format!("file+uring://{abs}")
        } else {
            uri.to_string()
        };
        let db: Connection = lancedb::connect(&uri)
            .session(session)
            .execute()
            .await
            .map_err(backend("connecting"))?;
        let schema = schema();
        let names = db
            .table_names()
            .execute()
            .await
            .map_err(backend("listing tables"))?;
        let table = if names.iter().any(|n| n == TABLE) {
            db.open_table(TABLE)
                .execute()
                .await
                .map_err(backend("opening the table"))?
        } else {
            db.create_empty_table(TABLE, schema.clone())
                .execute()
                .await
                .map_err(backend("creating the table"))?
        };
        let indexed = table
            .list_indices()
            .await
            .map_err(backend("listing indexes"))?
            .iter()
            .any(|i| i.columns.iter().any(|c| c == "vector"));
        let index = LanceVectorIndex {
            dir: dir.to_path_buf(),
            cfg,
            table,
            schema,
            rows: RwLock::new(Rows::default()),
            indexed: AtomicBool::new(indexed),
            write: Mutex::new(Maintenance {
                writes: 0,
                rows: 0,
                last: Instant::now(),
                trained: read_number(&dir.join(TRAINED_FILE))?.unwrap_or(0) as usize,
            }),
        };
        let rows = index.load_rows().await?;
        *index.rows.write().unwrap_or_else(|p| p.into_inner()) = rows;
        Ok(index)
    }

    /// The directory the index lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Lance table (for inspection: fragments, versions, indexes).
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Reads every row's filter fields.
    async fn load_rows(&self) -> Result<Rows, IndexError> {
        let batches: Vec<RecordBatch> = self
            .table
            .query()
            .select(Select::columns(&["id", "event_type", "author", "ts"]))
            .execute()
            .await
            .map_err(backend("scanning the table"))?
            .try_collect()
            .await
            .map_err(backend("scanning the table"))?;
        let mut rows = Rows::default();
        for b in &batches {
            let ids = column::<UInt64Array>(b, "id")?;
            let kinds = column::<StringArray>(b, "event_type")?;
            let authors = column::<StringArray>(b, "author")?;
            let ts = column::<Int64Array>(b, "ts")?;
            for i in 0..b.num_rows() {
                let kind = kinds
                    .value(i)
                    .parse::<EventType>()
                    .map_err(|_| corrupt("event_type", kinds.value(i)))?;
                let author = Did::parse(authors.value(i))
                    .ok_or_else(|| corrupt("author", authors.value(i)))?;
                rows.insert(EventId(ids.value(i)), kind, author, ts.value(i));
            }
        }
        Ok(rows)
    }

    fn rows(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    fn batch(&self, records: &[VectorRecord]) -> Result<RecordBatch, IndexError> {
        let ids = UInt64Array::from_iter_values(records.iter().map(|r| r.id.0));
        let kinds = StringArray::from_iter_values(records.iter().map(|r| r.kind.as_str()));
        let authors = StringArray::from_iter_values(records.iter().map(|r| r.author.to_string()));
        let ts = Int64Array::from_iter_values(records.iter().map(|r| r.ts));
        let flat: Vec<f32> = records
            .iter()
            .flat_map(|r| r.vector.as_slice().iter().copied())
            .collect();
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let vectors = FixedSizeListArray::try_new(
            item,
            EMBEDDING_DIM as i32,
            Arc::new(Float32Array::from(flat)),
            None,
        )
        .map_err(arrow("building vectors"))?;
        RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(ids),
                Arc::new(kinds),
                Arc::new(authors),
                Arc::new(ts),
                Arc::new(vectors),
            ],
        )
        .map_err(arrow("building a batch"))
    }

    fn reader(&self, batch: RecordBatch) -> Box<dyn RecordBatchReader + Send> {
        Box::new(RecordBatchIterator::new(
            vec![Ok(batch)],
            self.schema.clone(),
        ))
    }

    /// Runs maintenance when the write count, the rows written or the age
    /// says so.
    async fn after_write(&self, m: &mut Maintenance, rows: usize) -> Result<(), IndexError> {
        m.writes += 1;
        m.rows = m.rows.saturating_add(rows);
        if m.writes >= self.cfg.optimize_writes
            || m.rows >= self.cfg.optimize_rows
            || m.last.elapsed() >= self.cfg.optimize_age
        {
            self.maintain(m).await?;
        }
        Ok(())
    }

    /// Compacts, trains or extends the indexes, and prunes old versions.
    pub async fn optimize(&self) -> Result<(), IndexError> {
        let mut m = self.write.lock().await;
        self.maintain(&mut m).await
    }

    async fn maintain(&self, m: &mut Maintenance) -> Result<(), IndexError> {
        let len = self.rows().len();
        self.table
            .optimize(OptimizeAction::Compact {
                options: CompactionOptions::default(),
                remap_options: None,
            })
            .await
            .map_err(backend("compacting"))?;
        let grown = m.trained as f64 * self.cfg.retrain_growth.max(1.0);
        let train = if self.indexed.load(Ordering::Acquire) {
            len as f64 >= grown
        } else {
            len >= self.cfg.index_min_rows.max(1)
        };
        if train {
            self.build_indexes(len).await?;
            // Training's buffers are freed but would stay resident.
            feed_core::sys::trim_heap();
            m.trained = len;
            write_number(&self.dir, TRAINED_FILE, len as u64)?;
        } else if len > 0 {
            self.table
                .optimize(OptimizeAction::Index(OptimizeOptions::default()))
                .await
                .map_err(backend("extending the indexes"))?;
        }
        let older_than = lancedb::table::Duration::from_std(self.cfg.keep_versions)
            .map_err(|e| IndexError::Backend(format!("keep_versions: {e}")))?;
        self.table
            .optimize(OptimizeAction::Prune {
                older_than: Some(older_than),
                delete_unverified: Some(false),
                error_if_tagged_old_versions: Some(false),
            })
            .await
            .map_err(backend("pruning versions"))?;
        m.writes = 0;
        m.rows = 0;
        m.last = Instant::now();
        Ok(())
    }

    async fn build_indexes(&self, len: usize) -> Result<(), IndexError> {
        let scalar = [
            ("id", Index::BTree(BTreeIndexBuilder::default())),
            ("ts", Index::BTree(BTreeIndexBuilder::default())),
            ("author", Index::BTree(BTreeIndexBuilder::default())),
            ("event_type", Index::Bitmap(BitmapIndexBuilder::default())),
        ];
        for (column, index) in scalar {
            self.table
                .create_index(&[column], index)
                .replace(true)
                .execute()
                .await
                .map_err(backend("building a scalar index"))?;
        }
        let partitions = (len as u32 / self.cfg.partition_rows.max(1)).max(1);
        let ann = IvfHnswSqIndexBuilder::default()
            .distance_type(DistanceType::Cosine)
            .num_partitions(partitions);
        self.table
            .create_index(&["vector"], Index::IvfHnswSq(ann))
            .replace(true)
            .execute()
            .await
            .map_err(backend("training the vector index"))?;
        self.indexed.store(true, Ordering::Release);
        Ok(())
    }

    /// fsyncs every file and directory of the table.
    fn sync_table(&self) -> Result<(), IndexError> {
        sync_tree(&self.dir.join(format!("{TABLE}.lance")))
    }

    /// Runs one search; hits rescored from stored vectors.
    async fn run_search(
        &self,
        query: &Embedding,
        filter: Option<&DfExpr>,
        limit: usize,
        plan: Plan,
    ) -> Result<Vec<Hit>, IndexError> {
        let mut q = self
            .table
            .query()
            .nearest_to(query.as_slice())
            .map_err(backend("building a search"))?
            .distance_type(DistanceType::Cosine)
            .select(Select::columns(&["id", "vector"]))
            .limit(limit);
        if let Some(f) = filter {
            q = q.only_if_expr(f.clone());
        }
        q = match plan {
            Plan::Exact => q.bypass_vector_index(),
            Plan::Graph { nprobes } => {
                // HNSW refuses an ef below the candidates it is asked for.
                let wanted = limit.saturating_mul(self.cfg.refine_factor.max(1) as usize);
                q.nprobes(nprobes.max(1))
                    .map_err(backend("nprobes"))?
                    .ef(self.cfg.ef.max(wanted))
                    .refine_factor(self.cfg.refine_factor)
            }
        };
        let batches: Vec<RecordBatch> = q
            .execute()
            .await
            .map_err(backend("searching"))?
            .try_collect()
            .await
            .map_err(backend("searching"))?;
        let mut hits = Vec::with_capacity(limit);
        for b in &batches {
            let ids = column::<UInt64Array>(b, "id")?;
            let vectors = column::<FixedSizeListArray>(b, "vector")?;
            let values = vectors
                .values()
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(|| corrupt("vector", "not f32"))?;
            for i in 0..b.num_rows() {
                let start = vectors.value_offset(i) as usize;
                let v = values
                    .values()
                    .get(start..start + EMBEDDING_DIM)
                    .ok_or_else(|| corrupt("vector", "short"))?;
                hits.push(Hit {
                    id: EventId(ids.value(i)),
                    score: dot(query.as_slice(), v),
                });
            }
        }
        rank(&mut hits);
        Ok(hits)
    }
}

/// How one search runs.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// A flat scan of the rows passing the filter.
    Exact,
    /// Through the ANN index, the filter applied before or after it.
    Graph { nprobes: usize },
}

fn corrupt(what: &str, value: &str) -> IndexError {
    IndexError::Backend(format!("unreadable {what} in the table: {value:?}"))
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, IndexError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| IndexError::Backend(format!("column {name} missing or mistyped")))
}

/// The filter as a typed expression (`None` when it restricts nothing).
fn filter_expr(f: &VectorFilter) -> Option<DfExpr> {
    let mut parts: Vec<DfExpr> = Vec::new();
    if let Some(types) = &f.types {
        let list = types.iter().map(|t| lit(t.as_str())).collect();
        parts.push(col("event_type").in_list(list, false));
    }
    if let Some(authors) = &f.authors {
        let list = authors.iter().map(|a| lit(a.to_string())).collect();
        parts.push(col("author").in_list(list, false));
    }
    if let Some(s) = f.since {
        parts.push(col("ts").gt_eq(lit(s)));
    }
    if let Some(u) = f.until {
        parts.push(col("ts").lt_eq(lit(u)));
    }
    parts.into_iter().reduce(|a, b| a.and(b))
}

fn ids_expr(ids: &[EventId]) -> DfExpr {
    col("id").in_list(ids.iter().map(|i| lit(i.0)).collect(), false)
}

/// fsyncs every file under `root`, then every directory bottom-up.
fn sync_tree(root: &Path) -> Result<(), IndexError> {
    if !root.exists() {
        return Ok(());
    }
    let mut dirs = vec![root.to_path_buf()];
    let mut i = 0;
    while let Some(d) = dirs.get(i).cloned() {
        i += 1;
        for entry in fs::read_dir(&d).map_err(io(format!("listing {}", d.display())))? {
            let entry = entry.map_err(io(format!("listing {}", d.display())))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(io(format!("inspecting {}", path.display())))?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                match File::open(&path) {
                    Ok(f) => f
                        .sync_all()
                        .map_err(io(format!("syncing {}", path.display())))?,
                    // Pruned between listing and opening.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(format!("opening {}", path.display()))(e)),
                }
            }
        }
    }
    for d in dirs.iter().rev() {
        sync_dir(d)?;
    }
    if let Some(parent) = root.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(d: &Path) -> Result<(), IndexError> {
    File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", d.display())))
}

/// Keeps the last record of each id, in first-seen order.
fn last_per_id(records: Vec<VectorRecord>) -> Vec<VectorRecord> {
    let mut at: HashMap<EventId, usize> = HashMap::with_capacity(records.len());
    let mut out: Vec<VectorRecord> = Vec::with_capacity(records.len());
    for r in records {
        match at.get(&r.id) {
            Some(&i) => out[i] = r,
            None => {
                at.insert(r.id, out.len());
                out.push(r);
            }
        }
    }
    out
}

#[async_trait]
impl VectorIndex for LanceVectorIndex {
    async fn upsert(&self, records: Vec<VectorRecord>) -> Result<(), IndexError> {
        if records.is_empty() {
            return Ok(());
        }
        let records = last_per_id(records);
        let batch = self.batch(&records)?;
        let mut m = self.write.lock().await;
        let all_new = {
            let rows = self.rows();
            records.iter().all(|r| !rows.contains(r.id))
        };
        if all_new {
            self.table
                .add(batch)
                .execute()
                .await
                .map_err(backend("appending"))?;
        } else {
            let mut merge = self.table.merge_insert(&["id"]);
            merge
                .when_matched_update_all(None)
                .when_not_matched_insert_all();
            merge
                .execute(self.reader(batch))
                .await
                .map_err(backend("upserting"))?;
        }
        {
            let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
            for r in &records {
                rows.insert(r.id, r.kind, r.author, r.ts);
            }
        }
        self.after_write(&mut m, records.len()).await
    }

    async fn remove(&self, ids: &[EventId]) -> Result<(), IndexError> {
        let mut m = self.write.lock().await;
        let present: Vec<EventId> = {
            let rows = self.rows();
            ids.iter().copied().filter(|i| rows.contains(*i)).collect()
        };
        if present.is_empty() {
            return Ok(());
        }
        self.table
            .delete(&ids_expr(&present))
            .await
            .map_err(backend("deleting"))?;
        {
            let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
            for id in &present {
                rows.remove(*id);
            }
        }
        self.after_write(&mut m, present.len()).await
    }

    async fn search(
        &self,
        query: &Embedding,
        filter: &VectorFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let (matching, total) = {
            let rows = self.rows();
            (rows.count(filter), rows.len())
        };
        if matching == 0 {
            return Ok(Vec::new());
        }
        let want = k.min(matching);
        let expr = filter_expr(filter);
        let ann = self.indexed.load(Ordering::Acquire) && matching > self.cfg.exact_max;
        if ann {
            let limit = want.max(10);
            let share = matching as f64 / total.max(1) as f64;
            if expr.is_some() && share >= self.cfg.postfilter_min {
                // Broad filter: over-fetch from the graph unfiltered and
                // filter here from the row map, so Lance reads no filter
                // columns.
                let ask = ((2 * limit) as f64 / share).ceil() as usize;
                let plan = Plan::Graph {
                    nprobes: self.cfg.nprobes,
                };
                let mut hits = self
                    .run_search(query, None, ask.min(total).max(limit), plan)
                    .await?;
                self.rows().keep_passing(filter, &mut hits);
                if hits.len() >= want {
                    hits.truncate(want);
                    return Ok(hits);
                }
            }
            let nprobes = if share < 0.05 {
                self.cfg.nprobes_selective
            } else {
                self.cfg.nprobes
            };
            let plan = Plan::Graph { nprobes };
            let mut hits = self.run_search(query, expr.as_ref(), limit, plan).await?;
            if hits.len() >= want {
                hits.truncate(want);
                return Ok(hits);
            }
            // The graph ran out of rows passing the filter: answer exactly.
        }
        let mut hits = self
            .run_search(query, expr.as_ref(), want + TIE_MARGIN, Plan::Exact)
            .await?;
        hits.truncate(want);
        Ok(hits)
    }

    async fn ids(&self) -> Result<Vec<EventId>, IndexError> {
        Ok(self.rows().ids())
    }

    async fn len(&self) -> Result<usize, IndexError> {
        Ok(self.rows().len())
    }

    async fn flush(&self) -> Result<(), IndexError> {
        let _m = self.write.lock().await;
        self.sync_table()
    }

    fn mode(&self) -> SearchMode {
        if self.indexed.load(Ordering::Acquire) {
            SearchMode::Approximate
        } else {
            SearchMode::Exact
        }
    }

    async fn checkpoint(&self) -> Result<u64, IndexError> {
        Ok(read_number(&self.dir.join(CHECKPOINT_FILE))?.unwrap_or(0))
    }

    async fn set_checkpoint(&self, seq: u64) -> Result<(), IndexError> {
        let _m = self.write.lock().await;
        // The vectors first, then the number that says they are there.
        self.sync_table()?;
        write_number(&self.dir, CHECKPOINT_FILE, seq)
    }
}

/// The decimal number in the file at `path`; `None` when there is no file.
fn read_number(path: &Path) -> Result<Option<u64>, IndexError> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            IndexError::Backend(format!("{} holds {text:?}, not a number", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

/// Replaces the file `name` in `dir` with the decimal `n`, atomically:
/// written and fsynced beside it, renamed over it, the directory fsynced.
fn write_number(dir: &Path, name: &str, n: u64) -> Result<(), IndexError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    writeln!(f, "{n}")
        .and_then(|_| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, &path).map_err(io(format!("renaming {}", tmp.display())))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_records_of_an_id_win() {
        let v = Embedding::new(vec![1.0; EMBEDDING_DIM]).expect("vector");
        let rec = |id: u64, ts: i64| VectorRecord {
            id: EventId(id),
            kind: EventType::Post,
            author: Did([0; 32]),
            ts,
            vector: v.clone(),
        };
        let out = last_per_id(vec![rec(2, 1), rec(1, 1), rec(2, 9)]);
        let got: Vec<(u64, i64)> = out.iter().map(|r| (r.id.0, r.ts)).collect();
        assert_eq!(got, vec![(2, 9), (1, 1)]);
    }

    #[test]
    fn an_unrestricted_filter_has_no_expression() {
        assert!(filter_expr(&VectorFilter::default()).is_none());
        let f = VectorFilter {
            since: Some(3),
            ..VectorFilter::default()
        };
        assert!(filter_expr(&f).is_some());
    }
}
