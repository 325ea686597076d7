//! Vectors computed from text by the local embedder, streamed and copied.

use crate::harness::*;
use pg2qdrant::embed::LocalEmbedder;
use serde_json::json;

const NOTES: &str = "CREATE TABLE notes (id bigint PRIMARY KEY, title text, body text, n int);";

fn embedder_toml() -> String {
    format!(
        "[[embedders]]\nname = \"minilm\"\npath = \"{}\"\nthreads = 2\n",
        env("PG2QDRANT_TEST_MODEL")
    )
}

fn notes_table(collection: &str, size: u64) -> String {
    format!(
        "[[tables]]\ntable = \"notes\"\ncollection = \"{collection}\"\n\
         vector = {{ embed = \"minilm\", text = \"{{title}}\\n{{body}}\", size = {size}, distance = \"Cosine\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_columns_are_embedded_when_copied_and_when_streamed() {
    let db = TestDb::new(
        "t_embed_text",
        &format!("{NOTES} INSERT INTO notes VALUES (1, 'Password reset', 'How do I reset my password?', 1);"),
    )
    .await;
    let cfg = db.config(&format!(
        "{}{}",
        notes_table("t_embed_text", 384),
        embedder_toml()
    ));
    let run = db.start(cfg).await;
    db.exec(
        "INSERT INTO notes VALUES (2, 'Lunch', 'Can you recommend a good pizza place nearby?', 2)",
    )
    .await;
    wait_count("t_embed_text", 2).await;
    let model = LocalEmbedder::load(std::path::Path::new(&env("PG2QDRANT_TEST_MODEL")), 2).unwrap();
    let want = |text: &str| model.embed(&[text]).unwrap().vectors.remove(0);
    for (id, text) in [
        (1, "Password reset\nHow do I reset my password?"),
        (2, "Lunch\nCan you recommend a good pizza place nearby?"),
    ] {
        let p = point("t_embed_text", id).await.expect("point");
        let c = cosine(p.vector.as_ref().expect("a vector"), &want(text));
        assert!(c > 0.9999, "point {id}: cosine {c} to its text's embedding");
        assert_eq!(
            p.payload["_pg2qdrant"]["embedded"]["vector"]["model"],
            json!(model.identity())
        );
        assert_eq!(p.payload["title"], json!(text.split('\n').next().unwrap()));
    }
    // A changed text gets a new vector.
    db.exec("UPDATE notes SET body = 'I forgot my login credentials and need to change them.' WHERE id = 1")
        .await;
    let new = want("Password reset\nI forgot my login credentials and need to change them.");
    let p = wait_for("the new vector", WAIT, || async {
        point("t_embed_text", 1)
            .await
            .filter(|p| p.vector.as_ref().is_some_and(|v| cosine(v, &new) > 0.9999))
    })
    .await;
    assert_eq!(
        p.payload["body"],
        json!("I forgot my login credentials and need to change them.")
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_size_that_differs_from_the_model_is_refused_naming_the_field() {
    let db = TestDb::new("t_embed_size", NOTES).await;
    let cfg = db.config(&format!(
        "{}{}",
        notes_table("t_embed_size", 3),
        embedder_toml()
    ));
    let err = pg2qdrant::run(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tables[0].vector.size") && err.contains("384"),
        "{err}"
    );
}

/// `name{embedder="<embedder>"} value` from /metrics, 0 when absent.
async fn counter(port: u16, name: &str, embedder: &str) -> f64 {
    let body = crate::chat::http_get(port, "/metrics").await;
    body.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("embedder=\"{embedder}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_text_is_never_embedded_again() {
    let db = TestDb::new("t_embed_unchanged", NOTES).await;
    let port = free_port();
    // Its own embedder name: the metrics of every test in this process share one registry.
    let mut cfg = db.config(&format!(
        "{}{}",
        notes_table("t_embed_unchanged", 384).replace("\"minilm\"", "\"minilm_unchanged\""),
        embedder_toml().replace("\"minilm\"", "\"minilm_unchanged\"")
    ));
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    let run = db.start(cfg).await;
    let embedded = || counter(port, "pg2qdrant_embeddings_total", "minilm_unchanged");
    let wait_n = |id: u64, n: i64| async move {
        wait_for(&format!("n = {n} on {id}"), WAIT, || async {
            point("t_embed_unchanged", id)
                .await
                .filter(|p| p.payload["n"] == json!(n))
        })
        .await
    };
    // Row 1's body is long enough to be stored out of line (TOAST); row 2's is inline.
    db.exec(
        "INSERT INTO notes SELECT 1, 'Long', string_agg(md5(i::text), ' '), 1 FROM generate_series(1, 300) i; \
         INSERT INTO notes VALUES (2, 'Short', 'A short body.', 1)",
    )
    .await;
    wait_count("t_embed_unchanged", 2).await;
    assert_eq!(embedded().await, 2.0);
    // Another column of row 1 changes: its body comes as an unchanged TOAST value, so there is
    // no text at all; the vector stays.
    db.exec("UPDATE notes SET n = 2 WHERE id = 1").await;
    wait_n(1, 2).await;
    // Another column of row 2 changes: its text comes whole, hashes the same, is not embedded.
    db.exec("UPDATE notes SET n = 3 WHERE id = 2").await;
    let p = wait_n(2, 3).await;
    assert_eq!(embedded().await, 2.0, "no embedding for unchanged text");
    assert!(counter(port, "pg2qdrant_embed_unchanged_total", "minilm_unchanged").await >= 1.0);
    assert!(p.vector.is_some(), "the stored vector was kept");
    // The text changes: one embedding.
    db.exec("UPDATE notes SET body = 'Another body now.' WHERE id = 2")
        .await;
    wait_for("the new body", WAIT, || async {
        point("t_embed_unchanged", 2)
            .await
            .filter(|p| p.payload["body"] == json!("Another body now."))
    })
    .await;
    assert_eq!(embedded().await, 3.0);
    assert_eq!(
        counter(port, "pg2qdrant_embed_truncated_total", "minilm_unchanged").await,
        1.0,
        "the long body was cut at 256 word pieces"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_vector_embedded_by_another_model_and_repair_embeds_it_again() {
    let db = TestDb::new(
        "t_embed_verify",
        &format!("{NOTES} INSERT INTO notes VALUES (1, 'a', 'first', 1), (2, 'b', 'second', 2);"),
    )
    .await;
    let dir = work_dir("t_embed_verify");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        db.config_text(
            &format!("{}{}", notes_table("t_embed_verify", 384), embedder_toml()),
            &qdrant_url(),
        ),
    )
    .unwrap();
    let run = db.start(pg2qdrant::config::load(&config).unwrap()).await;
    wait_count("t_embed_verify", 2).await;
    let verify = |repair: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"));
        c.args(["verify", "--json", "--config"]).arg(&config);
        if repair {
            c.arg("--repair");
        }
        let out = c.output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap(), report[0].clone())
    };
    assert_eq!(verify(false).0, 0, "in sync after streaming");
    // Point 2 says an older model built its vector (payload and vector otherwise untouched).
    qdrant()
        .set_payload(
            qdrant_client::qdrant::SetPayloadPointsBuilder::new(
                "t_embed_verify",
                qdrant_client::Payload::try_from(json!({"model": "local:old:0", "hash": "0"}))
                    .unwrap(),
            )
            .key("_pg2qdrant.embedded.vector")
            .points_selector(qdrant_client::qdrant::PointsIdsList {
                ids: vec![2u64.into()],
            })
            .wait(true),
        )
        .await
        .unwrap();
    let (code, report) = verify(false);
    assert_eq!((code, report["stale"].clone()), (1, json!(1)), "{report}");
    let (code, report) = verify(true);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["repaired"], json!(1));
    let p = point("t_embed_verify", 2).await.unwrap();
    assert_ne!(
        p.payload["_pg2qdrant"]["embedded"]["vector"]["hash"],
        json!("0")
    );
    run.stop().await;
}
