//! The shipped example, config/chat_history.toml, runs as it is (env overrides only).

use crate::harness::*;
use serde_json::json;

/// The two shipped variants, one after the other (they write the same collection, as shipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_history_examples_run_as_shipped() {
    chat_example(
        "chat_schema_precomputed.sql",
        "chat_history_precomputed.toml",
        "t_chat_pre",
        3,
    )
    .await;
    chat_example("chat_schema.sql", "chat_history.toml", "t_chat", 6).await;
}

/// Runs `config/<config>` on `sql/<schema>` with env overrides only; `inserts_seen`: the
/// process-wide insert counter of chat_messages after this variant's three rows.
async fn chat_example(schema: &str, config: &str, name: &str, inserts_seen: u64) {
    let embedded = !schema.contains("precomputed");
    let root = env!("CARGO_MANIFEST_DIR");
    let schema = std::fs::read_to_string(format!("{root}/sql/{schema}")).unwrap();
    let db = TestDb::new(name, &schema).await;
    let _ = qdrant().delete_collection("chat_history").await;
    let dir = work_dir(name);
    let metrics_port = free_port();
    let text = std::fs::read_to_string(format!("{root}/config/{config}")).unwrap();
    pg2qdrant::config::parse(&text)
        .and_then(|c| c.validate())
        .expect("shipped config is valid");
    let cfg = pg2qdrant::config::with_env(
        &text,
        [
            ("PG2QDRANT__SOURCE__URL".to_owned(), db.url.clone()),
            ("PG2QDRANT__SOURCE__SLOT".to_owned(), name.to_owned()),
            ("PG2QDRANT__QDRANT__URL".to_owned(), qdrant_url()),
            (
                "PG2QDRANT__CHECKPOINT__PATH".to_owned(),
                dir.join("cp").display().to_string(),
            ),
            (
                "PG2QDRANT__DEAD_LETTER__PATH".to_owned(),
                dir.join("dl").display().to_string(),
            ),
            (
                "PG2QDRANT__METRICS__ADDR".to_owned(),
                format!("127.0.0.1:{metrics_port}"),
            ),
        ]
        .into_iter()
        .chain(embedded.then(|| {
            (
                "PG2QDRANT__EMBEDDERS__MINILM__PATH".to_owned(),
                env("PG2QDRANT_TEST_MODEL"),
            )
        })),
    )
    .unwrap();
    cfg.validate().unwrap();
    let run = db.start(cfg).await;
    let (vector_column, vector_value) = if embedded {
        ("", "")
    } else {
        (", embedding", ", array_fill(0.5::real, ARRAY[384])")
    };
    db.exec(&format!(
        "INSERT INTO chat_sessions (session_id, user_id) VALUES ('6f1c4a2e-9b3d-4e70-8a41-2c6d0e9fb713', 'u1'), ('00000000-0000-4000-8000-000000000002', 'u2');
         INSERT INTO chat_messages (id, session_id, role, content, \"timestamp\"{vector_column}) VALUES
           (1, '6f1c4a2e-9b3d-4e70-8a41-2c6d0e9fb713', 'user', 'hello', '2023-10-13 10:30:00'{vector_value}),
           (2, '6f1c4a2e-9b3d-4e70-8a41-2c6d0e9fb713', 'assistant', 'How do I reset my password?', '2023-10-13 10:30:05'{vector_value}),
           (3, '00000000-0000-4000-8000-000000000002', 'user', 'Can you recommend a good pizza place nearby?', '2023-10-13 11:00:00'{vector_value});",
    ))
    .await;
    wait_count("chat_history", 3).await;
    let p = point("chat_history", 1).await.unwrap();
    let mut fields: Vec<&str> = p
        .payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "_pg2qdrant")
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "content",
            "message_id",
            "role",
            "session_id",
            "timestamp",
            "timestamp_unix"
        ]
    );
    assert_eq!(
        p.payload["session_id"],
        json!("6f1c4a2e-9b3d-4e70-8a41-2c6d0e9fb713")
    );
    assert_eq!(p.payload["message_id"], json!(1));
    assert_eq!(p.payload["role"], json!("user"));
    assert_eq!(p.payload["content"], json!("hello"));
    assert_eq!(p.payload["timestamp"], json!("2023-10-13T10:30:00"));
    assert_eq!(p.payload["timestamp_unix"], json!(1_697_193_000));
    assert_eq!(p.vector.as_ref().map(Vec::len), Some(384));

    let info = qdrant()
        .collection_info("chat_history")
        .await
        .unwrap()
        .result
        .unwrap();
    let config = info.config.unwrap();
    let params = config.params.unwrap();
    #[allow(deprecated)]
    let on_disk = params.on_disk_payload;
    assert!(on_disk);
    if embedded {
        // Hybrid search: BM25 beside the dense vector, IDF applied by Qdrant.
        let sparse = params.sparse_vectors_config.clone().unwrap();
        assert_eq!(
            sparse.map["keywords"].modifier,
            Some(qdrant_client::qdrant::Modifier::Idf as i32)
        );
    }
    let hnsw = config.hnsw_config.unwrap();
    assert_eq!(
        (hnsw.m, hnsw.ef_construct, hnsw.full_scan_threshold),
        (Some(16), Some(100), Some(10_000))
    );
    let mut indexed: Vec<(String, i32)> = info
        .payload_schema
        .iter()
        .map(|(k, v)| (k.clone(), v.data_type))
        .collect();
    indexed.sort();
    use qdrant_client::qdrant::PayloadSchemaType as T;
    // Seed 004's four indexes, and the connector's own on its position (for the fence rule).
    assert_eq!(
        indexed,
        vec![
            ("_pg2qdrant.lsn".to_owned(), T::Integer as i32),
            ("message_id".to_owned(), T::Integer as i32),
            ("role".to_owned(), T::Keyword as i32),
            ("session_id".to_owned(), T::Keyword as i32),
            ("timestamp_unix".to_owned(), T::Integer as i32),
        ]
    );

    // The metrics listener serves the catalogue with per-table/collection labels.
    let body = http_get(metrics_port, "/metrics").await;
    for needle in [
        format!("pg2qdrant_changes_received_total{{table=\"public.chat_messages\",op=\"insert\"}} {inserts_seen}"),
        "pg2qdrant_changes_applied_total{collection=\"chat_history\",op=\"upsert\"}".to_owned(),
        "pg2qdrant_last_acked_lsn".to_owned(),
        "pg2qdrant_write_latency_seconds_bucket".to_owned(),
    ] {
        assert!(
            body.contains(needle.as_str()),
            "{needle} missing from /metrics:\n{body}"
        );
    }
    assert!(http_get(metrics_port, "/healthz").await.ends_with("ok\n"));

    if embedded {
        // A real semantic search: a paraphrase of message 2 finds it, not the pizza question.
        let model = pg2qdrant::embed::LocalEmbedder::load(
            std::path::Path::new(&env("PG2QDRANT_TEST_MODEL")),
            2,
        )
        .unwrap();
        let query = model
            .embed(&["I forgot my login credentials"])
            .unwrap()
            .vectors
            .remove(0);
        let hits = qdrant()
            .query(
                qdrant_client::qdrant::QueryPointsBuilder::new("chat_history")
                    .query(query)
                    .limit(1),
            )
            .await
            .unwrap()
            .result;
        assert_eq!(
            hits[0].id,
            Some(2u64.into()),
            "the paraphrase ranks first: {hits:?}"
        );
    }
    // Deleting a session removes its messages' points (the cascade arrives as row deletes).
    db.exec("DELETE FROM chat_sessions WHERE session_id = '6f1c4a2e-9b3d-4e70-8a41-2c6d0e9fb713'")
        .await;
    wait_count("chat_history", 1).await;
    assert!(point("chat_history", 3).await.is_some());
    run.stop().await;
}

pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}
