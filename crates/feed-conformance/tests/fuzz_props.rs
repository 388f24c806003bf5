//! The fuzz targets' bodies (`feed_conformance::fuzz`, run by cargo-fuzz
//! from `fuzz/` on nightly) as proptest properties on stable: random bytes,
//! and valid event lines cut, spliced and mutated byte by byte.

use feed_conformance::fuzz::{ingest_memory, jsonl_lines};
use feed_core::jsonl::event_line;
use feed_core::{Did, EventId, EventType, FeedEvent};
use proptest::prelude::*;

/// Valid lines of every type, the material the mutations start from.
fn seeds() -> Vec<Vec<u8>> {
    let a = Did([1; 32]);
    let b = Did([2; 32]);
    let ts = 1_700_000_000_000_000_000;
    let aimed = |id, kind, author, parent| FeedEvent {
        parent: Some(EventId(parent)),
        ..FeedEvent::new(EventId(id), kind, author, ts + id as i64, "")
    };
    let mut post = FeedEvent::new(EventId(1), EventType::Post, a, ts, "hello #world");
    post.tags = vec!["world".into()];
    post.mentions = vec![b];
    let events = [
        post,
        FeedEvent {
            tags: vec!["like".into()],
            ..aimed(2, EventType::Reaction, b, 1)
        },
        FeedEvent {
            mentions: vec![a],
            ..FeedEvent::new(EventId(3), EventType::Follow, b, ts + 3, "")
        },
        FeedEvent {
            parent: Some(EventId(1)),
            ..FeedEvent::new(EventId(4), EventType::Edit, a, ts + 4, "hello again")
        },
        aimed(5, EventType::Delete, a, 4),
        aimed(6, EventType::Post, b, 1),
    ];
    events.iter().map(|e| event_line(e).into_bytes()).collect()
}

/// One edit to a byte string.
#[derive(Clone, Debug)]
enum Op {
    Flip(usize, u8),
    Insert(usize, u8),
    Cut(usize, usize),
    Repeat(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Op::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Op::Insert(i, b)),
        (any::<usize>(), 0usize..64).prop_map(|(i, n)| Op::Cut(i, n)),
        (any::<usize>(), 0usize..64).prop_map(|(i, n)| Op::Repeat(i, n)),
    ]
}

fn apply(mut v: Vec<u8>, ops: &[Op]) -> Vec<u8> {
    for o in ops {
        let len = v.len().max(1);
        match *o {
            Op::Flip(i, b) => {
                if let Some(x) = v.get_mut(i % len) {
                    *x ^= b | 1;
                }
            }
            Op::Insert(i, b) => v.insert(i % (v.len() + 1), b),
            Op::Cut(i, n) => {
                let at = i % len;
                let end = (at + n).min(v.len());
                if at < end {
                    v.drain(at..end);
                }
            }
            Op::Repeat(i, n) => {
                let at = i % len;
                let end = (at + n).min(v.len());
                if at < end {
                    let piece = v[at..end].to_vec();
                    v.splice(end..end, piece);
                }
            }
        }
    }
    v
}

/// Seed lines in a chosen order (repeats allowed), mutated.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(0usize..6, 1..8),
        proptest::collection::vec(op(), 0..6),
    )
        .prop_map(|(pick, ops)| {
            let seeds = seeds();
            let mut input = Vec::new();
            for i in pick {
                input.extend_from_slice(&seeds[i]);
                input.push(b'\n');
            }
            apply(input, &ops)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn jsonl_lines_hold_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        jsonl_lines(&data);
    }

    #[test]
    fn jsonl_lines_hold_on_mutated_lines(data in mutated()) {
        jsonl_lines(&data);
    }

    #[test]
    fn ingest_holds_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        ingest_memory(&data);
    }

    #[test]
    fn ingest_holds_on_mutated_lines(data in mutated()) {
        ingest_memory(&data);
    }
}

/// The seeds themselves go in whole: the mutated runs start from input
/// the store accepts.
#[test]
fn the_seeds_are_accepted() {
    let mut input = Vec::new();
    for s in seeds() {
        input.extend_from_slice(&s);
        input.push(b'\n');
    }
    ingest_memory(&input);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let fs: feed_core::FeedStore<feed_core::MemoryEventStore, feed_core::MemoryVectorIndex> =
        feed_core::FeedStore::new(feed_core::MemoryEventStore::new(), None, None);
    let r = rt.block_on(fs.ingest(&input[..], 4)).expect("ingest");
    assert_eq!(r.accepted, 6, "{r:?}");
}
