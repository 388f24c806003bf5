//! `event_store_suite`: model-based checks of an [`EventStore`] against the
//! [`Oracle`], plus fixed scenarios too large for generated cases.

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::StreamExt;

use feed_core::validate::now_ns;
use feed_core::{
    AppendStatus, Cursor, Did, Entry, ErrorCode, EventId, EventStore, EventType, EventView,
    FeedEvent, FeedStore, Filter, MemoryVectorIndex, SearchQuery, StoreError, VectorFilter,
};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRng, TestRunner};

use crate::gen::{self, did, Op, Realiser, Scenario, QUERY_TAGS, TS_SLOTS};
use crate::oracle::{Expect, Oracle};
use crate::ranking::compare_ranked;

/// Makes stores for the suite. Persistent backends put each store in its
/// own fresh directory and reopen it from the same path.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// The backend.
    type Store: EventStore + 'static;
    /// A new, empty store.
    async fn create(&self) -> Result<Self::Store, StoreError>;
    /// Closes `store` and opens it again from where it persists (an
    /// in-memory backend returns it unchanged).
    async fn reopen(&self, store: Self::Store) -> Result<Self::Store, StoreError>;
}

/// How hard the suite tries.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// Generated scenarios (default: `PROPTEST_CASES`, else 256).
    pub cases: u32,
    /// Shrinking budget.
    pub max_shrink_iters: u32,
    /// Also run the large fixed scenarios (deep, wide and cyclic threads).
    pub fixed_scenarios: bool,
    /// Use proptest's fixed seed instead of a random one (reproducible runs).
    pub deterministic: bool,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        SuiteConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            max_shrink_iters: 2_000,
            fixed_scenarios: true,
            deterministic: false,
        }
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a tokio runtime: {e}"))
}

/// Runs the suite; `Err` carries the failure and the minimal scenario.
pub fn event_store_suite<F: StoreFactory>(factory: &F, cfg: &SuiteConfig) -> Result<(), String> {
    let rt = runtime();
    let config = Config {
        cases: cfg.cases,
        max_shrink_iters: cfg.max_shrink_iters,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = if cfg.deterministic {
        let rng = TestRng::deterministic_rng(config.rng_algorithm);
        TestRunner::new_with_rng(config, rng)
    } else {
        TestRunner::new(config)
    };
    let result = runner.run(&gen::scenario(), |sc| {
        rt.block_on(run_scenario(factory, &sc))
            .map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, sc)) => {
            return Err(format!(
                "conformance failure: {why}\nminimal scenario (ids are 1, 2, 3… in order of appearance):\n{sc:#?}"
            ))
        }
        Err(e) => return Err(format!("conformance suite aborted: {e}")),
    }
    if cfg.fixed_scenarios {
        rt.block_on(fixed_scenarios(factory))?;
    }
    Ok(())
}

/// Runs the suite and panics with a readable report on failure.
pub fn run_event_store_suite<F: StoreFactory>(factory: &F) {
    if let Err(e) = event_store_suite(factory, &SuiteConfig::default()) {
        panic!("{e}");
    }
}

type Fs<S> = FeedStore<S, MemoryVectorIndex>;

fn expect_of(s: &AppendStatus) -> Expect {
    match s {
        AppendStatus::Accepted => Expect::Accepted,
        AppendStatus::Duplicate => Expect::Duplicate,
        AppendStatus::Rejected(r) => Expect::Rejected(r.code),
    }
}

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: backend error: {e}")
}

async fn run_scenario<F: StoreFactory>(factory: &F, sc: &Scenario) -> Result<(), String> {
    let store = factory.create().await.map_err(err("create"))?;
    let mut fs: Fs<F::Store> = FeedStore::new(store, Some(MemoryVectorIndex::new()), None);
    let mut oracle = Oracle::default();
    let mut real = Realiser::default();
    for (step, op) in sc.ops.iter().enumerate() {
        let now = now_ns();
        let batch: Vec<FeedEvent> = match op {
            Op::Append(gs) => gs.iter().map(|g| real.realise(g, now)).collect(),
            Op::Resend(p) => real.resend(*p).into_iter().collect(),
            Op::Conflict(p) => real.conflict(*p).into_iter().collect(),
            Op::Reopen => {
                let (store, index) = fs.into_parts().await.map_err(err("into_parts"))?;
                let store = factory.reopen(store).await.map_err(err("reopen"))?;
                fs = FeedStore::new(store, index, None);
                Vec::new()
            }
        };
        if !batch.is_empty() {
            let got = fs.append(batch.clone()).await.map_err(err("append"))?;
            let want = oracle.append(&batch, now);
            let got: Vec<Expect> = got.iter().map(expect_of).collect();
            if got != want {
                return Err(format!(
                    "step {step}: append statuses differ\n  batch: {batch:?}\n  want: {want:?}\n  got:  {got:?}"
                ));
            }
        }
        check_all(&fs, &oracle, sc, real.max_id())
            .await
            .map_err(|e| format!("after step {step} ({op:?}): {e}"))?;
    }
    Ok(())
}

fn same<T: PartialEq + std::fmt::Debug>(what: String, want: T, got: T) -> Result<(), String> {
    if want == got {
        Ok(())
    } else {
        Err(format!("{what} differs\n  want: {want:?}\n  got:  {got:?}"))
    }
}

/// Walks a newest-first listing page by page with `(ts, id)` cursors.
pub(crate) async fn paged<'a>(
    mut page: impl FnMut(Option<Cursor>) -> BoxFuture<'a, Result<Vec<EventView>, StoreError>>,
) -> Result<Vec<EventView>, String> {
    let mut all: Vec<EventView> = Vec::new();
    let mut before = None;
    for _ in 0..1_000 {
        let p = page(before).await.map_err(err("paging"))?;
        let Some(last) = p.last() else {
            return Ok(all);
        };
        before = Some(last.event.cursor());
        all.extend(p);
    }
    Err("paging did not end after 1,000 pages".into())
}

const PAGE: usize = 2;

async fn check_all<S: EventStore + 'static>(
    fs: &Fs<S>,
    o: &Oracle,
    sc: &Scenario,
    max_id: u64,
) -> Result<(), String> {
    let s = fs.events();
    // All ids at once, with a repeat, against `get` one by one below.
    let mut every: Vec<EventId> = (0..=max_id + 2).map(EventId).rev().collect();
    every.extend(every.first().copied());
    let many = s.get_many(&every).await.map_err(err("get_many"))?;
    same(
        "get_many(every id)".into(),
        every.iter().map(|&id| o.get(id)).collect::<Vec<_>>(),
        many,
    )?;
    let many = s.stored_many(&every).await.map_err(err("stored_many"))?;
    same(
        "stored_many(every id)".into(),
        every.iter().map(|&id| o.stored(id)).collect::<Vec<_>>(),
        many,
    )?;
    for id in (0..=max_id + 2).map(EventId) {
        same(
            format!("get({id})"),
            o.get(id),
            s.get(id).await.map_err(err("get"))?,
        )?;
        same(
            format!("stored({id})"),
            o.stored(id),
            s.stored(id).await.map_err(err("stored"))?,
        )?;
        same(
            format!("versions({id})"),
            o.versions(id),
            s.versions(id).await.map_err(err("versions"))?,
        )?;
        same(
            format!("thread({id})"),
            o.thread(id),
            s.thread(id).await.map_err(err("thread"))?,
        )?;
        same(
            format!("counts({id})"),
            o.counts(id),
            s.counts(id).await.map_err(err("counts"))?,
        )?;
    }
    for a in 0..gen::AUTHORS as u8 {
        let d: Did = did(a);
        let full = o.timeline(&d, 500, None);
        same(
            format!("timeline({a})"),
            &full,
            &s.timeline(&d, 500, None).await.map_err(err("timeline"))?,
        )?;
        same(
            format!("timeline({a}) paged by {PAGE}"),
            &full,
            &paged(|b| s.timeline(&d, PAGE, b)).await?,
        )?;
        same(
            format!("timeline({a}, limit 1000 clamps to 500)"),
            o.timeline(&d, 1000, None),
            s.timeline(&d, 1000, None).await.map_err(err("timeline"))?,
        )?;
        same(
            format!("author_feed({a})"),
            o.author_feed(&d, None, None, 500),
            s.author_feed(&d, None, None, 500)
                .await
                .map_err(err("author_feed"))?,
        )?;
        let (since, until) = (Some(TS_SLOTS[2]), Some(TS_SLOTS[7]));
        same(
            format!("author_feed({a}, since, until, 2)"),
            o.author_feed(&d, since, until, 2),
            s.author_feed(&d, since, until, 2)
                .await
                .map_err(err("author_feed"))?,
        )?;
        same(
            format!("following({a})"),
            o.following(&d),
            s.following(&d).await.map_err(err("following"))?,
        )?;
        same(
            format!("followers({a})"),
            o.followers(&d),
            s.followers(&d).await.map_err(err("followers"))?,
        )?;
        let full = o.mentions(&d, 500, None);
        same(
            format!("mentions({a})"),
            &full,
            &s.mentions(&d, 500, None).await.map_err(err("mentions"))?,
        )?;
        same(
            format!("mentions({a}) paged by {PAGE}"),
            &full,
            &paged(|b| s.mentions(&d, PAGE, b)).await?,
        )?;
    }
    for t in QUERY_TAGS {
        let full = o.tag(t, 500, None);
        same(
            format!("tag({t:?})"),
            &full,
            &s.tag(t, 500, None).await.map_err(err("tag"))?,
        )?;
        same(
            format!("tag({t:?}) paged by {PAGE}"),
            &full,
            &paged(|b| s.tag(t, PAGE, b)).await?,
        )?;
    }
    for g in &sc.filters {
        let f = g.filter();
        same(
            format!("query({f:?})"),
            o.query(&f),
            s.query(&f).await.map_err(err("query"))?,
        )?;
        check_query_pages(s, o, &f).await?;
        let got: Vec<(i64, EventType, u64)> = s
            .buckets(&f, g.width)
            .await
            .map_err(err("buckets"))?
            .into_iter()
            .map(|b| (b.start, b.kind, b.count))
            .collect();
        same(
            format!("buckets({f:?}, {:?})", g.width),
            o.buckets(&f, g.width),
            got,
        )?;
    }
    let stats = s.stats().await.map_err(err("stats"))?;
    same("stats().live".into(), o.live_counts(), stats.live)?;
    same("stats().stored".into(), o.events.len() as u64, stats.stored)?;
    let mut exported = Vec::new();
    let mut stream = s.export();
    while let Some(e) = stream.next().await {
        exported.push(e.map_err(err("export"))?);
    }
    drop(stream);
    same("export()".into(), &o.events, &exported)?;
    check_log(s, &exported).await?;
    check_search(fs, o, sc).await
}

/// `query_pages` hands out `query`'s answer in order, whatever the page
/// size (pages of 1 and 2 cut through runs of equal `ts`), no page larger
/// than asked, and stops after the page whose `visit` says so.
async fn check_query_pages<S: EventStore>(s: &S, o: &Oracle, f: &Filter) -> Result<(), String> {
    let want = o.query(f);
    for page in [1, 2, 5] {
        same(
            format!("query_pages({f:?}, {page})"),
            &want,
            &all_pages(s, f, page).await?,
        )?;
        let mut first = Vec::new();
        s.query_pages(f, page, &mut |p| {
            first.extend(p);
            false
        })
        .await
        .map_err(err("query_pages"))?;
        same(
            format!("query_pages({f:?}, {page}) stopped after one page"),
            &want[..want.len().min(page)],
            &first[..],
        )?;
    }
    Ok(())
}

/// Every page `query_pages(f, page)` hands out, in order, joined; an error
/// for a page that is empty or larger than `page`.
async fn all_pages<S: EventStore>(
    s: &S,
    f: &Filter,
    page: usize,
) -> Result<Vec<EventView>, String> {
    let mut pages: Vec<Vec<EventView>> = Vec::new();
    s.query_pages(f, page, &mut |p| {
        pages.push(p);
        true
    })
    .await
    .map_err(err("query_pages"))?;
    if let Some(bad) = pages.iter().find(|p| p.len() > page || p.is_empty()) {
        return Err(format!(
            "query_pages({f:?}, {page}): a page of {} events",
            bad.len()
        ));
    }
    Ok(pages.concat())
}

/// The arrival log holds every stored event once, in `export`'s order,
/// numbered upwards to `log_head`; a page of it is the part numbered
/// above its `after`, cut at its `limit`.
async fn check_log<S: EventStore>(s: &S, exported: &[FeedEvent]) -> Result<(), String> {
    let head = s.log_head().await.map_err(err("log_head"))?;
    let all = s.log(0, exported.len() + 1).await.map_err(err("log"))?;
    let events: Vec<&FeedEvent> = all.iter().map(|(_, e)| e).collect();
    same(
        "log(0, all) against export()".into(),
        exported.iter().collect::<Vec<_>>(),
        events,
    )?;
    let numbers: Vec<u64> = all.iter().map(|&(n, _)| n).collect();
    if numbers.first().is_some_and(|&n| n == 0) || numbers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("log numbers are not 1.. ascending: {numbers:?}"));
    }
    same(
        "log_head() against the last log number".into(),
        numbers.last().copied().unwrap_or(0),
        head,
    )?;
    let len = numbers.len();
    for cut in [0, 1, len / 2, len.saturating_sub(1), len] {
        let cut = cut.min(len);
        let after = if cut == 0 { 0 } else { numbers[cut - 1] };
        for limit in [1, 7, len + 1] {
            let want: Vec<u64> = numbers[cut..].iter().copied().take(limit).collect();
            let got: Vec<u64> = s
                .log(after, limit)
                .await
                .map_err(err("log"))?
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            same(format!("log({after}, {limit}) numbers"), want, got)?;
        }
    }
    for after in [head, head.saturating_add(10), u64::MAX] {
        same(
            format!("log({after}, 5) past the head"),
            0,
            s.log(after, 5).await.map_err(err("log"))?.len(),
        )?;
    }
    Ok(())
}

async fn check_search<S: EventStore + 'static>(
    fs: &Fs<S>,
    o: &Oracle,
    sc: &Scenario,
) -> Result<(), String> {
    // The index may lag the event store (SPEC §4); wait for it.
    fs.wait_for_index().await.map_err(err("wait_for_index"))?;
    let status = fs.index_status().await.map_err(err("index_status"))?;
    same(
        "index lag after flush".into(),
        (0, None),
        (status.lag, status.last_error),
    )?;
    let rows = o.searchable();
    for &q in &sc.queries {
        let qv = gen::embedding(q);
        for (label, filter) in [
            ("none", VectorFilter::default()),
            (
                "author A, since slot 2",
                VectorFilter {
                    authors: Some(vec![did(0)]),
                    since: Some(TS_SLOTS[2]),
                    types: Some(vec![EventType::Post]),
                    until: None,
                },
            ),
            (
                "types: post and reaction",
                VectorFilter {
                    types: Some(vec![EventType::Reaction, EventType::Post]),
                    ..Default::default()
                },
            ),
            (
                "types: reaction",
                VectorFilter {
                    types: Some(vec![EventType::Reaction]),
                    ..Default::default()
                },
            ),
        ] {
            let reference: Vec<(EventId, f32)> = rows
                .iter()
                .filter(|(_, a, ts, _)| filter.matches(EventType::Post, a, *ts))
                .map(|(id, _, _, v)| (*id, feed_core::dot(qv.as_slice(), v)))
                .collect();
            let got = fs
                .search(SearchQuery::Vector(qv.clone()), &filter, 5)
                .await
                .map_err(err("search"))?;
            for h in &got {
                let want = o.get(h.view.event.id);
                if want != Some(Entry::Live(h.view.clone())) {
                    return Err(format!(
                        "search hit {} is not shown as get() shows it: {want:?}",
                        h.view.event.id
                    ));
                }
            }
            let got: Vec<(EventId, f32)> = got.iter().map(|h| (h.view.event.id, h.score)).collect();
            compare_ranked(&reference, &got, 5)
                .map_err(|e| format!("search(seed {q}, filter {label}): {e}"))?;
        }
    }
    Ok(())
}

fn post(id: u64, parent: Option<u64>) -> FeedEvent {
    let mut e = FeedEvent::new(
        EventId(id),
        EventType::Post,
        did(0),
        gen::BASE_TS + id as i64,
        "node",
    );
    e.parent = parent.map(EventId);
    e
}

/// `query_pages` over a store larger than one load of any backend: 3,000
/// posts by three authors in runs of seven sharing a `ts`, every tenth
/// deleted, every thirteenth edited. Every page size hands out `query`'s
/// answer, which holds the 2,700 live posts, the 207 edited ones with
/// their new content.
async fn long_query_pages<F: StoreFactory>(factory: &F) -> Result<(), String> {
    let s = factory.create().await.map_err(err("create"))?;
    let at = |id: u64| gen::BASE_TS + (id / 7) as i64;
    let mut evs: Vec<FeedEvent> = (1..=3_000u64)
        .map(|i| FeedEvent {
            author: did((i % 3) as u8),
            ts: at(i),
            ..post(i, None)
        })
        .collect();
    // Every thirteenth post edited, every tenth deleted, by its author.
    for (every, kind, base, dt, text) in [
        (13, EventType::Edit, 10_000, 1, "edited"),
        (10, EventType::Delete, 20_000, 2, ""),
    ] {
        for i in (every..=3_000u64).step_by(every as usize) {
            let mut e = FeedEvent::new(
                EventId(base + i),
                kind,
                did((i % 3) as u8),
                at(i) + dt,
                text,
            );
            e.parent = Some(EventId(i));
            evs.push(e);
        }
    }
    append_all(&s, evs).await?;
    let posts = Filter {
        types: Some(vec![EventType::Post]),
        ..Filter::default()
    };
    let want = s.query(&posts).await.map_err(err("query"))?;
    let edited = want
        .iter()
        .filter(|v| v.event.content.as_deref() == Some("edited"))
        .count();
    let want_edited = (1..=3_000).filter(|i| i % 13 == 0 && i % 10 != 0).count();
    if want.len() != 2_700 || edited != want_edited {
        return Err(format!(
            "3,000 posts: query gave {} live posts, {edited} edited; want 2,700 and {want_edited}",
            want.len()
        ));
    }
    let filters = [
        Filter::default(),
        posts,
        Filter {
            authors: Some(vec![did(1)]),
            ..Filter::default()
        },
        Filter {
            until: Some(at(2_000)),
            limit: Some(1_500),
            ..Filter::default()
        },
    ];
    for f in &filters {
        let want = s.query(f).await.map_err(err("query"))?;
        for page in [1, 7, 300, 1_000, 5_000] {
            same(
                format!("query_pages({f:?}, {page}) of 3,000 posts"),
                &want,
                &all_pages(&s, f, page).await?,
            )?;
        }
    }
    Ok(())
}

async fn append_all<S: EventStore>(s: &S, events: Vec<FeedEvent>) -> Result<(), String> {
    for chunk in events.chunks(1_000) {
        let st = s.append(chunk.to_vec()).await.map_err(err("append"))?;
        if let Some(bad) = st.iter().find(|s| **s != AppendStatus::Accepted) {
            return Err(format!(
                "fixed scenario: an event was not accepted: {bad:?}"
            ));
        }
    }
    Ok(())
}

fn check_depths(
    what: &str,
    t: &feed_core::Thread,
    n: usize,
    truncated: bool,
) -> Result<(), String> {
    if t.nodes.len() != n || t.truncated != truncated {
        return Err(format!(
            "{what}: {} nodes (truncated {}), want {n} (truncated {truncated})",
            t.nodes.len(),
            t.truncated
        ));
    }
    Ok(())
}

/// Deep, wide and cyclic threads: the 10,000-node cap and cycle safety.
async fn fixed_scenarios<F: StoreFactory>(factory: &F) -> Result<(), String> {
    // A reply chain 10,050 deep: truncated to the 10,000 shallowest.
    let s = factory.create().await.map_err(err("create"))?;
    append_all(
        &s,
        (1..=10_050)
            .map(|i| post(i, (i > 1).then(|| i - 1)))
            .collect(),
    )
    .await?;
    let t = s.thread(EventId(1)).await.map_err(err("thread"))?;
    check_depths("10,050-deep chain", &t, 10_000, true)?;
    if t.nodes
        .iter()
        .enumerate()
        .any(|(i, n)| n.depth as usize != i)
    {
        return Err("10,050-deep chain: depths are not 0, 1, 2, … in order".into());
    }
    let c = s.counts(EventId(1)).await.map_err(err("counts"))?;
    if c.map(|c| (c.replies, c.thread_size)) != Some((1, 10_049)) {
        return Err(format!("10,050-deep chain: counts {c:?}"));
    }
    long_query_pages(factory).await?;
    // Parent cycles of 2, 3, 10, 100 and 1,000 posts in one store, every
    // post arriving before its parent (post k's parent is k + 1, the last
    // one's is the first): a thread from any member holds the whole cycle
    // once and stops where it would re-enter its root. A cycle of one, a
    // post that is its own parent, is rejected `bad_field`.
    let s = factory.create().await.map_err(err("create"))?;
    let own = s
        .append(vec![post(10_001, Some(10_001))])
        .await
        .map_err(err("append"))?;
    if !matches!(own.as_slice(), [AppendStatus::Rejected(r)] if r.code == ErrorCode::BadField) {
        return Err(format!(
            "a post that is its own parent: {own:?}, want bad_field"
        ));
    }
    let cycles: [(u64, u64); 5] = [
        (2, 20_000),
        (3, 30_000),
        (10, 40_000),
        (100, 50_000),
        (1_000, 60_000),
    ];
    let mut evs = Vec::new();
    for (len, base) in cycles {
        evs.extend(
            (1..=len).map(|k| post(base + k, Some(base + if k == len { 1 } else { k + 1 }))),
        );
    }
    append_all(&s, evs).await?;
    for (len, base) in cycles {
        let what = format!("{len}-cycle");
        let t = s.thread(EventId(base + 1)).await.map_err(err("thread"))?;
        check_depths(&what, &t, len as usize, false)?;
        let depths: Vec<u32> = t.nodes.iter().map(|n| n.depth).collect();
        // Root k = 1; its child is the last post (depth 1), whose child is
        // the one before it (depth 2)…; nodes come oldest first after the root.
        let want: Vec<u32> = std::iter::once(0)
            .chain((2..=len).map(|k| (len + 1 - k) as u32))
            .collect();
        if depths != want {
            return Err(format!("{what}: depths {depths:?}, want {want:?}"));
        }
        let mid = base + len.div_ceil(2);
        let t = s.thread(EventId(mid)).await.map_err(err("thread"))?;
        check_depths(&format!("{what} from its middle"), &t, len as usize, false)?;
        let c = s.counts(EventId(base + 1)).await.map_err(err("counts"))?;
        if c.map(|c| c.thread_size) != Some(len - 1) {
            return Err(format!(
                "{what}: counts {c:?}, want a thread size of {}",
                len - 1
            ));
        }
    }
    // Events that arrive before their targets, then a reopen, then the
    // targets: a reply joins its parent's thread, a delete deletes, an
    // edit takes effect (a store must find such early events again after
    // reopening, not only within one session).
    let s = factory.create().await.map_err(err("create"))?;
    let mut del = FeedEvent::new(EventId(4), EventType::Delete, did(0), gen::BASE_TS + 4, "");
    del.parent = Some(EventId(3));
    let mut edit = FeedEvent::new(
        EventId(6),
        EventType::Edit,
        did(0),
        gen::BASE_TS + 6,
        "edited",
    );
    edit.parent = Some(EventId(5));
    // A follow deleted before it arrives never becomes an edge.
    let mut unfollow = FeedEvent::new(EventId(8), EventType::Delete, did(0), gen::BASE_TS + 8, "");
    unfollow.parent = Some(EventId(7));
    let follow = |id: u64, whom: u8| FeedEvent {
        mentions: vec![did(whom)],
        ..FeedEvent::new(
            EventId(id),
            EventType::Follow,
            did(0),
            gen::BASE_TS + id as i64,
            "",
        )
    };
    append_all(&s, vec![post(2, Some(1)), del, edit, unfollow]).await?;
    let s = factory.reopen(s).await.map_err(err("reopen"))?;
    append_all(
        &s,
        vec![
            post(1, None),
            post(3, None),
            post(5, None),
            follow(7, 1),
            follow(9, 2),
        ],
    )
    .await?;
    let following = s.following(&did(0)).await.map_err(err("following"))?;
    if following != [did(2)] {
        return Err(format!(
            "a follow deleted before it arrived, then a reopen: following {following:?}, want [{:?}]",
            did(2)
        ));
    }
    let t = s.thread(EventId(1)).await.map_err(err("thread"))?;
    let ids: Vec<EventId> = t.nodes.iter().map(|n| n.entry.id()).collect();
    if ids != [EventId(1), EventId(2)] {
        return Err(format!(
            "a reply stored before its parent, then a reopen: thread {ids:?}, want [1, 2]"
        ));
    }
    let got = s.get(EventId(3)).await.map_err(err("get"))?;
    if got != Some(Entry::Deleted(EventId(3))) {
        return Err(format!(
            "a delete stored before its target, then a reopen: get {got:?}, want deleted"
        ));
    }
    let got = s.get(EventId(5)).await.map_err(err("get"))?;
    if !matches!(&got, Some(Entry::Live(v)) if v.edited && v.event.content.as_deref() == Some("edited"))
    {
        return Err(format!(
            "an edit stored before its post, then a reopen: get {got:?}, want the edit in effect"
        ));
    }
    // 10,050 direct replies, the root deleted: placeholder root, truncated.
    let s = factory.create().await.map_err(err("create"))?;
    let mut evs: Vec<FeedEvent> = vec![post(1, None)];
    evs.extend((2..=10_051).map(|i| post(i, Some(1))));
    let mut del = FeedEvent::new(EventId(20_000), EventType::Delete, did(0), gen::BASE_TS, "");
    del.parent = Some(EventId(1));
    evs.push(del);
    append_all(&s, evs).await?;
    let t = s.thread(EventId(1)).await.map_err(err("thread"))?;
    check_depths("10,050-wide", &t, 10_000, true)?;
    if t.nodes[0].entry != Entry::Deleted(EventId(1)) {
        return Err("10,050-wide: the deleted root is not a placeholder".into());
    }
    let last = t.nodes.last().map(|n| n.entry.id());
    if last != Some(EventId(10_000)) {
        return Err(format!(
            "10,050-wide: last node {last:?}, want the oldest 9,999 replies"
        ));
    }
    Ok(())
}
