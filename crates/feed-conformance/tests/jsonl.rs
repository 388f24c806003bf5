//! JSON Lines properties: parse ∘ print is the identity on stored events,
//! export → ingest → export reproduces every line, and every SPEC error
//! code is produced by some generated input.

use std::collections::BTreeSet;
use std::sync::Mutex;

use feed_conformance::gen::{gen_event, Realiser};
use feed_core::jsonl::{event_line, parse_line};
use feed_core::validate::{now_ns, validate};
use feed_core::{
    Embedding, ErrorCode, EventStore, FeedStore, MemoryEventStore, MemoryVectorIndex, EMBEDDING_DIM,
};
use futures::StreamExt;
use proptest::prelude::*;

type Fs = FeedStore<MemoryEventStore, MemoryVectorIndex>;

fn store() -> Fs {
    FeedStore::new(
        MemoryEventStore::new(),
        Some(MemoryVectorIndex::new()),
        None,
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

async fn export_lines(fs: &Fs) -> Vec<String> {
    let mut out = Vec::new();
    let mut s = fs.events().export();
    while let Some(e) = s.next().await {
        out.push(event_line(&e.expect("export")));
    }
    out
}

/// A way to break a line at the JSON level.
#[derive(Clone, Copy, Debug)]
enum LineFault {
    None,
    Truncate,
    NotObject,
    TsAsString,
    UnknownField,
    ShortEmbedding,
    ZeroEmbedding,
    HugeLine,
    BadUtf8,
    DidWithPrefix,
    UpperHex,
}

fn line_fault() -> impl Strategy<Value = LineFault> {
    prop_oneof![
        12 => Just(LineFault::None),
        1 => Just(LineFault::Truncate),
        1 => Just(LineFault::NotObject),
        1 => Just(LineFault::TsAsString),
        1 => Just(LineFault::UnknownField),
        1 => Just(LineFault::ShortEmbedding),
        1 => Just(LineFault::ZeroEmbedding),
        1 => Just(LineFault::HugeLine),
        1 => Just(LineFault::BadUtf8),
        1 => Just(LineFault::DidWithPrefix),
        1 => Just(LineFault::UpperHex),
    ]
}

fn break_line(line: String, f: LineFault) -> Vec<u8> {
    let obj_end = line.len() - 1;
    match f {
        LineFault::None => line.into_bytes(),
        LineFault::Truncate => line.as_bytes()[..line.len() / 2].to_vec(),
        LineFault::NotObject => b"[1, 2, 3]".to_vec(),
        LineFault::TsAsString => {
            let v: serde_json::Value = serde_json::from_str(&line).expect("own line");
            let ts = v["ts"].as_i64().unwrap_or(0);
            line.replace(&format!("\"ts\":{ts}"), &format!("\"ts\":\"{ts}\""))
                .into_bytes()
        }
        LineFault::UnknownField => {
            format!("{},\"colour\":\"red\"}}", &line[..obj_end]).into_bytes()
        }
        LineFault::ShortEmbedding => {
            format!("{},\"embedding\":[0.5,0.5]}}", strip_embedding(&line)).into_bytes()
        }
        LineFault::ZeroEmbedding => {
            let zeros = vec!["0"; EMBEDDING_DIM].join(",");
            format!("{},\"embedding\":[{zeros}]}}", strip_embedding(&line)).into_bytes()
        }
        LineFault::HugeLine => format!(
            "{},\"content\":\"{}\"}}",
            &line[..obj_end],
            "z".repeat(1 << 20)
        )
        .into_bytes(),
        LineFault::BadUtf8 => {
            let mut b = line.into_bytes();
            b.insert(1, 0xff);
            b
        }
        LineFault::DidWithPrefix => line
            .replacen("\"author\":\"", "\"author\":\"did:libertaria:", 1)
            .into_bytes(),
        LineFault::UpperHex => {
            let v: serde_json::Value = serde_json::from_str(&line).expect("own line");
            let a = v["author"].as_str().unwrap_or_default().to_owned();
            line.replace(&a, &a.to_uppercase()).into_bytes()
        }
    }
}

fn strip_embedding(line: &str) -> &str {
    match line.find(",\"embedding\"") {
        Some(i) => &line[..i],
        None => &line[..line.len() - 1],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    /// Every valid event prints to a line that parses back to itself.
    #[test]
    fn parse_print_round_trip(gs in proptest::collection::vec(gen_event(), 1..20)) {
        let mut r = Realiser::default();
        for g in &gs {
            let ev = r.realise(g, now_ns());
            if let Ok(ev) = validate(ev, now_ns()) {
                let line = event_line(&ev);
                prop_assert_eq!(parse_line(&line), Ok(ev), "line: {}", line);
            }
        }
    }

    /// Embeddings survive text exactly, bit for bit.
    #[test]
    fn embeddings_round_trip_exactly(v in proptest::collection::vec(-1e3f32..1e3, EMBEDDING_DIM)) {
        prop_assume!(v.iter().any(|x| *x != 0.0));
        let e = Embedding::new(v).expect("non-zero finite");
        let mut ev = feed_core::FeedEvent::new(
            feed_core::EventId(1), feed_core::EventType::Post, feed_core::Did([1; 32]), 5, "x");
        ev.embedding = Some(e);
        let back = parse_line(&event_line(&ev)).expect("parses");
        prop_assert_eq!(back, ev);
    }

    /// export → ingest into an empty store → export gives the same lines.
    #[test]
    fn export_ingest_export_is_identical(gs in proptest::collection::vec(gen_event(), 1..40)) {
        let rt = rt();
        rt.block_on(async {
            let a = store();
            let mut r = Realiser::default();
            for chunk in gs.chunks(5) {
                let batch = chunk.iter().map(|g| r.realise(g, now_ns())).collect();
                a.append(batch).await.expect("append");
            }
            let first = export_lines(&a).await;
            let b = store();
            let report = b.ingest(first.join("\n").as_bytes(), 7).await.expect("ingest");
            assert_eq!(report.rejected, 0, "{:?}", report.rejections);
            assert_eq!(report.accepted as usize, first.len());
            assert_eq!(export_lines(&b).await, first);
            assert_eq!(a.events().stats().await.expect("stats"), b.events().stats().await.expect("stats"));
        });
    }
}

/// Generated event streams, some of their lines broken at the JSON level,
/// ingested through the facade, between them produce every SPEC code.
#[test]
fn every_error_code_is_produced_by_generated_input() {
    let seen = Mutex::new(BTreeSet::new());
    let config = ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    // A fixed seed: whether every code shows up must not depend on luck.
    let rng = proptest::test_runner::TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(config, rng);
    let strategy = proptest::collection::vec((gen_event(), line_fault()), 1..30);
    runner
        .run(&strategy, |items| {
            let rt = rt();
            rt.block_on(async {
                let fs = store();
                let mut r = Realiser::default();
                let mut input = Vec::new();
                for (g, f) in &items {
                    let ev = r.realise(g, now_ns());
                    input.extend(break_line(event_line(&ev), *f));
                    input.push(b'\n');
                    if let Some(again) = r.conflict(g.ts) {
                        if g.adopt && g.ts % 4 == 0 {
                            input.extend(event_line(&again).into_bytes());
                            input.push(b'\n');
                        }
                    }
                }
                let report = fs.ingest(&input[..], 4).await.expect("ingest");
                let lines = input
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count() as u64;
                assert_eq!(report.accepted + report.duplicate + report.rejected, lines);
                let mut seen = seen.lock().expect("lock");
                seen.extend(report.rejections.iter().map(|(_, _, r)| r.code));
            });
            Ok(())
        })
        .expect("ingest never fails as a whole");
    let seen = seen.into_inner().expect("lock");
    let missing: Vec<ErrorCode> = ErrorCode::ALL
        .into_iter()
        .filter(|c| !seen.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "codes never produced: {missing:?} (seen {seen:?})"
    );
}

/// Input that fails once its bytes are read, like a pipe whose writer died.
struct Unplugged(std::io::Cursor<Vec<u8>>);

impl std::io::Read for Unplugged {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match std::io::Read::read(&mut self.0, buf)? {
            0 => Err(std::io::Error::other("unplugged")),
            n => Ok(n),
        }
    }
}

/// A read failure stops the ingest with every line before the unstored
/// batch stored and reported, and that batch's first line to resume from.
#[test]
fn a_read_failure_stops_ingest_at_the_first_unstored_line() {
    use feed_core::{Did, EventId, EventType, FeedEvent};
    let post = |i: u64| {
        event_line(&FeedEvent::new(
            EventId((1_700_000_000_000u64 << 22) + i),
            EventType::Post,
            Did([3; 32]),
            1_700_000_000_000_000_000 + i as i64,
            "post",
        ))
    };
    // Lines 1–7: posts, a broken line (3) and a blank one (5); batches of
    // two events are [1, 2], [4, 6], [7]; line 8 cannot be read.
    let lines = [
        post(1),
        post(2),
        "{".to_string(),
        post(4),
        String::new(),
        post(6),
        post(7),
    ];
    let input = format!("{}\n", lines.join("\n")).into_bytes();
    rt().block_on(async {
        let fs = store();
        let reader = std::io::BufReader::new(Unplugged(std::io::Cursor::new(input)));
        let err = fs.ingest(reader, 2).await.expect_err("the read fails");
        assert_eq!(err.resume, Some(7), "line 7's batch was not stored");
        assert_eq!(err.report.accepted, 4);
        assert_eq!(err.report.rejected, 1);
        assert_eq!(err.report.rejections[0].0, 3);
        assert!(
            err.source.to_string().contains("reading line 8"),
            "{}",
            err.source
        );
        assert_eq!(export_lines(&fs).await.len(), 4);

        // The whole input again, readable this time: the rest goes in.
        let fs2 = store();
        let whole = format!("{}\n", lines.join("\n"));
        let report = fs2.ingest(whole.as_bytes(), 2).await.expect("ingest");
        assert_eq!((report.accepted, report.rejected), (5, 1));
        assert_eq!(export_lines(&fs2).await, [1, 2, 4, 6, 7].map(post).to_vec());
    });
}
