//! DuckEventStore passes the conformance suite, reopens included: half the
//! generated scenarios (and the large fixed ones) with the default
//! settings, where a test store's content rows all fit the in-memory
//! tail, and half with a tail of about 15 rows, so that reads mix rows
//! from the tail with rows fetched from DuckDB, and timelines are answered
//! from the tail, from DuckDB, or found incomplete in the tail and asked
//! again.

use feed_conformance::dirs::DirStores;
use feed_conformance::{event_store_suite, run_hostile_input_suite, SuiteConfig};
use feed_duckdb::{DuckConfig, DuckEventStore};

fn stores(config: DuckConfig) -> DirStores<DuckEventStore> {
    DirStores::new(
        Box::new(move |dir| DuckEventStore::open(dir, &config)),
        DuckEventStore::dir,
    )
    .expect("temp dir")
}

fn half() -> SuiteConfig {
    let all = SuiteConfig::default();
    SuiteConfig {
        cases: all.cases.div_ceil(2),
        ..all
    }
}

#[test]
fn duckdb_event_store_passes_the_suite() {
    if let Err(e) = event_store_suite(&stores(DuckConfig::default()), &half()) {
        panic!("{e}");
    }
}

#[test]
fn duckdb_event_store_passes_the_suite_with_a_small_tail() {
    let config = DuckConfig {
        tail_cache_kib: 4,
        ..DuckConfig::default()
    };
    let suite = SuiteConfig {
        fixed_scenarios: false,
        ..half()
    };
    if let Err(e) = event_store_suite(&stores(config), &suite) {
        panic!("{e}");
    }
}

#[test]
fn duckdb_event_store_takes_hostile_input() {
    run_hostile_input_suite(&stores(DuckConfig::default()));
}

/// The store file is the one in the directory given, whose path holds a
/// space and a quote (DuckDB expands the attached `~/events.duckdb`
/// against the directory, which never enters SQL text).
#[test]
fn the_store_file_is_in_the_directory_given() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("a b'c").join("store");
    let store = DuckEventStore::open(&dir, &DuckConfig::default()).expect("open");
    drop(store);
    assert!(dir.join(feed_duckdb::DB_FILE).is_file());
}
