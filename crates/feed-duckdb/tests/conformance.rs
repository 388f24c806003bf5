//! DuckEventStore passes the conformance suite, reopens included.

use feed_conformance::dirs::DirStores;
use feed_conformance::run_event_store_suite;
use feed_duckdb::{DuckConfig, DuckEventStore};

#[test]
fn duckdb_event_store_passes_the_suite() {
    let stores = DirStores::new(
        Box::new(|dir| DuckEventStore::open(dir, &DuckConfig::default())),
        DuckEventStore::dir,
    )
    .expect("temp dir");
    run_event_store_suite(&stores);
}
