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
