//! `hostile_input_suite`: input a stranger could send, ingested as JSON
//! Lines into a backend and into `MemoryEventStore` (which the model-based
//! suite holds to the oracle): SQL-looking text, quotes, semicolons, LIKE
//! wildcards and NUL characters in content and tags; invalid UTF-8, NUL
//! bytes, duplicate keys, 100,000-deep nesting, numbers out of range and
//! lines over 1 MiB; each SPEC §4 error code; deletes of deletes, deletes
//! and edits by someone else, and id conflicts. The backend must report
//! every line as the reference does, keep the rest of each batch, answer
//! every query like the reference (after a reopen too), and parse-level
//! garbage must be rejected `bad_json` or `too_large`.

use feed_core::jsonl::event_line;
use feed_core::validate::now_ns;
use feed_core::{
    Did, Embedding, ErrorCode, EventId, EventStore, EventType, FeedEvent, FeedStore, IngestReport,
    MemoryEventStore, MemoryVectorIndex, EMBEDDING_DIM,
};

use crate::diff::compare_stores;
use crate::events::{runtime, StoreFactory};

/// One input line and, for garbage, the codes it may be rejected with.
struct Line {
    bytes: Vec<u8>,
    garbage: Option<&'static [ErrorCode]>,
}

fn ok(ev: &FeedEvent) -> Line {
    Line {
        bytes: event_line(ev).into_bytes(),
        garbage: None,
    }
}

fn junk(bytes: impl Into<Vec<u8>>, codes: &'static [ErrorCode]) -> Line {
    Line {
        bytes: bytes.into(),
        garbage: Some(codes),
    }
}

const ALICE: Did = Did([0xa1; 32]);
const BOB: Did = Did([0xb0; 32]);
const MALLORY: Did = Did([0x3a; 32]);

/// Tags that break naive SQL or LIKE handling.
pub const HOSTILE_TAGS: [&str; 7] = [
    "x');drop--",
    "a\"b",
    "semi;colon",
    "%",
    "_",
    "back\\slash",
    "o'brien",
];

fn event(id: u64, kind: EventType, author: Did, ts: i64, content: &str) -> FeedEvent {
    FeedEvent::new(EventId(id), kind, author, ts, content)
}

fn aimed(id: u64, kind: EventType, author: Did, ts: i64, parent: u64) -> FeedEvent {
    FeedEvent {
        parent: Some(EventId(parent)),
        ..event(id, kind, author, ts, "")
    }
}

/// The hostile input, in order; ids 0..=28 and a missing target, 999.
fn lines(now: i64) -> Vec<Line> {
    let t = |n: i64| now - 1_000_000_000_000 + n * 1_000_000;
    let mut out = Vec::new();
    let mut sql = event(
        1,
        EventType::Post,
        ALICE,
        t(1),
        "'; DROP TABLE events; -- \" OR 1=1 -- `rm -rf` $(x) {{}} \\ %% __",
    );
    sql.tags = HOSTILE_TAGS[..4].iter().map(|s| s.to_string()).collect();
    sql.mentions = vec![BOB];
    out.push(ok(&sql));
    let mut nul = event(
        2,
        EventType::Post,
        BOB,
        t(2),
        "nul \0 inside, e\u{301}, \u{202e}rtl, \u{1f600}",
    );
    nul.tags = HOSTILE_TAGS[3..].iter().map(|s| s.to_string()).collect();
    let mut v = vec![0.0f32; EMBEDDING_DIM];
    v[7] = 1.0;
    nul.embedding = Embedding::new(v).ok();
    out.push(ok(&nul));
    // Replies, reactions and a hashtag event around them.
    out.push(ok(&FeedEvent {
        tags: vec!["%".into()],
        ..aimed(3, EventType::Post, MALLORY, t(3), 1)
    }));
    out.push(ok(&FeedEvent {
        tags: vec!["like".into()],
        ..aimed(4, EventType::Reaction, MALLORY, t(4), 1)
    }));
    out.push(ok(&FeedEvent {
        tags: vec!["o'brien".into()],
        ..event(5, EventType::Hashtag, MALLORY, t(5), "")
    }));
    out.push(ok(&FeedEvent {
        mentions: vec![ALICE],
        ..event(6, EventType::Follow, MALLORY, t(6), "")
    }));
    // Parse-level garbage.
    let mut bad_utf8 = event_line(&event(7, EventType::Post, ALICE, t(7), "x")).into_bytes();
    bad_utf8.insert(20, 0xff);
    out.push(junk(bad_utf8, &[ErrorCode::BadJson]));
    out.push(junk(b"\0\0\0\0".to_vec(), &[ErrorCode::BadJson]));
    out.push(junk(
        "[".repeat(100_000) + &"]".repeat(100_000),
        &[ErrorCode::BadJson, ErrorCode::TooLarge],
    ));
    out.push(junk(
        "{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000),
        &[ErrorCode::BadJson, ErrorCode::TooLarge],
    ));
    let dup_key = event_line(&event(8, EventType::Post, ALICE, t(8), "dup")).replacen(
        "{\"id\":8,",
        "{\"id\":8,\"id\":9,",
        1,
    );
    out.push(junk(dup_key, &[ErrorCode::BadJson, ErrorCode::BadField]));
    let huge_ts = event_line(&event(10, EventType::Post, ALICE, t(10), "ts"));
    let huge_ts = huge_ts.replacen(&format!("\"ts\":{}", t(10)), "\"ts\":1e400", 1);
    out.push(junk(huge_ts, &[ErrorCode::BadJson, ErrorCode::BadField]));
    let neg_id = event_line(&event(11, EventType::Post, ALICE, t(11), "neg")).replacen(
        "{\"id\":11,",
        "{\"id\":-11,",
        1,
    );
    out.push(junk(neg_id, &[ErrorCode::BadJson, ErrorCode::BadField]));
    let big = event(12, EventType::Post, ALICE, t(12), &"z".repeat(1_100_000));
    out.push(junk(
        event_line(&big),
        &[ErrorCode::BadJson, ErrorCode::TooLarge],
    ));
    out.push(junk(
        "{\"id\":13,\"type\":\"post\"".to_string(),
        &[ErrorCode::BadJson],
    ));
    // One line per SPEC §4 rule, judged by the reference.
    out.push(ok(&event(0, EventType::Post, ALICE, t(14), "id zero")));
    out.push(ok(&event(
        15,
        EventType::Post,
        ALICE,
        t(15),
        &"y".repeat(70_000),
    )));
    out.push(ok(&FeedEvent {
        content: Some("not what was hashed".into()),
        ..event(16, EventType::Post, ALICE, t(16), "hashed")
    }));
    out.push(ok(&event(
        17,
        EventType::Post,
        ALICE,
        now + 10_000_000_000_000,
        "late",
    )));
    out.push(ok(&event(18, EventType::Reaction, BOB, t(18), "")));
    out.push(ok(&FeedEvent {
        mentions: vec![BOB],
        ..event(19, EventType::Follow, BOB, t(19), "")
    }));
    out.push(ok(&FeedEvent {
        tags: vec!["has space".into()],
        ..event(20, EventType::Post, BOB, t(20), "bad tag")
    }));
    let zero = "0,".repeat(EMBEDDING_DIM - 1) + "0";
    let zero_emb = event_line(&event(21, EventType::Post, BOB, t(21), "zero"));
    let zero_emb = format!(
        "{},\"embedding\":[{zero}]}}",
        &zero_emb[..zero_emb.len() - 1]
    );
    out.push(junk(zero_emb, &[ErrorCode::BadEmbedding]));
    // Deletes and edits by someone else, a delete of a delete, conflicts.
    out.push(ok(&aimed(22, EventType::Delete, MALLORY, t(22), 1)));
    out.push(ok(&FeedEvent {
        parent: Some(EventId(2)),
        ..event(23, EventType::Edit, MALLORY, t(23), "taken over")
    }));
    out.push(ok(&aimed(24, EventType::Delete, MALLORY, t(24), 3)));
    out.push(ok(&aimed(25, EventType::Delete, MALLORY, t(25), 24)));
    out.push(ok(&event(
        1,
        EventType::Post,
        ALICE,
        t(1),
        "same id, other text",
    )));
    out.push(ok(&sql));
    out.push(ok(&aimed(26, EventType::Reaction, BOB, t(26), 6)));
    out.push(ok(&aimed(27, EventType::Edit, BOB, t(27), 999)));
    out.push(ok(&FeedEvent {
        tags: vec!["%".into()],
        ..aimed(28, EventType::Post, ALICE, t(28), 28)
    }));
    out
}

async fn ingest<S: EventStore + 'static>(
    store: S,
    input: &[u8],
) -> Result<(IngestReport, S), String> {
    let fs: FeedStore<S, MemoryVectorIndex> = FeedStore::new(store, None, None);
    // Batches of 5: garbage shares batches with good lines.
    let report = fs
        .ingest(input, 5)
        .await
        .map_err(|e| format!("ingest failed as a whole: {e}"))?;
    let (store, _) = fs
        .into_parts()
        .await
        .map_err(|e| format!("closing the facade: {e}"))?;
    Ok((report, store))
}

/// Runs the hostile input against a fresh store of `factory`.
pub fn hostile_input_suite<F: StoreFactory>(factory: &F) -> Result<(), String> {
    runtime().block_on(async {
        let lines = lines(now_ns());
        let mut input = Vec::new();
        for l in &lines {
            input.extend_from_slice(&l.bytes);
            input.push(b'\n');
        }
        let store = factory.create().await.map_err(|e| format!("create: {e}"))?;
        let (got, store) = ingest(store, &input).await?;
        let (want, reference) = ingest(MemoryEventStore::new(), &input).await?;
        if got != want {
            return Err(format!(
                "ingest reports differ\n  reference: {want:?}\n  store:     {got:?}"
            ));
        }
        for (n, l) in lines.iter().enumerate() {
            let Some(codes) = l.garbage else { continue };
            let line = n as u64 + 1;
            match got.rejections.iter().find(|(at, _, _)| *at == line) {
                Some((_, _, r)) if codes.contains(&r.code) => {}
                other => {
                    return Err(format!(
                        "line {line} should be rejected with one of {codes:?}, got {other:?}"
                    ))
                }
            }
        }
        // Not vacuous: the good lines went in, the bad ones were refused.
        if got.accepted < 8 || got.rejected < 20 {
            return Err(format!("too little happened: {got:?}"));
        }
        let ids: Vec<EventId> = (0..=30).chain([999]).map(EventId).collect();
        let dids = [ALICE, BOB, MALLORY];
        let mut tags: Vec<&str> = HOSTILE_TAGS.to_vec();
        tags.extend(["like", "has space", "X');DROP--"]);
        compare_stores(&reference, &store, &ids, &dids, &tags).await?;
        let store = factory
            .reopen(store)
            .await
            .map_err(|e| format!("reopen: {e}"))?;
        compare_stores(&reference, &store, &ids, &dids, &tags)
            .await
            .map_err(|e| format!("after a reopen: {e}"))
    })
}

/// Runs [`hostile_input_suite`] and panics with its report on failure.
pub fn run_hostile_input_suite<F: StoreFactory>(factory: &F) {
    if let Err(e) = hostile_input_suite(factory) {
        panic!("{e}");
    }
}
