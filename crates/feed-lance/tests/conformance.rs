//! LanceVectorIndex passes the vector suite — flat (exact) before an ANN
//! index exists, through IVF_HNSW_SQ once one does — and reaches
//! recall@10 ≥ 0.95 at every filter selectivity.

use feed_conformance::dirs::DirIndexes;
use feed_conformance::{assert_recall, vector_index_suite, IndexFactory};
use feed_core::{SearchMode, VectorIndex};
use feed_lance::{LanceConfig, LanceVectorIndex};

/// Fresh LanceDB indexes with `config`, each in its own directory.
fn indexes(config: LanceConfig) -> DirIndexes<LanceVectorIndex> {
    DirIndexes::new(
        Box::new(move |dir| {
            let config = config.clone();
            Box::pin(async move { LanceVectorIndex::open(&dir, config).await })
        }),
        LanceVectorIndex::dir,
    )
    .expect("temp dir")
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[test]
fn exact_answers_pass_the_suite() {
    if let Err(e) = vector_index_suite(&indexes(LanceConfig::default()), cases()) {
        panic!("{e}");
    }
}

#[test]
fn exact_answers_pass_the_suite_without_io_uring() {
    // The reads a kernel without io_uring (or a container forbidding it)
    // gets; the test above reads through io_uring where it can.
    let cfg = LanceConfig {
        io_uring: false,
        ..LanceConfig::default()
    };
    if let Err(e) = vector_index_suite(&indexes(cfg), cases()) {
        panic!("{e}");
    }
}

#[test]
fn ann_answers_with_frequent_maintenance_pass_the_suite() {
    // An ANN index as soon as there are rows, maintenance every third
    // write, and every filter through the graph.
    let cfg = LanceConfig {
        index_min_rows: 1,
        exact_max: 0,
        optimize_writes: 3,
        ..LanceConfig::default()
    };
    if let Err(e) = vector_index_suite(&indexes(cfg), cases()) {
        panic!("{e}");
    }
}

/// Posts `ids` (id `i + 1`, `ts` `i`, one author) with the next vectors of
/// `src`.
fn posts(
    src: &mut feed_conformance::EmbeddingLike,
    ids: std::ops::Range<u64>,
) -> Vec<feed_core::VectorRecord> {
    ids.map(|i| feed_core::VectorRecord {
        id: feed_core::EventId(i + 1),
        kind: feed_core::EventType::Post,
        author: feed_core::Did([0; 32]),
        ts: i as i64,
        vector: src.next_vector(),
    })
    .collect()
}

#[test]
fn recall_at_10_is_at_least_095_with_the_ann_index() {
    let n = std::env::var("FEED_RECALL_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // Every filter through the graph (none answered flat).
    let cfg = LanceConfig {
        index_min_rows: n / 2,
        exact_max: 0,
        optimize_writes: 4,
        ..LanceConfig::default()
    };
    assert_recall(&indexes(cfg), n, 50, 0.95);
}

/// Maintenance counts rows as well as writes: one write of 2,500 rows
/// reaches `optimize_rows` and trains the index, where counting writes
/// alone (a maintenance run every 64) left it untrained.
#[test]
fn one_large_write_reaches_maintenance_by_its_rows() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cfg = LanceConfig {
            index_min_rows: 2_000,
            optimize_rows: 2_000,
            ..LanceConfig::default()
        };
        let index = indexes(cfg).create().await.expect("create");
        let mut src = feed_conformance::EmbeddingLike::new(11);
        index
            .upsert(posts(&mut src, 0..1_000))
            .await
            .expect("upsert");
        assert_eq!(
            index.mode(),
            SearchMode::Exact,
            "1,000 rows: no maintenance yet"
        );
        index
            .upsert(posts(&mut src, 1_000..2_500))
            .await
            .expect("upsert");
        assert_eq!(
            index.mode(),
            SearchMode::Approximate,
            "2,500 rows in two writes: maintenance ran and trained"
        );
    });
}

#[test]
fn the_ann_index_is_built_once_the_table_is_big_enough_and_survives_reopen() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cfg = LanceConfig {
            index_min_rows: 2_000,
            exact_max: 0,
            optimize_writes: 2,
            ..LanceConfig::default()
        };
        let factory = indexes(cfg);
        let index = factory.create().await.expect("create");
        let mut src = feed_conformance::EmbeddingLike::new(7);
        let first = posts(&mut src, 0..1_000);
        index.upsert(first).await.expect("upsert");
        assert_eq!(index.mode(), SearchMode::Exact);
        let second = posts(&mut src, 1_000..2_500);
        index.upsert(second).await.expect("upsert");
        assert_eq!(
            index.mode(),
            SearchMode::Approximate,
            "trained at 2,000 rows"
        );
        index.flush().await.expect("flush");
        let index = factory.reopen(index).await.expect("reopen");
        assert_eq!(index.mode(), SearchMode::Approximate);
        assert_eq!(index.len().await.expect("len"), 2_500);
        // k = 100 (the spec's maximum) through the graph: 100 hits, best first.
        let q = src.next_vector();
        let hits = index
            .search(&q, &feed_core::VectorFilter::default(), 100)
            .await
            .expect("search with k = 100");
        assert_eq!(hits.len(), 100);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        // Trained on the 2,500 rows held then; trained again once they
        // have doubled, not before.
        let trained = |index: &LanceVectorIndex| {
            std::fs::read_to_string(index.dir().join(feed_lance::TRAINED_FILE))
                .expect("trained file")
                .trim()
                .to_string()
        };
        assert_eq!(trained(&index), "2500");
        let third = posts(&mut src, 2_500..4_900);
        index.upsert(third).await.expect("upsert");
        index.optimize().await.expect("optimize");
        assert_eq!(trained(&index), "2500", "4,900 rows: not yet doubled");
        let fourth = posts(&mut src, 4_900..5_000);
        index.upsert(fourth).await.expect("upsert");
        index.optimize().await.expect("optimize");
        assert_eq!(trained(&index), "5000", "trained again at 5,000 rows");
        let index = factory.reopen(index).await.expect("reopen");
        let hits = index
            .search(&q, &feed_core::VectorFilter::default(), 100)
            .await
            .expect("search after training again");
        assert_eq!(hits.len(), 100);
    });
}
