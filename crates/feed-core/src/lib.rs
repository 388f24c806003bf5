//! feed-core: the contract of Feed (see `SPEC.md`).
//!
//! - [`model`]: events, ids, DIDs, hashes, embeddings and query results;
//! - [`validate`]: the SPEC's rules and error codes;
//! - [`jsonl`]: the JSON Lines interchange;
//! - [`snowflake`]: id generation; [`rng`]: seeded PRNG for data sets;
//! - [`thread`]: thread shaping shared by backends;
//! - [`traits`]: [`EventStore`], [`VectorIndex`], [`Embedder`];
//! - [`memory`], [`memvec`]: in-memory backends;
//! - [`facade`]: [`FeedStore`], which owns the write path and search;
//! - [`worker`]: a synchronous engine behind the async [`EventStore`].

pub mod facade;
pub mod jsonl;
pub mod memory;
pub mod memvec;
pub mod model;
pub mod rng;
pub mod snowflake;
pub mod synth;
pub mod sys;
pub mod thread;
pub mod traits;
pub mod validate;
pub mod worker;

pub use facade::{
    CheckReport, FeedStore, IngestError, IngestReport, SearchError, SearchHit, SearchQuery,
};
pub use memory::{MemoryEventStore, PlantedBug};
pub use memvec::MemoryVectorIndex;
pub use model::*;
pub use traits::*;
pub use validate::{AppendStatus, ErrorCode, Rejection};
