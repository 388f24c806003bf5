//! The suite has teeth: each bug planted in a variant of the memory backend
//! makes it fail.

use async_trait::async_trait;
use feed_conformance::{event_store_suite, StoreFactory, SuiteConfig};
use feed_core::{MemoryEventStore, PlantedBug, StoreError};

struct Buggy(PlantedBug);

#[async_trait]
impl StoreFactory for Buggy {
    type Store = MemoryEventStore;
    async fn create(&self) -> Result<MemoryEventStore, StoreError> {
        Ok(MemoryEventStore::with_bug(self.0))
    }
    async fn reopen(&self, s: MemoryEventStore) -> Result<MemoryEventStore, StoreError> {
        Ok(s)
    }
}

#[test]
fn the_suite_fails_on_every_planted_bug() {
    let cfg = SuiteConfig {
        cases: 256,
        max_shrink_iters: 200,
        fixed_scenarios: false,
    };
    let mut missed = Vec::new();
    for bug in PlantedBug::ALL {
        match event_store_suite(&Buggy(bug), &cfg) {
            Err(report) => {
                let first = report.lines().next().unwrap_or_default();
                eprintln!("{bug:?}: caught — {first}");
            }
            Ok(()) => missed.push(bug),
        }
    }
    assert!(
        missed.is_empty(),
        "the suite missed planted bugs: {missed:?}"
    );
}
