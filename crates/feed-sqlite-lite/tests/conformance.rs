//! SqliteEventStore passes the conformance suite, reopens included.

use feed_conformance::dirs::DirStores;
use feed_conformance::run_event_store_suite;
use feed_sqlite_lite::{SqliteConfig, SqliteEventStore, TimelinePlan};

fn suite(timeline: TimelinePlan) {
    let config = SqliteConfig {
        timeline,
        ..SqliteConfig::default()
    };
    let stores = DirStores::new(
        Box::new(move |dir| SqliteEventStore::open(dir, &config)),
        SqliteEventStore::dir,
    )
    .expect("temp dir");
    run_event_store_suite(&stores);
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
