//! SIGKILL crash test: a child process appends in batches and is killed at
//! random moments; after each kill, reopening shows every acknowledged
//! batch, no partial batch, and answers every query like a replay.
//! `FEED_CRASH_CYCLES` sets the number of cycles (default 20).

use feed_conformance::StandardCrash;
use feed_sqlite_lite::{SqliteConfig, SqliteEventStore};

const CRASH: StandardCrash<SqliteEventStore> = StandardCrash {
    seed: 20_261_123,
    child_test: "crash_child_process",
    open: |dir| SqliteEventStore::open(dir, &SqliteConfig::default()),
};

/// The child: only does something when started by the parent test.
#[test]
#[ignore = "run as a child process by sigkill_cycles_lose_nothing"]
fn crash_child_process() {
    CRASH.child();
}

#[test]
fn sigkill_cycles_lose_nothing() {
    CRASH.run();
}
