//! The write-ahead log's file: it keeps its size while the store is open
//! (instead of being truncated after every checkpoint and grown again) and
//! is emptied when the store closes or is dropped.

use feed_core::{AppendStatus, Did, EventId, EventStore, EventType, FeedEvent};
use feed_sqlite_lite::{SqliteConfig, SqliteEventStore, DB_FILE};

fn wal_len(dir: &std::path::Path) -> u64 {
    let wal = dir.join(format!("{DB_FILE}-wal"));
    std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_or_dropping_the_store_empties_its_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteEventStore::open(dir.path(), &SqliteConfig::default()).expect("open");
    // 16 batches of 10 posts of 60 KiB: ~10 MiB through the log.
    let text = "x".repeat(60 * 1024);
    let base = 7_000_000_000_000_000_000u64;
    for b in 0..16u64 {
        let batch: Vec<FeedEvent> = (0..10u64)
            .map(|i| {
                let n = b * 10 + i;
                FeedEvent::new(
                    EventId(base + n),
                    EventType::Post,
                    Did([7; 32]),
                    1_700_000_000_000_000_000 + n as i64,
                    &text,
                )
            })
            .collect();
        let st = store.append(batch).await.expect("append");
        assert!(st.iter().all(|s| *s == AppendStatus::Accepted), "{st:?}");
    }
    let open_len = wal_len(dir.path());
    assert!(
        open_len > 4 << 20,
        "the open store's log holds the batches: {open_len} bytes"
    );
    store.close().await.expect("close");
    drop(store);
    assert_eq!(wal_len(dir.path()), 0, "a closed store's log is emptied");
    let reopened = SqliteEventStore::open(dir.path(), &SqliteConfig::default()).expect("reopen");
    assert_eq!(reopened.stats().await.expect("stats").stored, 160);
    // One more batch, then dropped without `close`.
    let more = FeedEvent::new(
        EventId(base + 1_000),
        EventType::Post,
        Did([7; 32]),
        1_700_000_000_000_001_000,
        &text,
    );
    assert_eq!(
        reopened.append(vec![more]).await.expect("append"),
        vec![AppendStatus::Accepted]
    );
    assert!(wal_len(dir.path()) > 0);
    drop(reopened);
    assert_eq!(wal_len(dir.path()), 0, "a dropped store's log is emptied");
    let again = SqliteEventStore::open(dir.path(), &SqliteConfig::default()).expect("reopen");
    assert_eq!(again.stats().await.expect("stats").stored, 161);
}
