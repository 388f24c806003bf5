//! `feed bench` runs each backend in its own processes and reports every
//! figure: a small run of the lite profile (ingest and queries in two
//! processes, the graph variant too) beside the in-memory baseline (one).

mod common;

use common::feed;

#[test]
fn bench_reports_every_backend_with_ingest_and_query_figures() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("out");
    let o = feed(
        &tmp.path().join("unused"),
        &[
            "bench",
            "--events",
            "3000",
            "--queries",
            "5",
            "--backends",
            "lite,lite/graph,memory",
            "--out",
            out.to_str().expect("path"),
        ],
        None,
    );
    assert!(
        o.status.success(),
        "bench: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).expect("bench.json"))
            .expect("JSON");
    let results = all["results"].as_array().expect("results");
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["backend"].as_str().expect("backend"))
        .collect();
    assert_eq!(names, ["lite", "lite/graph", "memory"]);
    for r in results {
        let name = &r["backend"];
        // The ingest process's figures and the queries process's, merged;
        // the hand-over's samples are not part of the result.
        assert_eq!(r["events"].as_u64(), Some(3000), "{name}");
        for key in [
            "ingest_events_per_s",
            "peak_rss_ingest_kib",
            "peak_rss_queries_kib",
        ] {
            assert!(r[key].as_f64().is_some_and(|v| v > 0.0), "{name}: {key}");
        }
        assert!(r.get("samples").is_none(), "{name}");
        assert!(r["vectors"].as_u64().is_some_and(|v| v > 0), "{name}");
        assert!(
            r["search_recall_at_10"].as_f64().is_some_and(|v| v > 0.9),
            "{name}"
        );
        for q in [
            "timeline",
            "thread",
            "counts",
            "tag",
            "search",
            "search_newer_half",
        ] {
            assert_eq!(r["queries"][q]["calls"].as_u64(), Some(5), "{name}: {q}");
        }
    }
    assert!(out.join("bench.svg").exists());
}
