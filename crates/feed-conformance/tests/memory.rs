//! The in-memory backends pass the full suites.

use feed_conformance::memory::{MemoryIndexes, MemoryStores};
use feed_conformance::{
    assert_recall, run_event_store_suite, run_hostile_input_suite, vector_index_suite,
};

#[test]
fn memory_event_store_passes_the_suite() {
    run_event_store_suite(&MemoryStores);
}

#[test]
fn memory_event_store_takes_hostile_input() {
    run_hostile_input_suite(&MemoryStores);
}

#[test]
fn memory_vector_index_passes_the_suite() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    if let Err(e) = vector_index_suite(&MemoryIndexes, cases) {
        panic!("{e}");
    }
}

#[test]
fn memory_vector_index_recall_is_perfect() {
    assert_recall(&MemoryIndexes, 2_000, 20, 1.0);
}
