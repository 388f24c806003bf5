//! SIGKILL while the background indexer works: a child appends through
//! `FeedStore<SqliteEventStore, UsearchVectorIndex>` with a (deliberately
//! slow) test embedder and is killed at random moments; after each kill the
//! reopened pair catches up and its index holds exactly the live posts with
//! content, each with its visible version's vector.
//! `FEED_CRASH_CYCLES` sets the number of cycles (default 20).

use feed_conformance::IndexCrash;
use feed_sqlite_lite::{SqliteConfig, SqliteEventStore, UsearchConfig, UsearchVectorIndex};

const CRASH: IndexCrash<SqliteEventStore, UsearchVectorIndex> = IndexCrash {
    seed: 20_261_129,
    child_test: "index_crash_child_process",
    cycles: 20,
    open: |dir| {
        Box::pin(async move {
            let events =
                SqliteEventStore::open(dir, &SqliteConfig::default()).map_err(|e| e.to_string())?;
            // A small merge threshold so that kills also land during merges.
            let cfg = UsearchConfig {
                merge_min: 256,
                ..UsearchConfig::default()
            };
            let index =
                UsearchVectorIndex::open(&dir.join("vectors"), cfg).map_err(|e| e.to_string())?;
            Ok((events, index))
        })
    },
};

/// The child: only does something when started by the parent test.
#[test]
#[ignore = "run as a child process by sigkill_while_indexing_loses_nothing"]
fn index_crash_child_process() {
    CRASH.child();
}

#[test]
fn sigkill_while_indexing_loses_nothing() {
    CRASH.run();
}
