//! SqliteEventStore passes the conformance suite, reopens included.

use feed_conformance::dirs::DirStores;
use feed_conformance::{run_event_store_suite, run_hostile_input_suite};
use feed_sqlite_lite::{SqliteConfig, SqliteEventStore, TimelinePlan};

fn stores(timeline: TimelinePlan) -> DirStores<SqliteEventStore> {
    let config = SqliteConfig {
        timeline,
        ..SqliteConfig::default()
    };
    DirStores::new(
        Box::new(move |dir| SqliteEventStore::open(dir, &config)),
        SqliteEventStore::dir,
    )
    .expect("temp dir")
}

fn suite(timeline: TimelinePlan) {
    run_event_store_suite(&stores(timeline));
}

#[test]
fn sqlite_event_store_takes_hostile_input() {
    run_hostile_input_suite(&stores(TimelinePlan::Auto));
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
