//! UsearchVectorIndex passes the vector suite — answering exactly from
//! SQLite, through the graph with background merges, and through the graph
//! with merges inside writes — and reaches recall@10 ≥ 0.95.

use feed_conformance::dirs::DirIndexes;
use feed_conformance::{assert_recall, vector_index_suite};
use feed_sqlite_lite::{UsearchConfig, UsearchVectorIndex};

/// Fresh usearch indexes with `config`, each in its own directory.
fn indexes(config: UsearchConfig) -> DirIndexes<UsearchVectorIndex> {
    DirIndexes::new(
        Box::new(move |dir| {
            let config = config.clone();
            Box::pin(async move { UsearchVectorIndex::open(&dir, config) })
        }),
        UsearchVectorIndex::dir,
    )
    .expect("temp dir")
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn run(config: UsearchConfig) {
    if let Err(e) = vector_index_suite(&indexes(config), cases()) {
        panic!("{e}");
    }
}

#[test]
fn exact_answers_pass_the_suite() {
    run(UsearchConfig::default());
}

#[test]
fn graph_answers_with_background_merges_pass_the_suite() {
    run(UsearchConfig {
        exact_max: 0,
        merge_min: 6,
        ..UsearchConfig::default()
    });
}

#[test]
fn graph_answers_with_inline_merges_pass_the_suite() {
    run(UsearchConfig {
        exact_max: 0,
        merge_min: 3,
        background_merge: false,
        ..UsearchConfig::default()
    });
}

#[test]
fn recall_at_10_is_at_least_095() {
    let n = std::env::var("FEED_RECALL_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let queries = std::env::var("FEED_RECALL_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    assert_recall(&indexes(UsearchConfig::default()), n, queries, 0.95);
}
