//! The bodies of the fuzz targets (`fuzz/`, cargo-fuzz on a nightly
//! toolchain), shared with the proptest properties that run them on stable
//! in CI (`tests/fuzz_props.rs`). Each takes any bytes and panics only when
//! it finds a bug.

use std::cell::RefCell;

use futures::StreamExt;

use feed_core::jsonl::{event_line, parse_line};
use feed_core::validate::{now_ns, validate};
use feed_core::{EventStore, FeedStore, MemoryEventStore, MemoryVectorIndex};

/// Any bytes as JSON Lines, one line at a time: a line that parses prints
/// back to a line that parses to the same event, and validation answers it
/// with the event or a typed rejection; a line that does not parse gets a
/// rejection that says why. Nothing panics.
pub fn jsonl_lines(data: &[u8]) {
    let now = now_ns();
    for raw in data.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(raw) else {
            continue;
        };
        match parse_line(line) {
            Ok(ev) => {
                let printed = event_line(&ev);
                match parse_line(&printed) {
                    Ok(again) => assert!(again == ev, "print → parse changed {line:?}"),
                    Err(r) => panic!("{printed:?}, printed from {line:?}, does not parse: {r}"),
                }
                if let Err(r) = validate(ev, now) {
                    assert!(!r.message.is_empty(), "a rejection without a reason");
                }
            }
            Err(r) => assert!(!r.message.is_empty(), "a rejection without a reason"),
        }
    }
}

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Any bytes ingested as JSON Lines into a fresh `MemoryEventStore` in
/// batches of 4 (the append path of SPEC §4: parse, validate, admit,
/// store): every non-blank line is counted once as accepted, duplicate or
/// rejected; what was accepted is stored, `stats` and `export` agree on
/// it, and a second ingest of the same bytes accepts nothing new.
pub fn ingest_memory(data: &[u8]) {
    RUNTIME.with(|cell| {
        let mut cell = cell.borrow_mut();
        let rt = cell.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap_or_else(|e| panic!("cannot start a runtime: {e}"))
        });
        rt.block_on(ingest_twice(data));
    });
}

async fn ingest_twice(data: &[u8]) {
    let fs: FeedStore<MemoryEventStore, MemoryVectorIndex> =
        FeedStore::new(MemoryEventStore::new(), None, None);
    // Blank: UTF-8 that is empty once trimmed (Unicode white space).
    let lines = data
        .split(|b| *b == b'\n')
        .filter(|l| std::str::from_utf8(l).map_or(true, |t| !t.trim().is_empty()))
        .count() as u64;
    let first = match fs.ingest(data, 4).await {
        Ok(r) => r,
        Err(e) => panic!("ingest failed as a whole: {e}"),
    };
    assert_eq!(
        first.accepted + first.duplicate + first.rejected,
        lines,
        "every line is counted once: {first:?}"
    );
    let stats = match fs.events().stats().await {
        Ok(s) => s,
        Err(e) => panic!("stats: {e}"),
    };
    assert_eq!(stats.stored, first.accepted, "stored = accepted");
    let exported = fs.events().export().count().await as u64;
    assert_eq!(exported, first.accepted, "export = accepted");
    let second = match fs.ingest(data, 4).await {
        Ok(r) => r,
        Err(e) => panic!("second ingest failed as a whole: {e}"),
    };
    assert_eq!(
        second.accepted, 0,
        "the same bytes again add nothing: {second:?}"
    );
}
