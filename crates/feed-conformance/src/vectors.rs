//! `vector_index_suite`: model-based checks of a [`VectorIndex`] against
//! brute force, and a recall@10 check on a fixed-seed data set.

use std::collections::BTreeMap;

use async_trait::async_trait;
pub use feed_core::rng::Rng;
use feed_core::{
    dot, Did, Embedding, EventId, EventType, IndexError, SearchMode, VectorFilter, VectorIndex,
    VectorRecord, EMBEDDING_DIM,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

pub use feed_core::synth::EmbeddingLike;

use crate::events::runtime;
use crate::gen::{did, TS_SLOTS};
use crate::ranking::{compare_ranked, recall};

/// Makes vector indexes for the suite.
#[async_trait]
pub trait IndexFactory: Send + Sync {
    /// The backend.
    type Index: VectorIndex + 'static;
    /// A new, empty index.
    async fn create(&self) -> Result<Self::Index, IndexError>;
    /// Closes and reopens `index` from where it persists (in memory: unchanged).
    async fn reopen(&self, index: Self::Index) -> Result<Self::Index, IndexError>;
}

/// A vector from a small seed, with components in {-1, 0, 1} so that
/// different seeds often score the same against a query (exact ties).
pub fn seeded_vector(seed: u8) -> Embedding {
    let mut rng = Rng::new(seed as u64 + 1);
    let mut v: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|_| match rng.next_u64() % 8 {
            0 => 1.0,
            1 => -1.0,
            _ => 0.0,
        })
        .collect();
    v[seed as usize % EMBEDDING_DIM] = 2.0;
    Embedding::new(v).unwrap_or_else(|_| unreachable!("non-zero by construction"))
}

/// One generated index operation.
#[derive(Clone, Debug)]
pub enum VecOp {
    /// `(id, post?, author, ts slot, vector seed)` rows.
    Upsert(Vec<(u8, bool, u8, u8, u8)>),
    /// Ids to remove.
    Remove(Vec<u8>),
    /// Query seed, filter, k.
    Search(u8, VecFilterGen, u8),
    /// Close and reopen.
    Reopen,
}

/// A generated search filter.
#[derive(Clone, Debug)]
pub struct VecFilterGen {
    types: Option<Vec<bool>>,
    authors: Option<Vec<u8>>,
    since: Option<u8>,
    until: Option<u8>,
}

impl VecFilterGen {
    fn filter(&self) -> VectorFilter {
        VectorFilter {
            types: self
                .types
                .as_ref()
                .map(|v| v.iter().map(|&p| kind_of(p)).collect()),
            authors: self
                .authors
                .as_ref()
                .map(|v| v.iter().map(|&a| did(a)).collect()),
            since: self.since.map(|i| TS_SLOTS[i as usize]),
            until: self.until.map(|i| TS_SLOTS[i as usize]),
        }
    }
}

fn kind_of(post: bool) -> EventType {
    if post {
        EventType::Post
    } else {
        EventType::Mention
    }
}

fn filter_gen() -> impl Strategy<Value = VecFilterGen> {
    let slot = 0u8..TS_SLOTS.len() as u8;
    (
        proptest::option::weighted(0.3, proptest::collection::vec(any::<bool>(), 0..3)),
        proptest::option::weighted(0.4, proptest::collection::vec(0u8..4, 0..3)),
        proptest::option::weighted(0.3, slot.clone()),
        proptest::option::weighted(0.3, slot),
    )
        .prop_map(|(types, authors, since, until)| VecFilterGen {
            types,
            authors,
            since,
            until,
        })
}

fn vec_ops() -> impl Strategy<Value = Vec<VecOp>> {
    let row = (
        0u8..40,
        proptest::bool::weighted(0.8),
        0u8..4,
        0u8..12,
        0u8..24,
    );
    let op = prop_oneof![
        4 => proptest::collection::vec(row, 1..12).prop_map(VecOp::Upsert),
        1 => proptest::collection::vec(0u8..40, 1..5).prop_map(VecOp::Remove),
        4 => (0u8..24, filter_gen(), 0u8..15).prop_map(|(q, f, k)| VecOp::Search(q, f, k)),
        1 => Just(VecOp::Reopen),
    ];
    proptest::collection::vec(op, 1..14)
}

type Model = BTreeMap<EventId, (EventType, Did, i64, Embedding)>;

fn err(what: &'static str) -> impl Fn(IndexError) -> String {
    move |e| format!("{what}: index error: {e}")
}

async fn check_search<I: VectorIndex>(
    index: &I,
    model: &Model,
    q: &Embedding,
    filter: &VectorFilter,
    k: usize,
) -> Result<(), String> {
    let all: Vec<(EventId, f32)> = model
        .iter()
        .filter(|(_, (t, a, ts, _))| filter.matches(*t, a, *ts))
        .map(|(id, (_, _, _, v))| (*id, dot(q.as_slice(), v.as_slice())))
        .collect();
    let got: Vec<(EventId, f32)> = index
        .search(q, filter, k)
        .await
        .map_err(err("search"))?
        .into_iter()
        .map(|h| (h.id, h.score))
        .collect();
    match index.mode() {
        SearchMode::Exact => compare_ranked(&all, &got, k),
        SearchMode::Approximate => {
            // Filter, count, scores and order must still hold; which
            // neighbours are found is the recall check's business.
            if got.len() != k.min(all.len()) {
                return Err(format!("{} hits, want {}", got.len(), k.min(all.len())));
            }
            let mut as_ref = Vec::with_capacity(got.len());
            for (id, _) in &got {
                match all.iter().find(|(x, _)| x == id) {
                    Some(r) => as_ref.push(*r),
                    None => return Err(format!("{id} does not pass the filter or is not indexed")),
                }
            }
            compare_ranked(&as_ref, &got, k)
        }
    }
}

async fn run_ops<F: IndexFactory>(factory: &F, ops: &[VecOp]) -> Result<(), String> {
    let mut index = factory.create().await.map_err(err("create"))?;
    let mut model = Model::new();
    let mut checkpoint = 0u64;
    for (step, op) in ops.iter().enumerate() {
        let ctx = |e: String| format!("step {step} ({op:?}): {e}");
        match op {
            VecOp::Upsert(rows) => {
                let recs: Vec<VectorRecord> = rows
                    .iter()
                    .map(|&(id, post, a, ts, seed)| VectorRecord {
                        id: EventId(id as u64 + 1),
                        kind: kind_of(post),
                        author: did(a),
                        ts: TS_SLOTS[ts as usize],
                        vector: seeded_vector(seed),
                    })
                    .collect();
                for r in &recs {
                    model.insert(r.id, (r.kind, r.author, r.ts, r.vector.clone()));
                }
                index
                    .upsert(recs)
                    .await
                    .map_err(err("upsert"))
                    .map_err(ctx)?;
                // The write path records how far it got after each write.
                checkpoint = step as u64 * 1_000 + rows.len() as u64;
                index
                    .set_checkpoint(checkpoint)
                    .await
                    .map_err(err("set_checkpoint"))
                    .map_err(ctx)?;
            }
            VecOp::Remove(ids) => {
                let ids: Vec<EventId> = ids.iter().map(|&i| EventId(i as u64 + 1)).collect();
                for id in &ids {
                    model.remove(id);
                }
                index
                    .remove(&ids)
                    .await
                    .map_err(err("remove"))
                    .map_err(ctx)?;
            }
            VecOp::Search(q, f, k) => {
                check_search(&index, &model, &seeded_vector(*q), &f.filter(), *k as usize)
                    .await
                    .map_err(ctx)?;
            }
            VecOp::Reopen => {
                index.flush().await.map_err(err("flush")).map_err(ctx)?;
                index = factory
                    .reopen(index)
                    .await
                    .map_err(err("reopen"))
                    .map_err(ctx)?;
            }
        }
        let ids = index.ids().await.map_err(err("ids")).map_err(ctx)?;
        let want: Vec<EventId> = model.keys().copied().collect();
        if ids != want {
            return Err(ctx(format!("ids() {ids:?}, want {want:?}")));
        }
        let cp = index
            .checkpoint()
            .await
            .map_err(err("checkpoint"))
            .map_err(ctx)?;
        if cp != checkpoint {
            return Err(ctx(format!("checkpoint() {cp}, want {checkpoint}")));
        }
        let len = index.len().await.map_err(err("len")).map_err(ctx)?;
        if len != model.len() {
            return Err(ctx(format!("len() {len}, want {}", model.len())));
        }
        check_search(
            &index,
            &model,
            &seeded_vector(0),
            &VectorFilter::default(),
            10,
        )
        .await
        .map_err(ctx)?;
    }
    Ok(())
}

/// Runs the model-based vector suite.
pub fn vector_index_suite<F: IndexFactory>(factory: &F, cases: u32) -> Result<(), String> {
    let rt = runtime();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(&vec_ops(), |ops| {
        rt.block_on(run_ops(factory, &ops))
            .map_err(TestCaseError::fail)
    }) {
        Ok(()) => Ok(()),
        Err(TestError::Fail(why, ops)) => Err(format!(
            "vector conformance failure: {why}\nminimal operations:\n{ops:#?}"
        )),
        Err(e) => Err(format!("vector suite aborted: {e}")),
    }
}

/// Recall@10 of one filter setting over a fixed-seed data set.
#[derive(Clone, Debug)]
pub struct RecallReport {
    /// The filter, in words.
    pub filter: &'static str,
    /// Share of rows the filter lets through.
    pub selectivity: f64,
    /// Mean recall@10 against exact search.
    pub recall: f64,
    /// Searches per second, one after another on one thread (each
    /// `VectorIndex::search` call timed on its own, the exact reference
    /// not counted).
    pub qps: f64,
    /// Median time of one search, µs.
    pub p50_us: f64,
}

/// `n` embedding-like unit vectors drawn from `src`; row `i` has author
/// `i % 100` and ts `i`, so author lists and ts ranges give exact
/// selectivities.
fn draw_dataset(src: &mut EmbeddingLike, n: usize) -> Vec<VectorRecord> {
    (0..n)
        .map(|i| {
            let mut a = [0u8; 32];
            a[0] = (i % 100) as u8;
            VectorRecord {
                id: EventId(i as u64 + 1),
                kind: EventType::Post,
                author: Did(a),
                ts: i as i64,
                vector: src.next_vector(),
            }
        })
        .collect()
}

/// Builds `n` fixed-seed vectors into a fresh index and measures recall@10
/// over `queries` queries (drawn from the same distribution, another
/// seed), unfiltered, filtered by type and letting every row through, and
/// at 50% (by time and by author), 10%, 1% and 0.1% selectivity.
pub fn vector_recall(
    factory: &impl IndexFactory,
    n: usize,
    queries: usize,
) -> Result<Vec<RecallReport>, String> {
    let rt = runtime();
    rt.block_on(async {
        // Queries are the source's next draws: new points, same distribution.
        let mut src = EmbeddingLike::new(42);
        let data = draw_dataset(&mut src, n);
        let index = factory.create().await.map_err(err("create"))?;
        for chunk in data.chunks(1_000) {
            index.upsert(chunk.to_vec()).await.map_err(err("upsert"))?;
        }
        index.flush().await.map_err(err("flush"))?;
        let author = |i: u8| {
            let mut a = [0u8; 32];
            a[0] = i;
            Did(a)
        };
        let filters = [
            (1.0, "none", VectorFilter::default()),
            (
                1.0,
                "types: post (every row)",
                VectorFilter {
                    types: Some(vec![EventType::Post]),
                    ..Default::default()
                },
            ),
            (
                0.5,
                "since: the newer half",
                VectorFilter {
                    since: Some((n / 2) as i64),
                    ..Default::default()
                },
            ),
            (
                0.5,
                "authors: 50 of 100",
                VectorFilter {
                    authors: Some((0..50).map(author).collect()),
                    ..Default::default()
                },
            ),
            (
                0.1,
                "authors: 10 of 100",
                VectorFilter {
                    authors: Some((0..10).map(author).collect()),
                    ..Default::default()
                },
            ),
            (
                0.01,
                "authors: 1 of 100",
                VectorFilter {
                    authors: Some(vec![author(7)]),
                    ..Default::default()
                },
            ),
            (
                0.001,
                "until: the oldest 0.1%",
                VectorFilter {
                    until: Some((n / 1000) as i64 - 1),
                    ..Default::default()
                },
            ),
        ];
        let qs: Vec<Embedding> = (0..queries).map(|_| src.next_vector()).collect();
        let mut out = Vec::new();
        for (sel, what, f) in filters {
            let mut total = 0.0;
            // The exact answers first, then the searches back to back: a
            // brute-force pass over every vector between two searches would
            // leave them cold caches, and time the test rather than the index.
            let wants: Vec<Vec<EventId>> = qs
                .iter()
                .map(|q| {
                    let mut exact: Vec<(EventId, f32)> = data
                        .iter()
                        .filter(|r| f.matches(r.kind, &r.author, r.ts))
                        .map(|r| (r.id, q.cosine(&r.vector)))
                        .collect();
                    exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    exact.iter().take(10).map(|h| h.0).collect()
                })
                .collect();
            let mut times = Vec::with_capacity(qs.len());
            for (q, want) in qs.iter().zip(&wants) {
                let t = std::time::Instant::now();
                let hits = index.search(q, &f, 10).await.map_err(err("search"))?;
                times.push(t.elapsed());
                let got: Vec<EventId> = hits.iter().map(|h| h.id).collect();
                total += recall(want, &got);
            }
            let spent: std::time::Duration = times.iter().sum();
            times.sort();
            out.push(RecallReport {
                filter: what,
                selectivity: sel,
                recall: total / qs.len() as f64,
                qps: qs.len() as f64 / spent.as_secs_f64().max(1e-9),
                p50_us: times
                    .get(times.len() / 2)
                    .map_or(0.0, |d| d.as_secs_f64() * 1e6),
            });
        }
        Ok(out)
    })
}

/// Asserts recall@10 ≥ `min` at every selectivity of [`vector_recall`],
/// after printing each selectivity's recall, queries/s and p50 to stderr
/// (`-- --nocapture` shows them).
pub fn assert_recall(factory: &impl IndexFactory, n: usize, queries: usize, min: f64) {
    let reports = vector_recall(factory, n, queries).unwrap_or_else(|e| panic!("{e}"));
    for r in &reports {
        eprintln!(
            "{n} vectors, filter {} (selectivity {}): recall@10 {:.3}, {:.0} searches/s on one thread, p50 {:.0} µs",
            r.filter, r.selectivity, r.recall, r.qps, r.p50_us
        );
    }
    for r in &reports {
        assert!(
            r.recall >= min,
            "recall@10 {:.3} < {min} with filter {}: {reports:?}",
            r.recall,
            r.filter
        );
    }
}
