//! `MemoryVectorIndex`: exact brute-force search, the reference every other
//! vector index is compared with.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use async_trait::async_trait;

use crate::model::{Embedding, EventId};
use crate::traits::{Hit, IndexError, SearchMode, VectorFilter, VectorIndex, VectorRecord};

/// An in-memory, exact [`VectorIndex`].
#[derive(Default)]
pub struct MemoryVectorIndex {
    rows: RwLock<BTreeMap<EventId, VectorRecord>>,
    checkpoint: AtomicU64,
}

impl MemoryVectorIndex {
    /// An empty index.
    pub fn new() -> MemoryVectorIndex {
        MemoryVectorIndex::default()
    }

    fn rows(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<EventId, VectorRecord>> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Orders hits best first: score descending, then id ascending.
pub fn rank(hits: &mut [Hit]) {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
}

#[async_trait]
impl VectorIndex for MemoryVectorIndex {
    async fn upsert(&self, records: Vec<VectorRecord>) -> Result<(), IndexError> {
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        for r in records {
            rows.insert(r.id, r);
        }
        Ok(())
    }

    async fn remove(&self, ids: &[EventId]) -> Result<(), IndexError> {
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            rows.remove(id);
        }
        Ok(())
    }

    async fn search(
        &self,
        query: &Embedding,
        filter: &VectorFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let rows = self.rows();
        let mut hits: Vec<Hit> = rows
            .values()
            .filter(|r| filter.matches(r.kind, &r.author, r.ts))
            .map(|r| Hit {
                id: r.id,
                score: query.cosine(&r.vector),
            })
            .collect();
        rank(&mut hits);
        hits.truncate(k);
        Ok(hits)
    }

    async fn ids(&self) -> Result<Vec<EventId>, IndexError> {
        Ok(self.rows().keys().copied().collect())
    }

    async fn len(&self) -> Result<usize, IndexError> {
        Ok(self.rows().len())
    }

    async fn flush(&self) -> Result<(), IndexError> {
        Ok(())
    }

    fn mode(&self) -> SearchMode {
        SearchMode::Exact
    }

    async fn checkpoint(&self) -> Result<u64, IndexError> {
        Ok(self.checkpoint.load(Ordering::SeqCst))
    }

    async fn set_checkpoint(&self, seq: u64) -> Result<(), IndexError> {
        self.checkpoint.store(seq, Ordering::SeqCst);
        Ok(())
    }
}
