//! SqliteEventStore passes the conformance suite, reopens included.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use feed_conformance::{run_event_store_suite, StoreFactory};
use feed_core::{EventStore, StoreError};
use feed_sqlite_lite::{SqliteConfig, SqliteEventStore, TimelinePlan};

struct Stores {
    root: tempfile::TempDir,
    n: AtomicU64,
    config: SqliteConfig,
}

#[async_trait]
impl StoreFactory for Stores {
    type Store = SqliteEventStore;

    async fn create(&self) -> Result<SqliteEventStore, StoreError> {
        let dir = self
            .root
            .path()
            .join(self.n.fetch_add(1, Ordering::Relaxed).to_string());
        SqliteEventStore::open(&dir, &self.config)
    }

    async fn reopen(&self, store: SqliteEventStore) -> Result<SqliteEventStore, StoreError> {
        let dir = store.dir().to_path_buf();
        store.close().await?;
        drop(store);
        SqliteEventStore::open(&dir, &self.config)
    }
}

fn suite(timeline: TimelinePlan) {
    run_event_store_suite(&Stores {
        root: tempfile::tempdir().expect("temp dir"),
        n: AtomicU64::new(0),
        config: SqliteConfig {
            timeline,
            ..SqliteConfig::default()
        },
    });
}

#[test]
fn sqlite_event_store_passes_the_suite() {
    suite(TimelinePlan::Auto);
}

/// Auto merges the small follow sets generated scenarios have; the scan
/// plan must be held to the same answers.
#[test]
fn sqlite_event_store_passes_the_suite_with_scanned_timelines() {
    suite(TimelinePlan::Scan);
}
