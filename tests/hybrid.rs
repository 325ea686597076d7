//! Hybrid search: BM25 sparse vectors computed from text beside the dense vector
//! (`sparse_vectors = [{ name, kind = "bm25", text }]`), IDF applied by Qdrant.

use crate::harness::*;
use pg2qdrant::mapping::bm25::Bm25;
use qdrant_client::qdrant::{
    Fusion, Modifier, PointId, PrefetchQueryBuilder, Query, QueryPointsBuilder, VectorInput,
};
use serde_json::json;

const MSGS: &str = "CREATE TABLE msgs (id bigint PRIMARY KEY, v real[], content text, n int);";

fn hybrid_table(collection: &str, avg_len: u32) -> String {
    table(
        "msgs",
        collection,
        3,
        &format!("sparse_vectors = [{{ name = \"keywords\", kind = \"bm25\", text = \"{{content}}\", avg_len = {avg_len} }}]"),
    )
}

/// A point's sparse vector `keywords` as (indices, values) in index order, and its payload.
async fn keywords(collection: &str, id: u64) -> Option<((Vec<u32>, Vec<f32>), serde_json::Value)> {
    // Payload first: a change is one upsert, so the vector read after a payload that shows it
    // is that change's (read the other way round, a new payload could pair with an old vector).
    let payload = point(collection, id).await?.payload;
    Some((sparse_vector(collection, id, "keywords").await?, payload))
}

fn expected(avg_len: f32, text: &str) -> (Vec<u32>, Vec<f32>) {
    let s = Bm25 {
        avg_len,
        ..Bm25::default()
    }
    .document(text);
    (s.indices, s.values)
}

fn sparse_query(text: &str) -> Query {
    let q = Bm25::query(text);
    Query::new_nearest(VectorInput::new_sparse(q.indices, q.values))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_number_is_found_through_the_bm25_vector_and_verify_compares_it() {
    let db = TestDb::new(
        "t_hybrid",
        &format!(
            "{MSGS} INSERT INTO msgs VALUES \
             (1, '{{1,0,0}}', 'My payment failed again this morning', 1), \
             (2, '{{0.9,0.1,0}}', 'Payment error, see ticket TCK-48213 for the logs', 1);"
        ),
    )
    .await;
    let cfg = db.config(&hybrid_table("t_hybrid", 20));
    let run = db.start(cfg.clone()).await;
    db.exec(
        "INSERT INTO msgs VALUES (3, '{0.95,0.05,0}', 'The payment went through after a retry', 1), \
         (4, '{0,1,0}', 'How do I change my password?', 1)",
    )
    .await;
    wait_count("t_hybrid", 4).await;

    // The collection's sparse vector takes Qdrant's IDF modifier.
    let info = qdrant().collection_info("t_hybrid").await.unwrap();
    let sparse = info.result.unwrap().config.unwrap().params.unwrap();
    assert_eq!(
        sparse.sparse_vectors_config.unwrap().map["keywords"].modifier,
        Some(Modifier::Idf as i32)
    );
    // Each point holds the BM25 weights of its text, copied (2) and streamed (4) alike.
    for (id, text) in [
        (2, "Payment error, see ticket TCK-48213 for the logs"),
        (4, "How do I change my password?"),
    ] {
        let (got, _) = keywords("t_hybrid", id).await.unwrap();
        assert_eq!(got, expected(20.0, text), "point {id}");
    }

    // The ticket number: the dense vector of a "payment" question ranks rows 1 and 3 first;
    // the sparse vector finds row 2, and the fused query (reciprocal rank fusion) brings it in.
    let top = |r: qdrant_client::qdrant::QueryResponse| -> Vec<PointId> {
        r.result.into_iter().filter_map(|p| p.id).collect()
    };
    let dense = qdrant()
        .query(
            QueryPointsBuilder::new("t_hybrid")
                .query(vec![1.0, 0.0, 0.0])
                .limit(2),
        )
        .await
        .unwrap();
    assert_eq!(top(dense), [PointId::from(1), PointId::from(3)]);
    let sparse = qdrant()
        .query(
            QueryPointsBuilder::new("t_hybrid")
                .query(sparse_query("TCK-48213"))
                .using("keywords")
                .limit(2),
        )
        .await
        .unwrap();
    assert_eq!(top(sparse), [PointId::from(2)]);
    let fused = qdrant()
        .query(
            QueryPointsBuilder::new("t_hybrid")
                .add_prefetch(
                    PrefetchQueryBuilder::default()
                        .query(vec![1.0, 0.0, 0.0])
                        .limit(2u64),
                )
                .add_prefetch(
                    PrefetchQueryBuilder::default()
                        .query(sparse_query("TCK-48213"))
                        .using("keywords")
                        .limit(2u64),
                )
                .query(Query::new_fusion(Fusion::Rrf))
                .limit(2),
        )
        .await
        .unwrap();
    assert!(top(fused).contains(&PointId::from(2)));

    // verify compares the sparse vector: in sync, then one tampered behind the connector's back
    // is stale, and repair writes the row's weights again.
    let reports = pg2qdrant::verify::run(&cfg, None, false).await.unwrap();
    assert_eq!((reports[0].rows, reports[0].drift()), (4, 0), "{reports:?}");
    set_sparse_vector("t_hybrid", 4, "keywords", vec![7], vec![1.0]).await;
    let reports = pg2qdrant::verify::run(&cfg, None, false).await.unwrap();
    assert_eq!(reports[0].stale, 1, "{reports:?}");
    pg2qdrant::verify::run(&cfg, None, true).await.unwrap();
    let (got, _) = keywords("t_hybrid", 4).await.unwrap();
    assert_eq!(got, expected(20.0, "How do I change my password?"));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bm25_vector_follows_edited_text_and_is_kept_for_unchanged_text() {
    let db = TestDb::new("t_hybrid_edit", MSGS).await;
    let port = free_port();
    // Parameters of its own: the metrics of every test in this process share one registry, and
    // the encoder's name (its label) holds them.
    let mut cfg = db.config(&hybrid_table("t_hybrid_edit", 21));
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    let label = Bm25 {
        avg_len: 21.0,
        ..Bm25::default()
    }
    .name();
    let run = db.start(cfg).await;
    let computed = || crate::embedding::counter(port, "pg2qdrant_embeddings_total", &label);
    let wait_n = |n: i64| async move {
        wait_for(&format!("n = {n}"), WAIT, || async {
            keywords("t_hybrid_edit", 1)
                .await
                .filter(|(_, p)| p["n"] == json!(n))
        })
        .await
    };
    db.exec("INSERT INTO msgs VALUES (1, '{1,0,0}', 'error E1234 in the importer', 1)")
        .await;
    let (first, payload) = wait_n(1).await;
    assert_eq!(first, expected(21.0, "error E1234 in the importer"));
    assert_eq!(computed().await, 1.0);
    assert!(payload["_pg2qdrant"]["embedded"]["keywords"]["model"] == json!(label));

    // Another column changes: the text hashes the same, the stored sparse vector is kept.
    db.exec("UPDATE msgs SET n = 2 WHERE id = 1").await;
    let (kept, _) = wait_n(2).await;
    assert_eq!(kept, first);
    assert_eq!(
        computed().await,
        1.0,
        "unchanged text is not computed again"
    );
    assert!(
        crate::embedding::counter(port, "pg2qdrant_embed_unchanged_total", &label).await >= 1.0
    );

    // The text changes: computed again, and the weights are the new text's.
    db.exec("UPDATE msgs SET content = 'error E5678 in the exporter', n = 3 WHERE id = 1")
        .await;
    let (edited, _) = wait_n(3).await;
    assert_ne!(edited, first);
    assert_eq!(edited, expected(21.0, "error E5678 in the exporter"));
    assert_eq!(computed().await, 2.0);
    run.stop().await;
}
