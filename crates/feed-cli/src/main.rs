//! `feed`: every query of Feed from the shell (SPEC §7).
//!
//! Results go to stdout as JSON Lines. Exit status: 0 success; 2 usage;
//! 3 some input rejected (the rest was stored); 4 the store could not be
//! opened or written; 1 anything else (for example search without a vector
//! index).

mod bench;
mod gen;
mod progress;
mod store;

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use feed_core::jsonl::{entry_line, event_line, parse_filter, view_line, Extras};
use feed_core::{
    BucketWidth, Cursor, Did, EventId, EventStore, EventType, SearchQuery, VectorFilter,
};
use futures::StreamExt;

#[derive(Parser)]
#[command(
    name = "feed",
    version,
    about = "Feed: an embedded temporal event store"
)]
struct Cli {
    /// Store directory.
    #[arg(long, global = true, default_value = "./feed-data")]
    store: PathBuf,
    /// Backend for a new store (remembered by the store).
    #[arg(long, global = true)]
    backend: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create an empty store.
    Init,
    /// Read JSON Lines events from FILE or stdin (`-`).
    Ingest {
        /// Input file; `-` or nothing reads stdin.
        file: Option<PathBuf>,
        /// Events per atomic batch.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// One event, with `edited` and `deleted`.
    Get {
        /// Event id.
        id: u64,
    },
    /// Every version of a post.
    Versions {
        /// Event id.
        id: u64,
    },
    /// Home timeline of DID.
    Timeline {
        /// The account (64 hex characters or `did:libertaria:<hex>`).
        did: String,
        /// Posts per page (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Exclusive cursor `TS:ID` (the last line of the previous page).
        #[arg(long)]
        before: Option<String>,
    },
    /// One author's posts.
    Author {
        /// The author (64 hex characters or `did:libertaria:<hex>`).
        did: String,
        /// Oldest `ts` included, nanoseconds.
        #[arg(long)]
        since: Option<i64>,
        /// Newest `ts` included, nanoseconds.
        #[arg(long)]
        until: Option<i64>,
        /// Posts to print.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A post and everything below it.
    Thread {
        /// Event id.
        id: u64,
    },
    /// Replies, reactions and edits of a post.
    Counts {
        /// Event id.
        id: u64,
    },
    /// Events carrying a tag.
    Tag {
        /// The tag (one leading `#` dropped; matched lowercased).
        tag: String,
        /// Events per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Exclusive cursor `TS:ID` (the last line of the previous page).
        #[arg(long)]
        before: Option<String>,
    },
    /// Events mentioning a DID.
    Mentions {
        /// The mentioned DID (64 hex characters or `did:libertaria:<hex>`).
        did: String,
        /// Events per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Exclusive cursor `TS:ID` (the last line of the previous page).
        #[arg(long)]
        before: Option<String>,
    },
    /// DIDs that DID follows.
    Following {
        /// The account (64 hex characters or `did:libertaria:<hex>`).
        did: String,
    },
    /// DIDs following DID.
    Followers {
        /// The account (64 hex characters or `did:libertaria:<hex>`).
        did: String,
    },
    /// NIP-01 style filter query.
    Query {
        /// JSON object: `ids`, `authors`, `types`, `tags`, `mentions`,
        /// `parents` (lists, ORed), `since`, `until` (ns, inclusive),
        /// `limit`; fields ANDed.
        filter: String,
    },
    /// Event counts per type per time bucket.
    Buckets {
        /// JSON filter, as for `query`.
        filter: String,
        /// Bucket width: `minute`, `hour` or `day`.
        #[arg(long, default_value = "hour")]
        width: String,
    },
    /// Posts by meaning.
    Search {
        /// Text to search for (embedded with the installed model).
        text: String,
        /// Hits to print (at most 100).
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Only events of this type (repeatable; only posts are indexed).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Only events by this author (repeatable).
        #[arg(long = "author")]
        authors: Vec<String>,
        /// Oldest `ts` included, nanoseconds.
        #[arg(long)]
        since: Option<i64>,
        /// Newest `ts` included, nanoseconds.
        #[arg(long)]
        until: Option<i64>,
    },
    /// Posts similar to a stored post.
    Similar {
        /// Id of a stored post with a vector.
        id: u64,
        /// Hits to print (at most 100).
        #[arg(long, default_value_t = 10)]
        k: usize,
    },
    /// Every stored event as JSON Lines, in arrival order.
    Export,
    /// Counts and sizes.
    Stats,
    /// Verify the store: the backend's integrity check, every event read
    /// back and re-checked, counts, the vector index; exit 4 on damage.
    Check,
    /// Write a synthetic data set as JSON Lines.
    Gen {
        /// Events to write.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Generator seed (the same seed writes the same data set).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give posts topic-clustered embeddings.
        #[arg(long)]
        vectors: bool,
        /// Output file (default stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the backends side by side.
    Bench(bench::BenchArgs),
    /// (internal) One backend's half of `feed bench`.
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
}

/// A failure with its exit status.
struct Failure {
    code: u8,
    err: anyhow::Error,
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        err: e.into(),
    }
}

fn store_err(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 4,
        err: e.into(),
    }
}

/// A search failure: exit 4 when the store or the index could not be read,
/// 1 otherwise (no embedder, no such post).
fn search_err(e: feed_core::SearchError) -> Failure {
    use feed_core::SearchError as S;
    match e {
        S::Store(_) | S::Index(_) => store_err(e),
        _ => other(e),
    }
}

fn other(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 1,
        err: e.into(),
    }
}

fn did(s: &str) -> Result<Did, Failure> {
    Did::parse(s).ok_or_else(|| usage(anyhow!("not a DID: {s:?} (64 hex or did:libertaria:<hex>)")))
}

fn cursor(s: &Option<String>) -> Result<Option<Cursor>, Failure> {
    s.as_deref()
        .map(|c| Cursor::parse(c).ok_or_else(|| usage(anyhow!("--before takes TS:ID, not {c:?}"))))
        .transpose()
}

/// A search result line: the view with its `score`.
fn hit_line(h: &feed_core::SearchHit) -> String {
    view_line(
        &h.view,
        Extras {
            score: Some(h.score),
            ..Extras::default()
        },
    )
}

/// Caps LanceDB's compute pool at two threads (it defaults to one per
/// core), matching the runtime below, and lets its two io_uring threads
/// wake once a second while idle instead of every 10 ms (a request still
/// wakes them at once); an operator's own settings win.
fn cap_lance_threads() {
    for (name, value) in [
        ("LANCE_CPU_THREADS", "2"),
        ("LANCE_URING_POLL_TIMEOUT_MS", "1000"),
    ] {
        if std::env::var_os(name).is_none() {
            // Before any other thread exists, so nothing reads the
            // environment concurrently.
            std::env::set_var(name, value);
        }
    }
}

fn main() -> ExitCode {
    // Two malloc arenas; the embedder pins the mmap threshold while it runs.
    feed_core::sys::tune_malloc();
    cap_lance_threads();
    let cli = Cli::parse();
    // Few threads: every blocking thread costs a stack and, with glibc, a
    // malloc arena — on a small device that is most of the memory budget.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("feed: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if is_broken_pipe(&f.err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("feed: {:#}", f.err);
            ExitCode::from(f.code)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn open(cli: &Cli, create: bool) -> Result<(store::Store, String), Failure> {
    let embedding = store::Embedding::IfInstalled;
    store::open(&cli.store, cli.backend.as_deref(), create, embedding)
        .await
        .map_err(|e| match e {
            store::OpenError::Usage(m) => usage(anyhow!(m)),
            store::OpenError::Store(e) => store_err(e),
        })
}

/// A warning on stderr when the vector index has not applied every stored
/// event (search answers from what it has).
async fn warn_if_lagging(st: &store::Store) -> Result<(), feed_core::StoreError> {
    let status = st.index_status().await?;
    if status.lag > 0 {
        eprintln!(
            "{}",
            serde_json::json!({"warning": "the vector index is behind; search does not see everything yet",
                "index_lag": status.lag, "index_error": status.last_error})
        );
    }
    Ok(())
}

/// Events per page of `feed query`'s output.
const QUERY_PAGE: usize = 256;

async fn run(cli: Cli) -> Result<u8, Failure> {
    // Not the locked handle: `query` writes from inside a `Send` closure.
    let mut out = BufWriter::new(std::io::stdout());
    let code = dispatch(&cli, &mut out).await?;
    out.flush().map_err(other)?;
    Ok(code)
}

async fn dispatch(cli: &Cli, out: &mut (impl Write + Send)) -> Result<u8, Failure> {
    macro_rules! line {
        ($($arg:tt)*) => { writeln!(out, $($arg)*).map_err(other)? };
    }
    match &cli.cmd {
        Cmd::Gen {
            events,
            seed,
            vectors,
            out: file,
        } => {
            let cfg = gen::GenConfig {
                events: *events,
                seed: *seed,
                vectors: *vectors,
                ..gen::GenConfig::default()
            };
            let progress = std::io::stderr().is_terminal();
            let mut sink: Box<dyn Write> = match file {
                Some(p) => Box::new(BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))
                        .map_err(other)?,
                )),
                None => Box::new(&mut *out),
            };
            let mut n = 0usize;
            let mut failed = None;
            gen::generate(&cfg, |e| {
                if failed.is_none() {
                    if let Err(err) = writeln!(sink, "{}", event_line(&e)) {
                        failed = Some(err);
                    }
                }
                n += 1;
                if progress && n % 10_000 == 0 {
                    eprint!("\rgen: {n} / {} events", cfg.events);
                }
            });
            if progress {
                eprintln!("\rgen: {n} events            ");
            }
            if let Some(e) = failed {
                return Err(other(e));
            }
            sink.flush().map_err(other)?;
            return Ok(0);
        }
        Cmd::Bench(args) => return bench::run(args).await.map(|()| 0).map_err(other),
        Cmd::BenchWorker(args) => return bench::worker(args).await.map(|()| 0).map_err(other),
        _ => {}
    }
    let create = matches!(cli.cmd, Cmd::Init | Cmd::Ingest { .. });
    let (st, backend) = open(cli, create).await?;
    let ev = st.events();
    let se = store_err;
    // The listings: newest-first live events, one line each.
    let listing = match &cli.cmd {
        Cmd::Timeline {
            did: d,
            limit,
            before,
        } => Some(ev.timeline(&did(d)?, *limit, cursor(before)?).await),
        Cmd::Author {
            did: d,
            since,
            until,
            limit,
        } => Some(ev.author_feed(&did(d)?, *since, *until, *limit).await),
        Cmd::Tag { tag, limit, before } => Some(ev.tag(tag, *limit, cursor(before)?).await),
        Cmd::Mentions {
            did: d,
            limit,
            before,
        } => Some(ev.mentions(&did(d)?, *limit, cursor(before)?).await),
        Cmd::Query { filter } => {
            // A page at a time, so an unlimited query over a large store
            // holds one page of events, not the whole answer.
            let filter = parse_filter(filter).map_err(usage)?;
            let mut failed = None;
            ev.query_pages(&filter, QUERY_PAGE, &mut |page| {
                for v in &page {
                    if let Err(e) = writeln!(out, "{}", view_line(v, Extras::default())) {
                        failed = Some(e);
                        return false;
                    }
                }
                true
            })
            .await
            .map_err(se)?;
            return match failed {
                Some(e) => Err(other(e)),
                None => Ok(0),
            };
        }
        _ => None,
    };
    if let Some(views) = listing {
        for v in views.map_err(se)? {
            line!("{}", view_line(&v, Extras::default()));
        }
        return Ok(0);
    }
    match &cli.cmd {
        Cmd::Init => line!(
            "{}",
            serde_json::json!({"store": cli.store, "backend": backend})
        ),
        Cmd::Ingest { file, batch } => {
            // Progress on a terminal: bytes read of the file's size.
            let reader: Box<dyn BufRead> = match file {
                Some(p) if p.as_os_str() != "-" => {
                    let f = std::fs::File::open(p)
                        .with_context(|| format!("opening {}", p.display()))
                        .map_err(usage)?;
                    let total = f.metadata().ok().map(|m| m.len());
                    Box::new(progress::Reading::stderr(std::io::BufReader::new(f), total))
                }
                _ => Box::new(progress::Reading::stderr(std::io::stdin().lock(), None)),
            };
            let (report, failure) = match st.ingest(reader, *batch).await {
                Ok(r) => (r, None),
                // Say what was stored before the stop, then why it stopped.
                Err(e) => {
                    let resume = e.resume;
                    let msg = format!("{e}");
                    (e.report, Some((resume, msg)))
                }
            };
            for (line, id, r) in &report.rejections {
                eprintln!(
                    "{}",
                    serde_json::json!({"line": line, "id": id, "code": r.code.as_str(), "message": r.message})
                );
            }
            line!(
                "{}",
                serde_json::json!({"accepted": report.accepted, "duplicate": report.duplicate, "rejected": report.rejected})
            );
            if let Some((resume, msg)) = failure {
                out.flush().map_err(other)?;
                let hint = match resume {
                    Some(line) => format!(
                        "; the summary above counts the lines before {line}: run the ingest again \
                         (stored lines come back as duplicates) once the cause is mended"
                    ),
                    None => String::new(),
                };
                return Err(store_err(anyhow!("{msg}{hint}")));
            }
            // Stored either way; say so when search cannot see all of it yet.
            warn_if_lagging(&st).await.map_err(se)?;
            ev.close().await.map_err(se)?;
            return Ok(if report.rejected > 0 { 3 } else { 0 });
        }
        Cmd::Get { id } => {
            if let Some(e) = ev.get(EventId(*id)).await.map_err(se)? {
                line!("{}", entry_line(&e, Extras::default()));
            }
        }
        Cmd::Versions { id } => {
            for e in ev.versions(EventId(*id)).await.map_err(se)? {
                line!("{}", event_line(&e));
            }
        }
        Cmd::Thread { id } => {
            let t = ev.thread(EventId(*id)).await.map_err(se)?;
            for (i, n) in t.nodes.iter().enumerate() {
                let extras = Extras {
                    depth: Some(n.depth),
                    truncated: (i == 0).then_some(t.truncated),
                    ..Extras::default()
                };
                line!("{}", entry_line(&n.entry, extras));
            }
        }
        Cmd::Counts { id } => {
            if let Some(c) = ev.counts(EventId(*id)).await.map_err(se)? {
                line!(
                    "{}",
                    serde_json::json!({"id": id, "replies": c.replies, "thread_size": c.thread_size,
                        "likes": c.likes, "boosts": c.boosts, "bookmarks": c.bookmarks, "edits": c.edits})
                );
            }
        }
        Cmd::Following { did: d } | Cmd::Followers { did: d } => {
            let d = did(d)?;
            let list = if matches!(cli.cmd, Cmd::Following { .. }) {
                ev.following(&d).await
            } else {
                ev.followers(&d).await
            };
            for x in list.map_err(se)? {
                line!("{{\"did\":\"{x}\"}}");
            }
        }
        Cmd::Buckets { filter, width } => {
            let f = parse_filter(filter).map_err(usage)?;
            let w = BucketWidth::parse(width)
                .ok_or_else(|| usage(anyhow!("--width is minute, hour or day, not {width:?}")))?;
            for b in ev.buckets(&f, w).await.map_err(se)? {
                line!(
                    "{}",
                    serde_json::json!({"start": b.start, "type": b.kind.as_str(), "count": b.count})
                );
            }
        }
        Cmd::Search {
            text,
            k,
            types,
            authors,
            since,
            until,
        } => {
            let filter = VectorFilter {
                types: (!types.is_empty())
                    .then(|| {
                        types
                            .iter()
                            .map(|t| {
                                t.parse::<EventType>()
                                    .map_err(|()| usage(anyhow!("unknown type {t:?}")))
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?,
                authors: (!authors.is_empty())
                    .then(|| {
                        authors
                            .iter()
                            .map(|a| did(a))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?,
                since: *since,
                until: *until,
            };
            let hits = match st
                .search(SearchQuery::Text(text.clone()), &filter, *k)
                .await
            {
                Err(feed_core::SearchError::NoEmbedder) if st.index().is_some() => {
                    let why = store::embedder(store::Embedding::IfInstalled).err();
                    return Err(other(anyhow!(
                        "text search is unavailable: no embedder ({})",
                        why.unwrap_or_default()
                    )));
                }
                r => r.map_err(search_err)?,
            };
            for h in hits {
                line!("{}", hit_line(&h));
            }
            warn_if_lagging(&st).await.map_err(se)?;
        }
        Cmd::Similar { id, k } => {
            for h in st.similar(EventId(*id), *k).await.map_err(search_err)? {
                line!("{}", hit_line(&h));
            }
            warn_if_lagging(&st).await.map_err(se)?;
        }
        Cmd::Export => {
            let mut s = ev.export();
            while let Some(e) = s.next().await {
                line!("{}", event_line(&e.map_err(se)?));
            }
        }
        Cmd::Check => {
            let r = st.check().await.map_err(se)?;
            line!(
                "{}",
                serde_json::json!({"ok": r.problems.is_empty(), "events": r.events,
                    "index_rows": r.index_rows, "index_lag": r.index_lag, "problems": r.problems})
            );
            if !r.problems.is_empty() {
                return Err(store_err(anyhow!(
                    "the store is damaged: {} problem(s), listed above",
                    r.problems.len()
                )));
            }
        }
        Cmd::Stats => {
            let s = ev.stats().await.map_err(se)?;
            let status = st.index_status().await.map_err(se)?;
            let live: serde_json::Map<String, serde_json::Value> = EventType::ALL
                .iter()
                .map(|t| (t.as_str().to_string(), s.live[t.code() as usize].into()))
                .collect();
            line!(
                "{}",
                serde_json::json!({"live": live, "stored": s.stored, "bytes_on_disk": s.bytes_on_disk,
                    "vector_index": status.configured, "embedder": status.embedder,
                    "index_size": status.vectors,
                    "index_bytes": store::index_bytes(&cli.store, &backend),
                    "index_lag": status.lag,
                    "index_error": status.last_error})
            );
        }
        Cmd::Gen { .. }
        | Cmd::Bench(_)
        | Cmd::BenchWorker(_)
        | Cmd::Timeline { .. }
        | Cmd::Author { .. }
        | Cmd::Tag { .. }
        | Cmd::Mentions { .. }
        | Cmd::Query { .. } => {}
    }
    Ok(0)
}
