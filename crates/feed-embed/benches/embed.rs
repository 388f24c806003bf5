//! Embedding throughput: batches of 32 short posts (~20 words each) through
//! all-MiniLM-L6-v2 on two threads. Criterion reports time per batch and
//! posts/s; `target/criterion/embed/*/new/estimates.json` holds the median.
//! Target (issue 6): ≥ 300 posts/s on two cores.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use feed_core::Embedder;
use feed_embed::{OnnxConfig, OnnxEmbedder};

const WORDS: [&str; 24] = [
    "solar", "battery", "phone", "village", "market", "river", "morning", "train", "bread",
    "music", "garden", "school", "rain", "football", "coffee", "bicycle", "doctor", "radio",
    "friends", "evening", "harvest", "bridge", "library", "festival",
];

/// Post `i`: twenty words, drawn deterministically.
fn post(i: usize) -> String {
    let mut x = i as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
    let mut words = Vec::with_capacity(20);
    for _ in 0..20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        words.push(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    words.join(" ")
}

fn bench(c: &mut Criterion) {
    let emb = match OnnxEmbedder::open(&OnnxConfig::from_env()) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let posts: Vec<String> = (0..32).map(post).collect();
    let refs: Vec<&str> = posts.iter().map(String::as_str).collect();
    let mut g = c.benchmark_group("embed");
    g.throughput(Throughput::Elements(refs.len() as u64));
    g.sample_size(20);
    g.bench_function("32 posts of 20 words, 2 threads", |b| {
        b.iter(|| emb.embed(&refs).map(|v| v.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
