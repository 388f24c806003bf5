//! The LanceDB index's benchmark (issue 5's figures):
//!
//! 1. ingest `N` (default 100,000) embedding-like vectors in batches of
//!    1,000, flat only: time and peak RSS;
//! 2. exact (flat) search p50 on one thread, unfiltered and at 50%, 10% and
//!    1% filter selectivity — these answers are the recall reference;
//! 3. train the ANN index (IVF_HNSW_SQ) and scalar indexes: time;
//! 4. per selectivity, queries/s on two threads and recall@10 against (2);
//!    peak RSS while querying;
//! 5. a fresh table: 1,000 single-row upserts with the default maintenance
//!    schedule, then one maintenance run: fragments, data files, size.
//!
//! `cargo run --release -p feed-cli -p feed-lance --example lance_bench [-- N QUERIES]`
//! (with feed-cli: the same release build of LanceDB as `scripts/bench.sh --all`)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use feed_core::synth::EmbeddingLike;
use feed_core::{Did, Embedding, EventId, EventType, VectorFilter, VectorIndex, VectorRecord};
use feed_lance::{LanceConfig, LanceVectorIndex};

fn peak_rss_mib() -> f64 {
    feed_core::sys::peak_rss_kib().map_or(0.0, |kib| kib as f64 / 1024.0)
}

fn reset_peak() {
    feed_core::sys::reset_peak_rss();
}

fn author(i: usize) -> Did {
    let mut a = [0u8; 32];
    a[0] = (i % 100) as u8;
    Did(a)
}

fn filters() -> Vec<(&'static str, VectorFilter)> {
    let authors = |n: usize| VectorFilter {
        authors: Some((0..n).map(author).collect()),
        ..VectorFilter::default()
    };
    vec![
        ("100%", VectorFilter::default()),
        ("50%", authors(50)),
        ("10%", authors(10)),
        (
            "1%",
            VectorFilter {
                authors: Some(vec![author(7)]),
                ..VectorFilter::default()
            },
        ),
    ]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn dir_stats(dir: &Path) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata() {
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The allocator settings `feed` runs with, in the state a `feed` process
    // is in once it has embedded something (threshold fixed, not dynamic).
    feed_core::sys::tune_malloc();
    drop(feed_core::sys::MmapPin::hold());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let queries: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let root = tempfile::tempdir()?;
    let dir = root.path().join("bench");

    // 1. Ingest, flat only.
    let flat_only = LanceConfig {
        index_min_rows: usize::MAX,
        ..LanceConfig::default()
    };
    let index = LanceVectorIndex::open(&dir, flat_only).await?;
    let mut src = EmbeddingLike::new(42);
    reset_peak();
    let t = Instant::now();
    let mut next = 0usize;
    while next < n {
        let batch: Vec<VectorRecord> = (next..n.min(next + 1_000))
            .map(|i| VectorRecord {
                id: EventId(i as u64 + 1),
                kind: EventType::Post,
                author: author(i),
                ts: i as i64,
                vector: src.next_vector(),
            })
            .collect();
        next += batch.len();
        index.upsert(batch).await?;
    }
    index.flush().await?;
    let ingest = t.elapsed();
    println!(
        "ingest: {n} vectors in {:.1} s ({:.0} vectors/s), peak RSS {:.0} MiB",
        ingest.as_secs_f64(),
        n as f64 / ingest.as_secs_f64(),
        peak_rss_mib()
    );

    // 2. Exact answers (the recall reference) and their latency.
    let qs: Vec<Embedding> = (0..queries).map(|_| src.next_vector()).collect();
    let mut exact: Vec<Vec<Vec<EventId>>> = Vec::new();
    for (name, f) in filters() {
        let mut times = Vec::new();
        let mut answers = Vec::new();
        for q in &qs {
            let t = Instant::now();
            let hits = index.search(q, &f, 10).await?;
            times.push(t.elapsed());
            answers.push(hits.iter().map(|h| h.id).collect::<Vec<_>>());
        }
        println!(
            "exact search at {name}: p50 {:.1} ms",
            median(times).as_secs_f64() * 1e3
        );
        exact.push(answers);
    }
    drop(index);

    // 3. Train the indexes.
    let index = Arc::new(LanceVectorIndex::open(&dir, LanceConfig::default()).await?);
    let t = Instant::now();
    index.optimize().await?;
    println!(
        "ANN + scalar indexes built in {:.1} s, mode {:?}",
        t.elapsed().as_secs_f64(),
        index.mode()
    );

    // 4. Two threads of queries per selectivity.
    reset_peak();
    let qs = Arc::new(qs);
    for ((name, f), want) in filters().into_iter().zip(&exact) {
        let f = Arc::new(f);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for part in 0..2 {
            let (index, qs, f) = (index.clone(), qs.clone(), f.clone());
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for (i, q) in qs.iter().enumerate().filter(|(i, _)| i % 2 == part) {
                    let hits = index.search(q, &f, 10).await?;
                    got.push((i, hits.iter().map(|h| h.id).collect::<Vec<_>>()));
                }
                Ok::<_, feed_core::IndexError>(got)
            }));
        }
        let mut recall = 0.0;
        for task in tasks {
            for (i, got) in task.await?? {
                let w = &want[i];
                if w.is_empty() {
                    recall += 1.0;
                } else {
                    recall +=
                        w.iter().filter(|id| got.contains(id)).count() as f64 / w.len() as f64;
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "ANN search at {name}: {:.0} queries/s on 2 threads, recall@10 {:.3}",
            qs.len() as f64 / secs,
            recall / qs.len() as f64
        );
    }
    println!("peak RSS while querying: {:.0} MiB", peak_rss_mib());
    drop(index);

    // 5. Small writes and maintenance.
    let small = root.path().join("small");
    let index = LanceVectorIndex::open(&small, LanceConfig::default()).await?;
    let mut src = EmbeddingLike::new(9);
    let t = Instant::now();
    for i in 0..1_000usize {
        index
            .upsert(vec![VectorRecord {
                id: EventId(i as u64 + 1),
                kind: EventType::Post,
                author: author(i),
                ts: i as i64,
                vector: src.next_vector(),
            }])
            .await?;
    }
    let writes = t.elapsed();
    let before = index.table().stats().await?.fragment_stats.num_fragments;
    index.optimize().await?;
    let stats = index.table().stats().await?;
    let (files, bytes) = dir_stats(&small.join("posts.lance").join("data"));
    let (all_files, all_bytes) = dir_stats(&small);
    println!(
        "1,000 single-row upserts in {:.1} s: {before} fragments before the last maintenance, \
         {} after; {files} data files ({:.1} MiB); {all_files} files, {:.1} MiB on disk in all",
        writes.as_secs_f64(),
        stats.fragment_stats.num_fragments,
        bytes as f64 / 1048576.0,
        all_bytes as f64 / 1048576.0
    );
    Ok(())
}
