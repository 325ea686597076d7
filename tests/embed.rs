//! The local embedder gives sentence-transformers' vectors for all-MiniLM-L6-v2.

use crate::harness::{cosine, env};
use pg2qdrant::embed::LocalEmbedder;
use serde_json::Value;

fn model() -> LocalEmbedder {
    LocalEmbedder::load(std::path::Path::new(&env("PG2QDRANT_TEST_MODEL")), 2).unwrap()
}

#[test]
fn local_minilm_vectors_match_sentence_transformers() {
    // Made by scripts/reference_vectors.py (see the fixture's "how").
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let sentences: Vec<&str> = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let m = model();
    assert_eq!(m.dimensions(), 384);
    assert_eq!(
        m.max_tokens(),
        256,
        "sentence_bert_config.json, not the tokenizer file's 128"
    );
    // In batches of 4 as the reference was made, and all at once: padding must not matter.
    for batch in [4, sentences.len()] {
        let mut got = Vec::new();
        for chunk in sentences.chunks(batch) {
            got.extend(m.embed(chunk).unwrap().vectors);
        }
        for (i, (v, want)) in got
            .iter()
            .zip(fixture["vectors"].as_array().unwrap())
            .enumerate()
        {
            let want: Vec<f32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let c = cosine(v, &want);
            assert!(
                c >= 0.9999,
                "sentence {i} ({:?}), batch {batch}: cosine {c}",
                sentences[i]
            );
            let norm: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
        }
    }
    let long = sentences.last().unwrap();
    assert_eq!(
        m.embed(&[long]).unwrap().truncated,
        1,
        "the long input is cut"
    );
    assert_eq!(m.embed(&[sentences[0]]).unwrap().truncated, 0);
}

#[test]
fn a_paraphrase_ranks_above_an_unrelated_sentence() {
    let m = model();
    let v = m
        .embed(&[
            "How do I reset my password?",
            "I forgot my login credentials and need to change them.",
            "Can you recommend a good pizza place nearby?",
        ])
        .unwrap()
        .vectors;
    let (para, unrelated) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
    assert!(
        para > unrelated + 0.2,
        "paraphrase {para}, unrelated {unrelated}"
    );
}

#[test]
fn a_mixed_length_batch_comes_back_in_input_order_with_each_text_own_vector() {
    let m = model();
    // 3 to ~300 words, long and short interleaved: the embedder orders them by length into
    // passes of its own, and must put every vector back at its input's place.
    let long = |n: usize| {
        (0..n)
            .map(|i| ["deploy", "ticket", "outage", "invoice", "meeting"][i % 5])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let texts: Vec<String> = vec![
        long(300),
        "Can deletes cascade?".into(),
        long(40),
        "ok".into(),
        "What happens if Qdrant is down while we write?".into(),
        long(120),
        "hi there".into(),
    ];
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let together = m.embed(&refs).unwrap().vectors;
    assert_eq!(together.len(), texts.len());
    for (i, t) in refs.iter().enumerate() {
        let alone = m.embed(&[t]).unwrap().vectors.remove(0);
        let c = cosine(&together[i], &alone);
        assert!(
            c > 0.9999,
            "input {i} ({} chars): cosine {c} to its own vector",
            t.len()
        );
    }
}

fn local(extra: serde_json::Value) -> pg2qdrant::config::EmbedderConfig {
    let mut cfg = serde_json::json!({
        "name": "minilm", "kind": "local", "path": env("PG2QDRANT_TEST_MODEL"), "threads": 2,
    });
    cfg.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_get_their_own_vectors_in_their_order() {
    // The connector's embedder (embed::load) gathers the texts of callers that arrive while a
    // call runs into one length-ordered call; every caller must still get its own vectors, in
    // its own order. Five callers at once, each with short and long texts interleaved.
    let m = pg2qdrant::embed::load(0, &local(serde_json::json!({}))).unwrap();
    let text = |c: usize, i: usize| {
        let words = ["deploy", "ticket", "outage", "invoice", "meeting", "lunch"];
        let n = [2, 150, 7, 60, 1, 230][(c + i) % 6];
        (0..n)
            .map(|k| words[(c * 3 + i + k) % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let calls: Vec<Vec<String>> = (0..5)
        .map(|c| (0..6 + c).map(|i| text(c, i)).collect())
        .collect();
    let got = futures_util::future::join_all(
        calls
            .iter()
            .map(|texts| m.clone().embed_batch(texts.clone())),
    )
    .await;
    let alone = model();
    for (c, (texts, result)) in calls.iter().zip(got).enumerate() {
        let vectors = result.unwrap().vectors;
        assert_eq!(vectors.len(), texts.len(), "caller {c}");
        for (i, (t, v)) in texts.iter().zip(&vectors).enumerate() {
            let own = alone.embed(&[t]).unwrap().vectors.remove(0);
            let cos = cosine(v, &own);
            assert!(
                cos > 0.9999,
                "caller {c} text {i}: cosine {cos} to its own vector"
            );
        }
    }
}

#[tokio::test]
async fn int8_vectors_stay_near_the_model_and_are_recorded_as_another_model() {
    let f32 = pg2qdrant::embed::load(0, &local(serde_json::json!({}))).unwrap();
    let int8 = pg2qdrant::embed::load(0, &local(serde_json::json!({"quantize": "int8"}))).unwrap();
    assert_ne!(
        f32.identity(),
        int8.identity(),
        "points embedded in int8 must not pass for f32 ones"
    );
    let texts: Vec<String> = [
        "How do I reset my password?",
        "I forgot my login credentials and need to change them.",
        "Can you recommend a good pizza place nearby?",
        "The deploy failed again after the last migration.",
    ]
    .map(String::from)
    .to_vec();
    let a = f32.embed_batch(texts.clone()).await.unwrap().vectors;
    let b = int8.embed_batch(texts).await.unwrap().vectors;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let c = cosine(x, y);
        assert!(c > 0.95, "text {i}: int8 cosine {c} to f32");
    }
    assert!(
        cosine(&b[0], &b[1]) > cosine(&b[0], &b[2]) + 0.2,
        "int8 still ranks the paraphrase first"
    );
}

#[test]
fn a_missing_onnx_runtime_library_names_the_setting() {
    let cfg = local(serde_json::json!({"runtime": "/nonexistent/libonnxruntime.so"}));
    let err = pg2qdrant::embed::load(3, &cfg)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("embedders[3].runtime"), "{err}");
}
