//! The write path on the in-memory pair: the index follows the store
//! asynchronously, survives being stopped mid-way, and a failing index or a
//! missing embedder never fails a write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use feed_conformance::indexing::index_workload;
use feed_conformance::{check_index, HashEmbedder};
use feed_core::{
    AppendStatus, Embedding, EventId, EventStore, FeedStore, Hit, IndexError, MemoryEventStore,
    MemoryVectorIndex, SearchError, SearchMode, SearchQuery, VectorFilter, VectorIndex,
    VectorRecord,
};

type Pair = FeedStore<Arc<MemoryEventStore>, Arc<MemoryVectorIndex>>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Catching up a few log entries per step (`with_log_page`) ends in the
/// same index as the default page.
#[test]
fn small_log_pages_catch_up_exactly() {
    let work = index_workload(11, 40, 16);
    rt().block_on(async {
        let store = Arc::new(MemoryEventStore::new());
        let index = Arc::new(MemoryVectorIndex::new());
        let fs: Pair = FeedStore::new(store, Some(index), Some(Arc::new(HashEmbedder::default())))
            .with_log_page(3);
        for batch in &work {
            fs.append(batch.clone()).await.expect("append");
        }
        fs.flush().await.expect("flush");
        let n = check_index(&fs).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 40, "the workload indexes posts ({n})");
    });
}

/// The facade is dropped (its indexer stopped wherever it was) at seeded
/// moments; a new facade over the same store and index catches up and the
/// index holds exactly the live posts with content, with their visible
/// versions' vectors.
#[test]
fn stopping_the_indexer_anywhere_loses_nothing() {
    let work = index_workload(7, 100, 16);
    let rt = rt();
    let mut lagging = 0;
    for cycle in 0..12u64 {
        rt.block_on(async {
            let store = Arc::new(MemoryEventStore::new());
            let index = Arc::new(MemoryVectorIndex::new());
            let slow = HashEmbedder {
                delay: Duration::from_micros(500),
            };
            let fs: Pair = FeedStore::new(store.clone(), Some(index.clone()), Some(Arc::new(slow)));
            for batch in &work {
                fs.append(batch.clone()).await.expect("append");
            }
            tokio::time::sleep(Duration::from_millis(cycle * 4)).await;
            drop(fs);
            let fs: Pair =
                FeedStore::new(store, Some(index), Some(Arc::new(HashEmbedder::default())));
            let lag = fs.index_status().await.expect("status").lag;
            lagging += usize::from(lag > 0);
            fs.flush().await.expect("flush");
            let n = check_index(&fs)
                .await
                .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            assert!(n > 100, "the workload indexes posts ({n})");
        });
    }
    eprintln!("{lagging} of 12 stops landed while the index lagged");
    assert!(
        lagging >= 6,
        "most stops land while the index lags ({lagging} of 12)"
    );
}

/// A vector index that fails every write while `broken` is set.
struct Flaky {
    inner: MemoryVectorIndex,
    broken: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), IndexError> {
        if self.broken.load(Ordering::SeqCst) {
            Err(IndexError::Backend("disk full (injected)".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl VectorIndex for Flaky {
    async fn upsert(&self, records: Vec<VectorRecord>) -> Result<(), IndexError> {
        self.check()?;
        self.inner.upsert(records).await
    }
    async fn remove(&self, ids: &[EventId]) -> Result<(), IndexError> {
        self.check()?;
        self.inner.remove(ids).await
    }
    async fn search(
        &self,
        query: &Embedding,
        filter: &VectorFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        self.inner.search(query, filter, k).await
    }
    async fn ids(&self) -> Result<Vec<EventId>, IndexError> {
        self.inner.ids().await
    }
    async fn len(&self) -> Result<usize, IndexError> {
        self.inner.len().await
    }
    async fn flush(&self) -> Result<(), IndexError> {
        self.inner.flush().await
    }
    fn mode(&self) -> SearchMode {
        self.inner.mode()
    }
    async fn checkpoint(&self) -> Result<u64, IndexError> {
        self.inner.checkpoint().await
    }
    async fn set_checkpoint(&self, seq: u64) -> Result<(), IndexError> {
        self.check()?;
        self.inner.set_checkpoint(seq).await
    }
}

#[test]
fn a_failing_index_never_fails_a_write_and_catches_up_when_healed() {
    let work = index_workload(11, 40, 16);
    rt().block_on(async {
        let flaky = Arc::new(Flaky {
            inner: MemoryVectorIndex::new(),
            broken: AtomicBool::new(true),
        });
        let fs = FeedStore::new(
            MemoryEventStore::new(),
            Some(flaky.clone()),
            Some(Arc::new(HashEmbedder::default()) as Arc<dyn feed_core::Embedder>),
        );
        let mut accepted = 0;
        for batch in &work {
            let st = fs.append(batch.clone()).await.expect("append succeeds");
            accepted += st.iter().filter(|s| **s == AppendStatus::Accepted).count();
        }
        assert!(accepted > 0);
        fs.flush()
            .await
            .expect("flush reports index trouble in the status");
        let status = fs.index_status().await.expect("status");
        assert!(status.lag > 0, "the index is behind: {status:?}");
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("disk full")),
            "the failure is reported: {status:?}"
        );
        // Every event is stored all the same.
        let head = fs.events().log_head().await.expect("head");
        assert_eq!(head, accepted as u64);
        flaky.broken.store(false, Ordering::SeqCst);
        fs.flush().await.expect("flush");
        check_index(&fs).await.expect("caught up after healing");
    });
}

#[test]
fn without_an_embedder_only_posts_with_embeddings_are_indexed() {
    let work = index_workload(13, 30, 16);
    rt().block_on(async {
        let fs: FeedStore<MemoryEventStore, MemoryVectorIndex> = FeedStore::new(
            MemoryEventStore::new(),
            Some(MemoryVectorIndex::new()),
            None,
        );
        for batch in &work {
            fs.append(batch.clone()).await.expect("append");
        }
        fs.flush().await.expect("flush");
        let status = fs.index_status().await.expect("status");
        assert_eq!((status.lag, status.embedder), (0, false));
        let ids = fs.index().expect("index").ids().await.expect("ids");
        assert!(!ids.is_empty(), "posts carrying embeddings are indexed");
        for id in ids {
            let ev = fs.events().get(id).await.expect("get");
            match ev {
                Some(feed_core::Entry::Live(v)) => assert!(v.event.embedding.is_some()),
                other => panic!("index holds {id}, which is {other:?}"),
            }
        }
        match fs
            .search(
                SearchQuery::Text("hello".into()),
                &VectorFilter::default(),
                3,
            )
            .await
        {
            Err(SearchError::NoEmbedder) => {}
            other => panic!("text search without an embedder: {other:?}"),
        }
    });
}
