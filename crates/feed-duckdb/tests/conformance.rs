//! DuckEventStore passes the conformance suite, reopens included.

use feed_conformance::dirs::DirStores;
use feed_conformance::{run_event_store_suite, run_hostile_input_suite};
use feed_duckdb::{DuckConfig, DuckEventStore};

fn stores() -> DirStores<DuckEventStore> {
    DirStores::new(
        Box::new(|dir| DuckEventStore::open(dir, &DuckConfig::default())),
        DuckEventStore::dir,
    )
    .expect("temp dir")
}

#[test]
fn duckdb_event_store_passes_the_suite() {
    run_event_store_suite(&stores());
}

#[test]
fn duckdb_event_store_takes_hostile_input() {
    run_hostile_input_suite(&stores());
}
