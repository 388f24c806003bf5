//! `feed bench`: the backends side by side. Each backend runs in its own
//! child process (`feed bench-worker`) so its memory figures are its own:
//! it streams the data set in, then runs every query type many times. The
//! parent prints one table and writes `bench.json` and `bench.svg`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use feed_core::jsonl::parse_line;
use feed_core::memvec::rank;
use feed_core::{
    BucketWidth, Did, Embedding, EventId, EventStore, EventType, FeedEvent, FeedStore, Filter, Hit,
    MemoryEventStore, MemoryVectorIndex, SearchQuery, VectorFilter, VectorIndex,
};
use serde_json::{json, Value};

use crate::gen::{self, Rng};
use crate::store;

/// `feed bench` options.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Events in the generated data set.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Use this JSON Lines file instead of generating one.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Backends to run (default: every compiled one, plus `memory` as a
    /// baseline). `lite/merge` and `lite/scan` force a timeline plan;
    /// `lite/graph` makes every vector base a usearch graph.
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// Calls per query type.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Events per ingest batch (default: 10,000 for `reference`, whose
    /// DuckDB is built for large batches; 1,000 for the others).
    #[arg(long)]
    batch: Option<usize>,
    /// Give generated posts embeddings (indexed at ingest, searched after);
    /// `--vectors false` measures the event store alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    vectors: bool,
    /// Where data, stores and results go.
    #[arg(long, default_value = "./feed-bench")]
    out: PathBuf,
}

/// `feed bench-worker` options (internal).
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    backend: String,
    /// Name shown in the results.
    #[arg(long)]
    label: Option<String>,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    queries: usize,
    #[arg(long)]
    batch: usize,
    #[arg(long)]
    json: PathBuf,
    /// The event store alone: no vector index (`feed bench --vectors
    /// false`), so ingest is not followed by an index catching up.
    #[arg(long)]
    no_index: bool,
    /// Which part this process runs.
    #[arg(long, value_enum, default_value_t = Phase::All)]
    phase: Phase,
}

/// The part of a backend's run a worker process does. `feed bench` runs
/// `ingest` and then `queries` in two processes, so the queries are
/// measured in a process that only opens the store, as an app would;
/// `all` does both in one (the in-memory baseline, whose store dies with
/// its process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Ingest and queries in this process.
    All,
    /// Ingest; writes its figures and the query samples to `--json`.
    Ingest,
    /// Reads what `ingest` wrote to `--json`, runs the queries, and writes
    /// the whole result there.
    Queries,
}

use feed_core::sys::{peak_rss_kib as vm_hwm_kib, reset_peak_rss as reset_peak, rss_parts_kib};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Samples kept during ingest to drive the queries.
#[derive(Default)]
struct Samples {
    posts: Vec<EventId>,
    authors: Vec<Did>,
    tags: Vec<String>,
    seen: u64,
}

impl Samples {
    fn see(&mut self, e: &FeedEvent, rng: &mut Rng) {
        self.seen += 1;
        if e.kind == EventType::Post {
            reservoir(&mut self.posts, e.id, self.seen, rng);
        }
        reservoir(&mut self.authors, e.author, self.seen, rng);
        if let Some(t) = e.tags.first().filter(|_| e.kind.carries_topics()) {
            reservoir(&mut self.tags, t.clone(), self.seen, rng);
        }
    }

    /// The samples as JSON, for the process that runs the queries.
    fn to_json(&self) -> Value {
        json!({
            "posts": self.posts.iter().map(|p| p.0).collect::<Vec<u64>>(),
            "authors": self.authors.iter().map(Did::to_string).collect::<Vec<_>>(),
            "tags": self.tags,
        })
    }

    /// Samples written by [`Samples::to_json`].
    fn from_json(v: &Value) -> anyhow::Result<Samples> {
        let list = |k: &str| {
            v[k].as_array()
                .ok_or_else(|| anyhow!("bench hand-over: no {k} list"))
        };
        let posts = list("posts")?
            .iter()
            .map(|x| x.as_u64().map(EventId))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| anyhow!("bench hand-over: a post id is not a number"))?;
        let authors = list("authors")?
            .iter()
            .map(|x| x.as_str().and_then(Did::parse))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| anyhow!("bench hand-over: an author is not a DID"))?;
        let tags = list("tags")?
            .iter()
            .map(|x| x.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| anyhow!("bench hand-over: a tag is not a string"))?;
        Ok(Samples {
            posts,
            authors,
            tags,
            seen: 0,
        })
    }
}

fn reservoir<T>(v: &mut Vec<T>, x: T, seen: u64, rng: &mut Rng) {
    const CAP: usize = 2_000;
    if v.len() < CAP {
        v.push(x);
    } else {
        let j = (rng.next_u64() % seen) as usize;
        if j < CAP {
            v[j] = x;
        }
    }
}

async fn time_calls<F, Fut, T, E>(n: usize, mut call: F) -> anyhow::Result<Value>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut d = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        call(i).await?;
        d.push(t.elapsed());
    }
    let total: Duration = d.iter().sum();
    d.sort();
    Ok(
        json!({"calls": n, "p50_us": percentile(&d, 0.5), "p99_us": percentile(&d, 0.99),
        "per_s": n as f64 / total.as_secs_f64().max(1e-9)}),
    )
}

/// The store a worker measures: in memory, or `a.dir` opened (created)
/// with `a.backend`, without an embedder, and without a vector index when
/// `a.no_index`.
async fn open_store(a: &WorkerArgs) -> anyhow::Result<store::Store> {
    if a.backend == "memory" {
        let index: Option<Box<dyn VectorIndex>> = match a.no_index {
            true => None,
            false => Some(Box::new(MemoryVectorIndex::new())),
        };
        return Ok(FeedStore::new(
            Box::new(MemoryEventStore::new()),
            index,
            None,
        ));
    }
    // The stores themselves are measured: posts carry the data set's
    // vectors or none, and nothing is embedded.
    let fs = store::open(&a.dir, Some(&a.backend), true, store::Embedding::Off)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .0;
    if !a.no_index {
        return Ok(fs);
    }
    // Without vectors an index would still read every post back while
    // catching up, to find it has no vector.
    let (events, _) = fs.into_parts().await.map_err(|e| anyhow!("{e}"))?;
    Ok(FeedStore::new(events, None, None))
}

/// One backend's run, or the part `a.phase` says; writes a JSON result.
pub async fn worker(a: &WorkerArgs) -> anyhow::Result<()> {
    let (fs, ingested, samples) = if a.phase == Phase::Queries {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&a.json)?)?;
        let samples = Samples::from_json(&v["samples"])?;
        (open_store(a).await?, v, samples)
    } else {
        ingest(a).await?
    };
    if a.phase == Phase::Ingest {
        fs.events().close().await?;
        std::fs::write(&a.json, serde_json::to_string_pretty(&ingested)?)?;
        return Ok(());
    }
    // In one process (`all`), the queries run on the store as a process
    // that opens it would find it, as near as can be: closed, the heap the
    // ingest used handed back, opened again. (The in-memory baseline keeps
    // its store.)
    let fs = if a.phase == Phase::Queries || a.backend == "memory" {
        fs
    } else {
        drop(fs.into_parts().await.map_err(|e| anyhow!("{e}"))?);
        feed_core::sys::trim_heap();
        open_store(a).await?
    };
    queries(a, fs, ingested, &samples).await
}

/// Ingests the data set; returns the store, the ingest's figures (with the
/// samples, for a queries process) and the samples.
async fn ingest(a: &WorkerArgs) -> anyhow::Result<(store::Store, Value, Samples)> {
    let fs = open_store(a).await?;
    let st = fs.events();
    let peak_reset = reset_peak();
    let file =
        std::fs::File::open(&a.data).with_context(|| format!("opening {}", a.data.display()))?;
    let mut rng = Rng::new(7);
    let mut samples = Samples::default();
    let (mut events, mut append_time) = (0u64, Duration::ZERO);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(a.batch);
    let mut lines = std::io::BufReader::new(file).lines();
    loop {
        let line = lines.next().transpose()?;
        if let Some(l) = &line {
            let e = parse_line(l).map_err(|r| anyhow!("data set line {}: {r}", events + 1))?;
            samples.see(&e, &mut rng);
            batch.push(e);
        }
        if batch.len() >= a.batch || (line.is_none() && !batch.is_empty()) {
            events += batch.len() as u64;
            let t = Instant::now();
            // Through the facade: posts with embeddings are indexed too.
            fs.append(std::mem::take(&mut batch)).await?;
            append_time += t.elapsed();
        }
        if line.is_none() {
            break;
        }
    }
    // Through the facade: the vector index has caught up when this returns.
    fs.flush().await?;
    let ingest_secs = started.elapsed().as_secs_f64();
    let ingest_peak = vm_hwm_kib();
    let stats = st.stats().await?;

    // A durable single-event append, p50 over 200 calls.
    let base_id = u64::MAX / 2;
    let author = samples.authors.first().copied().unwrap_or_default();
    let single = time_calls(200, |i| {
        let e = FeedEvent::new(
            EventId(base_id + i as u64),
            EventType::Post,
            author,
            gen::GenConfig::default().start_ts + i as i64,
            "single durable append",
        );
        st.append(vec![e])
    })
    .await?;
    let ingested = json!({
        "backend": a.label.as_deref().unwrap_or(&a.backend),
        "events": events,
        "batch": a.batch,
        "ingest_events_per_s": events as f64 / ingest_secs,
        "append_events_per_s": events as f64 / append_time.as_secs_f64().max(1e-9),
        "single_append": single,
        "bytes_on_disk": stats.bytes_on_disk,
        "bytes_per_event": stats.bytes_on_disk as f64 / events.max(1) as f64,
        "peak_rss_ingest_kib": ingest_peak,
        "peak_reset_supported": peak_reset,
        "samples": samples.to_json(),
    });
    Ok((fs, ingested, samples))
}

/// Runs the queries on `fs` and writes the whole result (`ingested` and the
/// queries' figures) to `a.json`.
async fn queries(
    a: &WorkerArgs,
    fs: store::Store,
    mut ingested: Value,
    samples: &Samples,
) -> anyhow::Result<()> {
    let st = fs.events();
    // What reading the hand-over freed is not the store's.
    feed_core::sys::trim_heap();
    reset_peak();
    let q = a.queries;
    let pick = |v: &[EventId], i: usize| v[(i * 7919) % v.len().max(1)];
    let did_at = |i: usize| &samples.authors[(i * 104_729) % samples.authors.len().max(1)];
    let mut results = BTreeMap::new();
    if !samples.posts.is_empty() && !samples.authors.is_empty() {
        results.insert(
            "timeline",
            time_calls(q, |i| st.timeline(did_at(i), 50, None)).await?,
        );
        results.insert(
            "thread",
            time_calls(q, |i| st.thread(pick(&samples.posts, i))).await?,
        );
        results.insert(
            "counts",
            time_calls(q, |i| st.counts(pick(&samples.posts, i))).await?,
        );
        results.insert(
            "get",
            time_calls(q, |i| st.get(pick(&samples.posts, i))).await?,
        );
        results.insert(
            "author",
            time_calls(q, |i| st.author_feed(did_at(i), None, None, 50)).await?,
        );
        results.insert(
            "mentions",
            time_calls(q, |i| st.mentions(did_at(i), 50, None)).await?,
        );
        results.insert(
            "following",
            time_calls(q, |i| st.following(did_at(i))).await?,
        );
        // Timelines of the sampled accounts (each once) that follow the
        // most others, and of those whose follow count is nearest 1,000.
        let mut distinct = samples.authors.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut by_follows = Vec::with_capacity(distinct.len());
        for d in &distinct {
            by_follows.push((st.following(d).await?.len(), *d));
        }
        by_follows.sort_unstable_by(|a, b| b.cmp(a));
        let mut near_1000 = by_follows.clone();
        near_1000.sort_by_key(|(n, d)| (n.abs_diff(1_000), *d));
        for (name, mut accounts) in [("timeline_heavy", by_follows), ("timeline_1000", near_1000)] {
            accounts.truncate(10);
            if accounts.is_empty() {
                continue;
            }
            let dids: Vec<Did> = accounts.iter().map(|(_, d)| *d).collect();
            let mut r = time_calls(q, |i| st.timeline(&dids[i % dids.len()], 50, None)).await?;
            r["follows_min"] = json!(accounts.iter().map(|x| x.0).min());
            r["follows_max"] = json!(accounts.iter().map(|x| x.0).max());
            results.insert(name, r);
        }
        let filters: Vec<Filter> = (0..q)
            .map(|i| Filter {
                authors: Some(vec![*did_at(i)]),
                types: Some(vec![EventType::Post]),
                limit: Some(50),
                ..Filter::default()
            })
            .collect();
        results.insert("query", time_calls(q, |i| st.query(&filters[i])).await?);
    }
    if !samples.tags.is_empty() {
        let tags = samples.tags.clone();
        results.insert(
            "tag",
            time_calls(q, |i| st.tag(&tags[i % tags.len()], 50, None)).await?,
        );
    }
    let all = Filter::default();
    results.insert(
        "buckets_hour",
        time_calls(5, |_| st.buckets(&all, BucketWidth::Hour)).await?,
    );
    // Search: queries are stored posts' vectors, nudged (posts like this one).
    let mut search_queries = Vec::new();
    let mut post_ts = Vec::new();
    if fs.index().is_some() {
        let mut nudge = Rng::new(11);
        for id in samples.posts.iter().take(200) {
            let stored = st.stored(*id).await?;
            post_ts.extend(stored.as_ref().map(|e| e.ts));
            if let Some(e) = stored.and_then(|e| e.embedding) {
                let v: Vec<f32> = e
                    .as_slice()
                    .iter()
                    .map(|x| x + 0.03 * (nudge.f64() as f32 * 2.0 - 1.0))
                    .collect();
                search_queries.extend(Embedding::new(v).ok());
            }
        }
    }
    if !search_queries.is_empty() {
        let sq = &search_queries;
        let all = VectorFilter::default();
        results.insert(
            "search",
            time_calls(q, |i| {
                fs.search(SearchQuery::Vector(sq[i % sq.len()].clone()), &all, 10)
            })
            .await?,
        );
        // The same searches among the posts newer than the sampled posts'
        // median: a filter passing about half the vectors.
        post_ts.sort_unstable();
        let newer_half = VectorFilter {
            since: post_ts.get(post_ts.len() / 2).copied(),
            ..VectorFilter::default()
        };
        results.insert(
            "search_newer_half",
            time_calls(q, |i| {
                fs.search(
                    SearchQuery::Vector(sq[i % sq.len()].clone()),
                    &newer_half,
                    10,
                )
            })
            .await?,
        );
    }
    let query_peak = vm_hwm_kib();
    let (rss_file, rss_anon) = rss_parts_kib().unzip();
    let recall = match fs.index() {
        Some(index) if !search_queries.is_empty() => Some(
            recall_at_10(
                index,
                &a.data,
                &search_queries[..search_queries.len().min(100)],
            )
            .await?,
        ),
        _ => None,
    };
    st.close().await?;
    let vectors = match fs.index() {
        Some(i) => json!(i.len().await?),
        None => json!(null),
    };
    let out = ingested
        .as_object_mut()
        .ok_or_else(|| anyhow!("bench: the ingest's figures are not an object"))?;
    out.remove("samples");
    for (k, v) in [
        ("peak_rss_queries_kib", json!(query_peak)),
        ("rss_file_after_queries_kib", json!(rss_file)),
        ("rss_anon_after_queries_kib", json!(rss_anon)),
        ("vectors", vectors),
        ("search_recall_at_10", json!(recall)),
        ("queries", json!(results)),
    ] {
        out.insert(k.to_string(), v);
    }
    std::fs::write(&a.json, serde_json::to_string_pretty(&ingested)?)?;
    Ok(())
}

/// Mean recall@10 of `index` against exact search over the vectors it
/// holds (read back from the data set), for `queries`.
async fn recall_at_10(
    index: &dyn VectorIndex,
    data: &std::path::Path,
    queries: &[Embedding],
) -> anyhow::Result<f64> {
    let held: std::collections::HashSet<EventId> = index.ids().await?.into_iter().collect();
    let mut best: Vec<Vec<Hit>> = vec![Vec::new(); queries.len()];
    let file = std::fs::File::open(data).with_context(|| format!("opening {}", data.display()))?;
    for line in std::io::BufReader::new(file).lines() {
        let e = parse_line(&line?).map_err(|r| anyhow!("data set: {r}"))?;
        let Some(v) = e.embedding.as_ref().filter(|_| held.contains(&e.id)) else {
            continue;
        };
        for (q, top) in queries.iter().zip(best.iter_mut()) {
            top.push(Hit {
                id: e.id,
                score: q.cosine(v),
            });
            if top.len() > 64 {
                rank(top);
                top.truncate(10);
            }
        }
    }
    let mut total = 0.0;
    for (q, mut top) in queries.iter().zip(best) {
        rank(&mut top);
        top.truncate(10);
        let got = index.search(q, &VectorFilter::default(), 10).await?;
        let found = top
            .iter()
            .filter(|w| got.iter().any(|h| h.id == w.id))
            .count();
        total += if top.is_empty() {
            1.0
        } else {
            found as f64 / top.len() as f64
        };
    }
    Ok(total / queries.len().max(1) as f64)
}

/// Generates (or reuses) the data set and runs each backend's worker.
pub async fn run(a: &BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let progress = std::io::stderr().is_terminal();
    let data = match &a.data {
        Some(p) => p.clone(),
        None => {
            let v = if a.vectors { "-v" } else { "" };
            let p = a.out.join(format!("data-{}-{}{v}.jsonl", a.events, a.seed));
            if !p.exists() {
                eprintln!(
                    "bench: generating {} events (seed {}) into {}",
                    a.events,
                    a.seed,
                    p.display()
                );
                let tmp = p.with_extension("part");
                let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
                let mut err = None;
                let mut n = 0usize;
                gen::generate(
                    &gen::GenConfig {
                        events: a.events,
                        seed: a.seed,
                        vectors: a.vectors,
                        ..Default::default()
                    },
                    |e| {
                        if err.is_none() {
                            err = writeln!(w, "{}", feed_core::jsonl::event_line(&e)).err();
                        }
                        n += 1;
                        if progress && n % 10_000 == 0 {
                            eprint!("\rbench: generated {n} / {}", a.events);
                        }
                    },
                );
                if let Some(e) = err {
                    return Err(e.into());
                }
                w.flush()?;
                drop(w);
                std::fs::rename(&tmp, &p)?;
                if progress {
                    eprintln!();
                }
            }
            p
        }
    };
    let backends: Vec<String> = if a.backends.is_empty() {
        store::compiled_backends()
            .into_iter()
            .map(String::from)
            .chain(std::iter::once("memory".to_string()))
            .collect()
    } else {
        a.backends.clone()
    };
    let exe = std::env::current_exe()?;
    let mut results = Vec::new();
    for b in &backends {
        let safe = b.replace('/', "-");
        let dir = a.out.join(format!("store-{safe}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let json_path = a.out.join(format!("result-{safe}.json"));
        eprintln!("bench: {b}: ingesting, then querying (own processes)…");
        let t = Instant::now();
        let (backend, variant) = b.split_once('/').unwrap_or((b, ""));
        let batch = a.batch.unwrap_or(if backend == "reference" {
            10_000
        } else {
            1_000
        });
        // The in-memory store lives only as long as its process.
        let phases: &[&str] = if backend == "memory" {
            &["all"]
        } else {
            &["ingest", "queries"]
        };
        for phase in phases {
            let status = std::process::Command::new(&exe)
                .env("FEED_LITE_VARIANT", variant)
                .args(["bench-worker", "--backend", backend, "--label", b, "--data"])
                .arg(&data)
                .arg("--dir")
                .arg(&dir)
                .args(["--queries", &a.queries.to_string()])
                .args(["--batch", &batch.to_string(), "--phase", phase, "--json"])
                .arg(&json_path)
                .args((!a.vectors).then_some("--no-index"))
                .status()
                .with_context(|| format!("starting the {b} worker ({phase})"))?;
            if !status.success() {
                bail!("the {b} worker failed ({phase}: {status})");
            }
        }
        eprintln!("bench: {b}: done in {:.1} s", t.elapsed().as_secs_f64());
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_path)?)?;
        results.push(v);
    }
    print_table(&results);
    let all = json!({"data": data, "results": results});
    std::fs::write(
        a.out.join("bench.json"),
        serde_json::to_string_pretty(&all)?,
    )?;
    std::fs::write(a.out.join("bench.svg"), svg(&results))?;
    eprintln!(
        "bench: results in {} and {}",
        a.out.join("bench.json").display(),
        a.out.join("bench.svg").display()
    );
    Ok(())
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_f64()
}

/// A table row of a KiB figure each result holds under `key`, in MiB.
fn mib_row(results: &[Value], label: &str, key: &str) -> (String, Vec<String>) {
    (
        label.into(),
        results
            .iter()
            .map(|r| fmt(num(r, &[key]).map(|k| k / 1024.0), " MiB"))
            .collect(),
    )
}

fn fmt(x: Option<f64>, unit: &str) -> String {
    match x {
        None => "—".into(),
        Some(x) if x >= 100.0 => format!("{x:.0}{unit}"),
        Some(x) => format!("{x:.1}{unit}"),
    }
}

fn query_names(results: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = results
        .iter()
        .filter_map(|r| r.get("queries").and_then(Value::as_object))
        .flat_map(|o| o.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn print_table(results: &[Value]) {
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (
            "ingest batch (events)".into(),
            results
                .iter()
                .map(|r| fmt(num(r, &["batch"]), ""))
                .collect(),
        ),
        (
            "ingest events/s".into(),
            results
                .iter()
                .map(|r| fmt(num(r, &["ingest_events_per_s"]), ""))
                .collect(),
        ),
        (
            "append-only events/s".into(),
            results
                .iter()
                .map(|r| fmt(num(r, &["append_events_per_s"]), ""))
                .collect(),
        ),
        (
            "single durable append p50".into(),
            results
                .iter()
                .map(|r| fmt(num(r, &["single_append", "p50_us"]), " µs"))
                .collect(),
        ),
        mib_row(results, "peak RSS ingest", "peak_rss_ingest_kib"),
        mib_row(results, "peak RSS queries", "peak_rss_queries_kib"),
        mib_row(
            results,
            "RSS at end: mapped files",
            "rss_file_after_queries_kib",
        ),
        mib_row(
            results,
            "RSS at end: anonymous",
            "rss_anon_after_queries_kib",
        ),
        (
            "bytes/event on disk".into(),
            results
                .iter()
                .map(|r| fmt(num(r, &["bytes_per_event"]), ""))
                .collect(),
        ),
    ];
    for q in query_names(results) {
        for p in ["p50_us", "p99_us"] {
            rows.push((
                format!("{q} {}", &p[..3]),
                results
                    .iter()
                    .map(|r| fmt(num(r, &["queries", &q, p]), " µs"))
                    .collect(),
            ));
        }
        // The timelines of chosen accounts say how many others they follow.
        if results
            .iter()
            .any(|r| num(r, &["queries", &q, "follows_max"]).is_some())
        {
            rows.push((
                format!("{q} follows"),
                results
                    .iter()
                    .map(|r| {
                        match (
                            num(r, &["queries", &q, "follows_min"]),
                            num(r, &["queries", &q, "follows_max"]),
                        ) {
                            (Some(lo), Some(hi)) => format!("{lo}–{hi}"),
                            _ => "—".into(),
                        }
                    })
                    .collect(),
            ));
        }
    }
    rows.push((
        "vectors indexed".into(),
        results
            .iter()
            .map(|r| fmt(num(r, &["vectors"]), ""))
            .collect(),
    ));
    rows.push((
        "search QPS (1 thread)".into(),
        results
            .iter()
            .map(|r| fmt(num(r, &["queries", "search", "per_s"]), ""))
            .collect(),
    ));
    rows.push((
        "search recall@10".into(),
        results
            .iter()
            .map(|r| match num(r, &["search_recall_at_10"]) {
                Some(x) => format!("{x:.3}"),
                None => "—".into(),
            })
            .collect(),
    ));
    let names: Vec<String> = results
        .iter()
        .map(|r| r["backend"].as_str().unwrap_or("?").to_string())
        .collect();
    let w0 = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(10);
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            rows.iter()
                .map(|(_, v)| v[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(n.len())
        })
        .collect();
    let mut line = format!("{:w0$}", "");
    for (n, w) in names.iter().zip(&widths) {
        line.push_str(&format!("  {n:>w$}"));
    }
    println!("{line}");
    for (k, vals) in rows {
        let mut line = format!("{k:w0$}");
        for (v, w) in vals.iter().zip(&widths) {
            line.push_str(&format!("  {v:>w$}"));
        }
        println!("{line}");
    }
}

/// A bar chart of p50 and p99 per query and backend (log scale), plus
/// ingest rates.
fn svg(results: &[Value]) -> String {
    let names = query_names(results);
    let colours = ["#3b6ea5", "#d1822b", "#4f9a5b", "#a54b6e"];
    let bar_h = 9.0;
    let group_h = bar_h * 2.0 * results.len() as f64 + 10.0;
    let (left, width) = (130.0, 520.0);
    let height = 80.0 + group_h * names.len() as f64 + 40.0 * results.len() as f64;
    let max_us = results
        .iter()
        .flat_map(|r| {
            names
                .iter()
                .filter_map(move |q| num(r, &["queries", q, "p99_us"]))
        })
        .fold(10.0f64, f64::max);
    let x = |us: f64| left + width * (us.max(1.0).log10() / max_us.log10());
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{height}' font-family='sans-serif' font-size='11'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='10' y='20' font-size='14' font-weight='bold'>feed bench: query latency (µs, log scale; light = p50, dark = p99)</text>\n",
        left + width + 120.0
    );
    for (bi, r) in results.iter().enumerate() {
        let name = r["backend"].as_str().unwrap_or("?");
        s += &format!(
            "<rect x='{}' y='32' width='10' height='10' fill='{}'/><text x='{}' y='41'>{name}</text>\n",
            left + 110.0 * bi as f64,
            colours[bi % colours.len()],
            left + 14.0 + 110.0 * bi as f64
        );
    }
    for (qi, q) in names.iter().enumerate() {
        let y0 = 60.0 + group_h * qi as f64;
        s += &format!("<text x='10' y='{}'>{q}</text>\n", y0 + group_h / 2.0);
        for (bi, r) in results.iter().enumerate() {
            let c = colours[bi % colours.len()];
            for (pi, p) in ["p50_us", "p99_us"].iter().enumerate() {
                if let Some(us) = num(r, &["queries", q, p]) {
                    let y = y0 + bar_h * (2 * bi + pi) as f64;
                    let op = if pi == 0 { "0.5" } else { "1" };
                    s += &format!(
                        "<rect x='{left}' y='{y}' width='{:.1}' height='{}' fill='{c}' fill-opacity='{op}'/><text x='{:.1}' y='{:.1}'>{}</text>\n",
                        (x(us) - left).max(1.0),
                        bar_h - 1.0,
                        x(us) + 4.0,
                        y + bar_h - 1.5,
                        fmt(Some(us), "")
                    );
                }
            }
        }
    }
    let y0 = 60.0 + group_h * names.len() as f64 + 10.0;
    for (bi, r) in results.iter().enumerate() {
        s += &format!(
            "<text x='10' y='{:.0}'>{}: ingest {} events/s, peak RSS {} (queries), {} bytes/event</text>\n",
            y0 + 18.0 * bi as f64,
            r["backend"].as_str().unwrap_or("?"),
            fmt(num(r, &["ingest_events_per_s"]), ""),
            fmt(num(r, &["peak_rss_queries_kib"]).map(|k| k / 1024.0), " MiB"),
            fmt(num(r, &["bytes_per_event"]), "")
        );
    }
    s + "</svg>\n"
}
