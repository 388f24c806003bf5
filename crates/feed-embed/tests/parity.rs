//! Parity with the reference: Python onnxruntime + tokenizers on the same
//! model files (`scripts/embed_reference.py` wrote `data/reference.json`).
//! Every text's vector must have cosine ≥ 0.999 with the reference's,
//! whether it is embedded alone or padded inside a mixed batch.

use feed_core::{Embedder, Embedding};
use feed_embed::{OnnxConfig, OnnxEmbedder, OpenError};

struct Case {
    text: String,
    vector: Vec<f32>,
}

fn cases() -> Vec<Case> {
    let raw = include_str!("data/reference.json");
    let doc: serde_json::Value = serde_json::from_str(raw).expect("reference.json parses");
    doc["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| Case {
            text: t["text"].as_str().expect("text").to_string(),
            vector: t["vector"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect(),
        })
        .collect()
}

fn cosine(a: &Embedding, b: &[f32]) -> f32 {
    let a = a.as_slice();
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn embedder() -> OnnxEmbedder {
    OnnxEmbedder::from_env().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_reference_text_matches_alone_and_in_batches() {
    let cases = cases();
    assert!(cases.len() >= 50, "at least 50 reference texts");
    let emb = embedder();
    let mut worst = (1.0f32, String::new());
    for c in &cases {
        let v = emb.embed(&[c.text.as_str()]).expect("embed").remove(0);
        let cos = cosine(&v, &c.vector);
        if cos < worst.0 {
            worst = (cos, c.text.clone());
        }
        assert!(cos >= 0.999, "alone: cosine {cos} for {:?}", c.text);
    }
    // Mixed lengths in one batch: padding must not leak into the pooling.
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    for (chunk, want) in texts.chunks(16).zip(cases.chunks(16)) {
        let got = emb.embed(chunk).expect("embed batch");
        assert_eq!(got.len(), chunk.len());
        for (v, c) in got.iter().zip(want) {
            let cos = cosine(v, &c.vector);
            assert!(cos >= 0.999, "in a batch: cosine {cos} for {:?}", c.text);
        }
    }
    eprintln!(
        "{} reference texts: lowest cosine {:.6} ({:?})",
        cases.len(),
        worst.0,
        worst.1.chars().take(40).collect::<String>()
    );
}

#[test]
fn similar_texts_are_closer_than_unrelated_ones() {
    let emb = embedder();
    let v = emb
        .embed(&[
            "The cat sat on the mat.",
            "A kitten is sitting on a rug.",
            "Interest rates rose again this quarter.",
        ])
        .expect("embed");
    let near = v[0].cosine(&v[1]);
    let far = v[0].cosine(&v[2]);
    assert!(near > far + 0.3, "near {near}, far {far}");
}

#[test]
fn a_missing_model_names_the_path_and_the_setup_command() {
    let cfg = OnnxConfig {
        model: "/nonexistent/model.onnx".into(),
        ..OnnxConfig::from_env()
    };
    let e = OnnxEmbedder::open(&cfg).expect_err("no model there");
    assert!(matches!(e, OpenError::Missing { what: "model", .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/model.onnx") && msg.contains("scripts/setup.sh"),
        "{msg}"
    );
    let cfg = OnnxConfig {
        runtime: "/nonexistent/libonnxruntime.so".into(),
        ..OnnxConfig::from_env()
    };
    let msg = OnnxEmbedder::open(&cfg)
        .expect_err("no runtime")
        .to_string();
    assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
}

#[test]
fn an_empty_batch_gives_no_vectors() {
    assert!(embedder().embed(&[]).expect("embed").is_empty());
}
