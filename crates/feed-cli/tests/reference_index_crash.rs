//! SIGKILL while the background indexer works, on the reference pair
//! (`DuckEventStore` + `LanceVectorIndex`): after each kill the reopened
//! pair catches up and its index holds exactly the live posts with
//! content, each with its visible version's vector. The maintenance
//! schedule is tightened so that kills also land inside compactions.
//! `FEED_CRASH_CYCLES` sets the number of cycles (default 10).
#![cfg(feature = "reference")]

use feed_conformance::IndexCrash;
use feed_duckdb::{DuckConfig, DuckEventStore};
use feed_lance::{LanceConfig, LanceVectorIndex};

const CRASH: IndexCrash<DuckEventStore, LanceVectorIndex> = IndexCrash {
    seed: 20_261_130,
    child_test: "reference_index_crash_child_process",
    // Each reopen of DuckDB and Lance costs seconds in a debug build.
    cycles: 10,
    open: |dir| {
        Box::pin(async move {
            let events =
                DuckEventStore::open(dir, &DuckConfig::default()).map_err(|e| e.to_string())?;
            let cfg = LanceConfig {
                optimize_writes: 4,
                ..LanceConfig::default()
            };
            let index = LanceVectorIndex::open(&dir.join("vectors"), cfg)
                .await
                .map_err(|e| e.to_string())?;
            Ok((events, index))
        })
    },
};

/// The child: only does something when started by the parent test.
#[test]
#[ignore = "run as a child process by sigkill_while_indexing_loses_nothing"]
fn reference_index_crash_child_process() {
    CRASH.child();
}

#[test]
fn sigkill_while_indexing_loses_nothing() {
    CRASH.run();
}
