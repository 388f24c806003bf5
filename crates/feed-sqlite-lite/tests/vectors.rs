//! UsearchVectorIndex passes the vector suite — answering exactly from
//! SQLite, and through flat and graph bases, with background merges and
//! with merges inside writes — and reaches recall@10 ≥ 0.95 both ways.

use feed_conformance::dirs::DirIndexes;
use feed_conformance::{assert_recall, vector_index_suite};
use feed_core::synth::EmbeddingLike;
use feed_core::{Did, EventId, EventType, VectorFilter, VectorIndex, VectorRecord};
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
fn flat_answers_with_background_merges_pass_the_suite() {
    run(UsearchConfig {
        exact_max: 0,
        merge_min: 6,
        ..UsearchConfig::default()
    });
}

#[test]
fn flat_answers_with_inline_merges_pass_the_suite() {
    run(UsearchConfig {
        exact_max: 0,
        merge_min: 3,
        background_merge: false,
        ..UsearchConfig::default()
    });
}

#[test]
fn graph_answers_with_background_merges_pass_the_suite() {
    run(UsearchConfig {
        exact_max: 0,
        merge_min: 6,
        flat_max: 0,
        ..UsearchConfig::default()
    });
}

#[test]
fn graph_answers_with_inline_merges_pass_the_suite() {
    run(UsearchConfig {
        exact_max: 0,
        merge_min: 3,
        background_merge: false,
        flat_max: 0,
        ..UsearchConfig::default()
    });
}

/// A base that outgrows `flat_max` turns from a flat file into a graph
/// (and its delta with it), and both answer the suite's searches: bases
/// of up to 20 vectors are flat here.
#[test]
fn bases_switching_from_flat_to_graph_pass_the_suite() {
    run(UsearchConfig {
        exact_max: 0,
        merge_min: 4,
        background_merge: false,
        flat_max: 20,
        ..UsearchConfig::default()
    });
}

fn recall_size() -> (usize, usize) {
    let n = std::env::var("FEED_RECALL_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let queries = std::env::var("FEED_RECALL_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    (n, queries)
}

#[test]
fn recall_at_10_is_at_least_095_flat() {
    let (n, queries) = recall_size();
    assert_recall(&indexes(UsearchConfig::default()), n, queries, 0.95);
}

#[test]
fn recall_at_10_is_at_least_095_graph() {
    let (n, queries) = recall_size();
    let graph = UsearchConfig {
        flat_max: 0,
        ..UsearchConfig::default()
    };
    assert_recall(&indexes(graph), n, queries, 0.95);
}

fn base_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vectors-"))
        .collect();
    names.sort();
    names
}

/// The index holds `segments` codes (base, delta) in the base file
/// `files`, and answers [`assert_self_hits`].
async fn assert_state(
    ix: &UsearchVectorIndex,
    segments: (usize, usize),
    files: &[&str],
    records: &[VectorRecord],
    gone: &[EventId],
) {
    assert_eq!(ix.segments(), segments);
    assert_eq!(base_files(ix.dir()), files);
    assert_self_hits(ix, records, gone).await;
}

/// `n` posts with embedding-like vectors from `seed`.
fn posts(seed: u64, n: u64) -> Vec<VectorRecord> {
    let mut source = EmbeddingLike::new(seed);
    (1..=n)
        .map(|i| VectorRecord {
            id: EventId(i << 40),
            kind: EventType::Post,
            author: Did([i as u8; 32]),
            ts: i as i64,
            vector: source.next_vector(),
        })
        .collect()
}

/// Every search through the index (never exact), merging inside the write
/// that makes a merge due (4 changes at least).
fn inline_merges() -> UsearchConfig {
    UsearchConfig {
        exact_max: 0,
        merge_min: 4,
        background_merge: false,
        ..UsearchConfig::default()
    }
}

/// Each vector finds itself first; removed ones are never found.
async fn assert_self_hits(ix: &UsearchVectorIndex, records: &[VectorRecord], gone: &[EventId]) {
    for r in records {
        let hits = ix
            .search(&r.vector, &VectorFilter::default(), 3)
            .await
            .expect("search");
        assert!(hits.iter().all(|h| !gone.contains(&h.id)), "{hits:?}");
        if !gone.contains(&r.id) {
            assert_eq!(hits.first().map(|h| h.id), Some(r.id), "{hits:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_outgrowing_flat_max_becomes_a_graph_and_reopens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = UsearchConfig {
        flat_max: 20,
        ..inline_merges()
    };
    let records = posts(7, 24);
    let ix = UsearchVectorIndex::open(dir.path(), cfg.clone()).expect("open");
    ix.upsert(records[..12].to_vec()).await.expect("upsert");
    assert_state(&ix, (12, 0), &["vectors-1.bits"], &records[..12], &[]).await;
    ix.upsert(records[12..].to_vec()).await.expect("upsert");
    assert_state(&ix, (24, 0), &["vectors-2.usearch"], &records, &[]).await;

    // Two removals: a stale base row each, not yet enough for a merge.
    let gone = [records[3].id, records[20].id];
    ix.remove(&gone).await.expect("remove");
    assert_eq!(ix.segments(), (24, 0));
    assert_self_hits(&ix, &records, &gone).await;
    drop(ix);

    let ix = UsearchVectorIndex::open(dir.path(), cfg).expect("reopen");
    assert_eq!(ix.segments(), (24, 0));
    assert_eq!(ix.len().await.expect("len"), 22);
    assert_self_hits(&ix, &records, &gone).await;
}

/// A damaged flat base is derived data: the index reopens without it and
/// writes a new one from `vectors.sqlite`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_flat_base_is_rebuilt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = inline_merges();
    let records = posts(9, 16);
    let ix = UsearchVectorIndex::open(dir.path(), cfg.clone()).expect("open");
    ix.upsert(records[..12].to_vec()).await.expect("upsert");
    assert_eq!(base_files(dir.path()), ["vectors-1.bits"]);
    drop(ix);
    let base = dir.path().join("vectors-1.bits");
    let bytes = std::fs::read(&base).expect("read");
    std::fs::write(&base, &bytes[..bytes.len() / 2]).expect("cut short");

    // Opening finds the base unusable, so all 12 rows form the delta, which
    // is due for a merge at once (inline here): a new base replaces it.
    let ix = UsearchVectorIndex::open(dir.path(), cfg).expect("reopen");
    assert_state(&ix, (12, 0), &["vectors-2.bits"], &records[..12], &[]).await;
    ix.upsert(records[12..].to_vec()).await.expect("upsert");
    assert_state(&ix, (16, 0), &["vectors-3.bits"], &records, &[]).await;
}

/// A `k` far beyond the rows held returns every row passing the filter,
/// best first, through a flat base and through a graph, for no filter, a
/// broad one (every row) and a narrower one; it never sizes a candidate
/// list by `k`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_k_returns_every_passing_row() {
    for flat_max in [1_000, 10] {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = UsearchConfig {
            flat_max,
            ..inline_merges()
        };
        let records = posts(11, 40);
        let ix = UsearchVectorIndex::open(dir.path(), cfg).expect("open");
        ix.upsert(records.clone()).await.expect("upsert");
        ix.flush().await.expect("flush");
        let q = &records[0].vector;
        let since_tenth = VectorFilter {
            since: Some(31),
            ..VectorFilter::default()
        };
        let every = VectorFilter {
            types: Some(vec![EventType::Post]),
            ..VectorFilter::default()
        };
        for (filter, want) in [
            (VectorFilter::default(), 40),
            (every, 40),
            (since_tenth, 10),
        ] {
            let hits = ix.search(q, &filter, usize::MAX).await.expect("search");
            let mut got: Vec<EventId> = hits.iter().map(|h| h.id).collect();
            got.sort();
            let passing: Vec<EventId> = records
                .iter()
                .filter(|r| filter.matches(r.kind, &r.author, r.ts))
                .map(|r| r.id)
                .collect();
            assert_eq!(passing.len(), want);
            assert_eq!(got, passing, "flat_max {flat_max}, {filter:?}");
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }
}
