//! feed-conformance: the one suite every Feed backend must pass.
//!
//! Like object_store's shared test functions, each backend crate calls
//! [`run_event_store_suite`] and [`vector_index_suite`] from its own tests
//! with a factory for its stores. The event suite is model-based: proptest
//! generates scenarios (batches of all seven types, valid and invalid,
//! duplicates, conflicts, late and foreign deletes, edits, follows, cycles,
//! ties, reopens) and after every step compares every query of SPEC §5 with
//! [`oracle::Oracle`], a naive model that shares no rule or query code with
//! the backends.

pub mod crash;
pub mod diff;
pub mod events;
pub mod gen;
pub mod oracle;
pub mod ranking;
pub mod vectors;

pub use crash::{
    crash_child, crash_workload, sigkill_cycles, spawn_test_child, verify_after_crash, CrashReport,
};
pub use diff::compare_stores;
pub use events::{event_store_suite, run_event_store_suite, StoreFactory, SuiteConfig};
pub use vectors::{
    assert_recall, vector_index_suite, vector_recall, EmbeddingLike, IndexFactory, RecallReport,
};

/// Factories for the in-memory backends of `feed-core`.
pub mod memory {
    use async_trait::async_trait;
    use feed_core::{IndexError, MemoryEventStore, MemoryVectorIndex, StoreError};

    /// Fresh `MemoryEventStore`s; reopening keeps the same store.
    pub struct MemoryStores;

    #[async_trait]
    impl crate::StoreFactory for MemoryStores {
        type Store = MemoryEventStore;
        async fn create(&self) -> Result<MemoryEventStore, StoreError> {
            Ok(MemoryEventStore::new())
        }
        async fn reopen(&self, s: MemoryEventStore) -> Result<MemoryEventStore, StoreError> {
            Ok(s)
        }
    }

    /// Fresh `MemoryVectorIndex`es; reopening keeps the same index.
    pub struct MemoryIndexes;

    #[async_trait]
    impl crate::IndexFactory for MemoryIndexes {
        type Index = MemoryVectorIndex;
        async fn create(&self) -> Result<MemoryVectorIndex, IndexError> {
            Ok(MemoryVectorIndex::new())
        }
        async fn reopen(&self, i: MemoryVectorIndex) -> Result<MemoryVectorIndex, IndexError> {
            Ok(i)
        }
    }
}
