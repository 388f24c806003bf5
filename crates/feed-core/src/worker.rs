//! Running a synchronous engine (SQLite, DuckDB) behind the async
//! [`crate::EventStore`]: one connection under a mutex, each call on
//! Tokio's blocking threads, export read in pages.

use std::sync::{Arc, Mutex};

use futures::stream::{self, BoxStream, StreamExt};

use crate::model::FeedEvent;
use crate::traits::StoreError;

/// Events per export page, so an export holds bounded memory.
const EXPORT_PAGE: usize = 512;

/// Runs `f` on Tokio's blocking threads and returns its result, or why
/// there is none (the thread panicked, or the runtime is shutting down).
///
/// Every caller's closure goes in as the same boxed type, so the runtime's
/// per-task code is compiled once instead of once per closure (13 KB of
/// the size-optimised lite binary, where each store call had its own).
pub async fn off_thread<R, F>(f: F) -> Result<R, String>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Box<dyn FnOnce() + Send> = Box::new(move || {
        // Sending fails only if the caller stopped waiting.
        let _ = tx.send(f());
    });
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| e.to_string())?;
    // The job ran to its end, so it sent its result.
    rx.await.map_err(|e| e.to_string())
}

/// An engine shared by an event store's calls; closed once, then every
/// call fails with [`StoreError::Closed`].
pub struct Worker<T> {
    slot: Arc<Mutex<Option<T>>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Wraps an open engine.
    pub fn new(engine: T) -> Worker<T> {
        Worker {
            slot: Arc::new(Mutex::new(Some(engine))),
        }
    }

    /// Runs `f` on the engine off the async threads.
    pub async fn run<R, E, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        E: Into<StoreError>,
        F: FnOnce(&mut T) -> Result<R, E> + Send + 'static,
    {
        let slot = self.slot.clone();
        off_thread(move || {
            // A panic while holding the lock cannot leave the engine
            // half-way: an open transaction rolls back when dropped.
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            let engine = guard.as_mut().ok_or(StoreError::Closed)?;
            f(engine).map_err(Into::into)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("worker thread failed: {e}")))?
    }

    /// Takes the engine out and closes it with `close`.
    pub async fn close<F>(&self, close: F) -> Result<(), StoreError>
    where
        F: FnOnce(T) -> Result<(), StoreError> + Send + 'static,
    {
        let slot = self.slot.clone();
        off_thread(move || {
            let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            taken.map_or(Ok(()), close)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("worker thread failed: {e}")))?
    }

    /// One page of the arrival log ([`crate::EventStore::log`]), read with
    /// the same page function as [`Worker::export`].
    pub async fn log<E, F>(
        &self,
        after: u64,
        limit: usize,
        page: F,
    ) -> Result<Vec<(u64, FeedEvent)>, StoreError>
    where
        E: Into<StoreError>,
        F: Fn(&mut T, i64, usize) -> Result<Vec<(i64, FeedEvent)>, E> + Send + 'static,
    {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self.run(move |t| page(t, after, limit)).await?;
        Ok(rows
            .into_iter()
            .map(|(seq, e)| (u64::try_from(seq).unwrap_or(0), e))
            .collect())
    }

    /// Every stored event in arrival order: `page(engine, after, n)` gives
    /// at most `n` `(arrival number, event)` pairs numbered above `after`.
    pub fn export<E, F>(&self, page: F) -> BoxStream<'_, Result<FeedEvent, StoreError>>
    where
        E: Into<StoreError>,
        F: Fn(&mut T, i64, usize) -> Result<Vec<(i64, FeedEvent)>, E> + Copy + Send + 'static,
    {
        stream::unfold(Some(i64::MIN), move |after| async move {
            let after = after?;
            match self.run(move |t| page(t, after, EXPORT_PAGE)).await {
                Err(e) => Some((vec![Err(e)], None)),
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = rows.last().map(|(seq, _)| *seq);
                    Some((rows.into_iter().map(|(_, e)| Ok(e)).collect(), next))
                }
            }
        })
        .flat_map(stream::iter)
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a test runtime")
    }

    #[test]
    fn off_thread_returns_what_the_closure_returns() {
        let rt = runtime();
        let v = rt.block_on(off_thread(|| vec![1u8, 2, 3]));
        assert_eq!(v, Ok(vec![1, 2, 3]));
        let s = rt.block_on(off_thread(|| String::from("other type")));
        assert_eq!(s.as_deref(), Ok("other type"));
    }

    #[test]
    fn a_panicking_closure_is_an_error_and_the_worker_still_answers() {
        let rt = runtime();
        let r: Result<u8, String> = rt.block_on(off_thread(|| panic!("boom")));
        let e = r.expect_err("a panic gives no result");
        assert!(e.contains("panic"), "{e}");
        let w = Worker::new(7u32);
        let r = rt.block_on(w.run(|_: &mut u32| -> Result<u8, StoreError> { panic!("boom") }));
        assert!(matches!(r, Err(StoreError::Backend(ref m)) if m.contains("worker thread failed")));
        let r = rt.block_on(w.run(|n: &mut u32| Ok::<_, StoreError>(*n + 1)));
        assert_eq!(r.ok(), Some(8));
    }
}
