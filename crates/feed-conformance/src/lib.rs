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
pub mod fuzz;
pub mod gen;
pub mod hostile;
pub mod indexing;
pub mod oracle;
pub mod ranking;
pub mod vectors;

pub use crash::{
    crash_child, crash_workload, sigkill_cycles, spawn_test_child, verify_after_crash, CrashReport,
    StandardCrash,
};
pub use diff::compare_stores;
pub use events::{event_store_suite, run_event_store_suite, StoreFactory, SuiteConfig};
pub use hostile::{hostile_input_suite, run_hostile_input_suite};
pub use indexing::{check_index, HashEmbedder, IndexCrash, IndexCrashReport};
pub use vectors::{
    assert_recall, vector_index_suite, vector_recall, EmbeddingLike, IndexFactory, RecallReport,
};

/// Factories for stores that persist in a directory: each `create` opens a
/// fresh sub-directory of one temporary root, `reopen` closes the store and
/// opens its directory again.
pub mod dirs {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;
    use feed_core::{EventStore, IndexError, StoreError, VectorIndex};
    use futures::future::BoxFuture;

    /// Numbered sub-directories of one temporary root, one per `create`.
    struct Scratch {
        root: tempfile::TempDir,
        n: AtomicU64,
    }

    impl Scratch {
        fn new() -> std::io::Result<Scratch> {
            Ok(Scratch {
                root: tempfile::tempdir()?,
                n: AtomicU64::new(0),
            })
        }

        /// The next unused sub-directory's path.
        fn next(&self) -> PathBuf {
            let n = self.n.fetch_add(1, Ordering::Relaxed);
            self.root.path().join(n.to_string())
        }
    }

    /// Opens a store in a directory.
    pub type Opener<S> = Box<dyn Fn(&Path) -> Result<S, StoreError> + Send + Sync>;

    /// Directory-backed stores of one backend.
    pub struct DirStores<S> {
        dirs: Scratch,
        open: Opener<S>,
        dir_of: fn(&S) -> &Path,
    }

    impl<S> DirStores<S> {
        /// `open` opens (creating) a store in a directory; `dir_of` names
        /// the directory of an open store.
        pub fn new(open: Opener<S>, dir_of: fn(&S) -> &Path) -> std::io::Result<DirStores<S>> {
            Ok(DirStores {
                dirs: Scratch::new()?,
                open,
                dir_of,
            })
        }
    }

    #[async_trait]
    impl<S: EventStore + 'static> crate::StoreFactory for DirStores<S> {
        type Store = S;

        async fn create(&self) -> Result<S, StoreError> {
            (self.open)(&self.dirs.next())
        }

        async fn reopen(&self, store: S) -> Result<S, StoreError> {
            let dir: PathBuf = (self.dir_of)(&store).to_path_buf();
            store.close().await?;
            drop(store);
            (self.open)(&dir)
        }
    }

    /// Opens (creating) a vector index in a directory.
    pub type IndexOpener<V> =
        Box<dyn Fn(PathBuf) -> BoxFuture<'static, Result<V, IndexError>> + Send + Sync>;

    /// Directory-backed vector indexes of one backend, like [`DirStores`].
    pub struct DirIndexes<V> {
        dirs: Scratch,
        open: IndexOpener<V>,
        dir_of: fn(&V) -> &Path,
    }

    impl<V> DirIndexes<V> {
        /// `open` opens (creating) an index in a directory; `dir_of` names
        /// the directory of an open index.
        pub fn new(
            open: IndexOpener<V>,
            dir_of: fn(&V) -> &Path,
        ) -> std::io::Result<DirIndexes<V>> {
            Ok(DirIndexes {
                dirs: Scratch::new()?,
                open,
                dir_of,
            })
        }
    }

    #[async_trait]
    impl<V: VectorIndex + 'static> crate::IndexFactory for DirIndexes<V> {
        type Index = V;

        async fn create(&self) -> Result<V, IndexError> {
            (self.open)(self.dirs.next()).await
        }

        async fn reopen(&self, index: V) -> Result<V, IndexError> {
            let dir: PathBuf = (self.dir_of)(&index).to_path_buf();
            drop(index);
            (self.open)(dir).await
        }
    }
}

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
