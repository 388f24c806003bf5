//! Queries whose answers hold more content than DuckDB's `memory_limit`
//! still answer: DuckDB here has no temporary directory to spill to, so
//! a statement that sorted every matching row with its content failed
//! ("Out of Memory Error") once the store outgrew the limit (seen at 1M
//! events with the default 96 MiB). This store holds ~40 MiB of content
//! under a 16 MiB limit.

use feed_core::{
    AppendStatus, BucketWidth, Did, EventId, EventStore, EventType, FeedEvent, Filter,
};
use feed_duckdb::{DuckConfig, DuckEventStore};

const EVENTS: u64 = 10_000;
const BATCH: u64 = 1_000;
const TS0: i64 = 1_700_000_000_000_000_000;
/// A minute apart.
const STEP: i64 = 60_000_000_000;

fn author(i: u64) -> Did {
    Did([1 + (i % 3) as u8; 32])
}

fn event(i: u64) -> FeedEvent {
    // Distinct text, so DuckDB cannot store it as a small dictionary.
    let content = format!("{i:08} {}", "lorem ipsum dolor sit amet ".repeat(150));
    let ev = FeedEvent::new(
        EventId(1_000_000 + i),
        EventType::Post,
        author(i),
        TS0 + i as i64 * STEP,
        &content,
    )
    .with_tags(if i % 2 == 0 {
        vec!["even"]
    } else {
        vec!["odd"]
    });
    if i % 5 == 0 {
        ev.with_mentions([Did([9; 32])])
    } else {
        ev
    }
}

#[test]
fn long_answers_fit_a_small_memory_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = DuckConfig {
        memory_limit_mib: 16,
        tail_cache_kib: 0,
        ..DuckConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = DuckEventStore::open(dir.path(), &config).expect("open");
        for start in (0..EVENTS).step_by(BATCH as usize) {
            let batch = (start..start + BATCH).map(event).collect();
            let st = store.append(batch).await.expect("append");
            assert!(st.iter().all(|s| *s == AppendStatus::Accepted), "{st:?}");
        }
        let ids = |views: Vec<feed_core::EventView>| -> Vec<u64> {
            views.into_iter().map(|v| v.event.id.0).collect()
        };
        let newest_first = |keep: &dyn Fn(u64) -> bool| -> Vec<u64> {
            (0..EVENTS)
                .rev()
                .filter(|&i| keep(i))
                .map(|i| 1_000_000 + i)
                .collect()
        };

        let all = store.query(&Filter::default()).await.expect("query all");
        assert_eq!(all.len(), EVENTS as usize);
        assert_eq!(all[17].event, event(EVENTS - 18), "whole rows, in order");
        assert_eq!(ids(all), newest_first(&|_| true));

        let even = Filter {
            tags: Some(vec!["even".into()]),
            ..Filter::default()
        };
        let got = store.query(&even).await.expect("query by tag");
        assert_eq!(ids(got), newest_first(&|i| i % 2 == 0));

        let mentioned = Filter {
            mentions: Some(vec![Did([9; 32])]),
            authors: Some(vec![author(0), author(1)]),
            limit: Some(700),
            ..Filter::default()
        };
        let want: Vec<u64> = newest_first(&|i| i % 5 == 0 && i % 3 != 2)
            .into_iter()
            .take(700)
            .collect();
        let got = store.query(&mentioned).await.expect("query by mention");
        assert_eq!(ids(got), want);

        let by_author = Filter {
            authors: Some(vec![author(1)]),
            tags: Some(vec!["ODD".into(), "#even".into()]),
            ..Filter::default()
        };
        let buckets = store
            .buckets(&by_author, BucketWidth::Hour)
            .await
            .expect("buckets");
        let total: u64 = buckets.iter().map(|b| b.count).sum();
        assert_eq!(total, (0..EVENTS).filter(|i| i % 3 == 1).count() as u64);
        assert!(buckets.windows(2).all(|w| w[0].start < w[1].start));
        assert!(buckets.iter().all(|b| b.kind == EventType::Post));
    });
}
