//! Prints the suite's report for one planted bug, to see what a shrunk
//! failure looks like: `cargo run -p feed-conformance --example show_failure`.

use async_trait::async_trait;
use feed_conformance::{event_store_suite, StoreFactory, SuiteConfig};
use feed_core::{MemoryEventStore, PlantedBug, StoreError};

struct Buggy;

#[async_trait]
impl StoreFactory for Buggy {
    type Store = MemoryEventStore;
    async fn create(&self) -> Result<MemoryEventStore, StoreError> {
        Ok(MemoryEventStore::with_bug(PlantedBug::LateDeleteIgnored))
    }
    async fn reopen(&self, s: MemoryEventStore) -> Result<MemoryEventStore, StoreError> {
        Ok(s)
    }
}

fn main() {
    match event_store_suite(&Buggy, &SuiteConfig::default()) {
        Err(report) => println!("{report}"),
        Ok(()) => println!("the suite passed: the planted bug was not found"),
    }
}
