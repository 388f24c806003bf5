//! Embeds a corpus and reports throughput and memory: every text of Debian's
//! `fortunes` (or the non-empty lines of the file given), in calls of 256
//! texts as the write path makes them.
//!
//! `cargo run --release -p feed-embed --example embed_corpus [FILE]`

use std::time::Instant;

use feed_core::Embedder;
use feed_embed::OnnxEmbedder;

fn vm_hwm_kib() -> u64 {
    feed_core::sys::peak_rss_kib().unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The allocator settings `feed` runs with.
    feed_core::sys::tune_malloc();
    let texts: Vec<String> = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        None => feed_core::synth::fortunes(),
    };
    if texts.is_empty() {
        return Err("no texts: apt-get install fortunes, or name a file".into());
    }
    let before = vm_hwm_kib();
    let t = Instant::now();
    let emb = OnnxEmbedder::from_env()?;
    let loaded = vm_hwm_kib();
    println!(
        "opened {emb:?} in {:.2} s: peak RSS {} → {} MiB",
        t.elapsed().as_secs_f64(),
        before / 1024,
        loaded / 1024
    );
    let t = Instant::now();
    let mut n = 0;
    for chunk in texts.chunks(256) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        n += emb.embed(&refs)?.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{n} texts ({} bytes on average) in {secs:.1} s: {:.0} texts/s; peak RSS {} MiB",
        texts.iter().map(String::len).sum::<usize>() / texts.len(),
        n as f64 / secs,
        vm_hwm_kib() / 1024
    );
    Ok(())
}
