//! pgvector's own columns against a real pgvector (built by `scripts/services.sh`): a `vector`
//! column is the dense vector, a `sparsevec` column stays sparse in Qdrant (exactly its terms,
//! not densified), `halfvec` and `sparsevec` payload values read alike from copy and stream.

use crate::harness::*;
use serde_json::json;

const DOCS: &str = "CREATE EXTENSION IF NOT EXISTS vector; \
    CREATE TABLE docs (id bigint PRIMARY KEY, v vector(3), s sparsevec(30000), h halfvec(2), n int);";

fn docs_table(collection: &str) -> String {
    table(
        "docs",
        collection,
        3,
        "payload = [\"h\", \"n\"]\nsparse_vectors = [{ name = \"terms\", column = \"s\" }]",
    )
}

/// (indices from 0, values) of a sparsevec literal's terms `(index from 1, value)`.
fn terms(t: &[(u32, f32)]) -> (Vec<u32>, Vec<f32>) {
    t.iter().map(|(i, v)| (i - 1, *v)).unzip()
}

fn literal(t: &[(u32, f32)], dim: u32) -> String {
    let t: Vec<String> = t.iter().map(|(i, v)| format!("{i}:{v:e}")).collect();
    format!("'{{{}}}/{dim}'", t.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparsevec_column_round_trips_exactly_and_verify_compares_it() {
    // Values chosen to have no short decimal form (0.1f32, 1/3) and a tiny and a large exponent.
    let copied = [(1, 0.1f32), (7, -1.0 / 3.0), (29_999, 3.0e-30)];
    let streamed = [(2, 1.0e30f32), (3, 0.5), (30_000, -7.25)];
    let db = TestDb::new(
        "t_pgvector",
        &format!(
            "{DOCS} INSERT INTO docs VALUES (1, '[1,0,0]', {}, '[0.1,2]', 1), (2, '[0,1,0]', NULL, NULL, 1);",
            literal(&copied, 30_000)
        ),
    )
    .await;
    let cfg = db.config(&docs_table("t_pgvector"));
    let run = db.start(cfg.clone()).await;
    db.exec(&format!(
        "INSERT INTO docs VALUES (3, '[0.25,-0.5,1e-7]', {}, '[65504,-0.000061]', 1)",
        literal(&streamed, 30_000)
    ))
    .await;
    wait_count("t_pgvector", 3).await;

    // Copied and streamed alike: the terms exactly (indices from 0), NULL as no terms.
    assert_eq!(
        sparse_vector("t_pgvector", 1, "terms").await,
        Some(terms(&copied))
    );
    assert_eq!(
        sparse_vector("t_pgvector", 2, "terms").await,
        Some((vec![], vec![]))
    );
    assert_eq!(
        sparse_vector("t_pgvector", 3, "terms").await,
        Some(terms(&streamed))
    );
    let p3 = point("t_pgvector", 3).await.unwrap();
    assert_eq!(p3.vector, Some(vec![0.25, -0.5, 1e-7]));
    // halfvec rounds on the server: 0.1 is stored as 0.099975586, -0.000061 as the subnormal
    // -1023·2⁻²⁴.
    assert_eq!(p3.payload["h"], json!([65504.0, -6.097555e-5]));
    assert_eq!(
        point("t_pgvector", 1).await.unwrap().payload["h"],
        json!([0.099975586, 2.0])
    );
    assert_eq!(
        point("t_pgvector", 2).await.unwrap().payload["h"],
        json!(null)
    );

    // An update of the terms replaces them; one to NULL leaves none.
    db.exec("UPDATE docs SET s = '{5:2}/30000', n = 2 WHERE id = 1; UPDATE docs SET s = NULL, n = 2 WHERE id = 3")
        .await;
    wait_for("updates applied", WAIT, || async {
        let a = point("t_pgvector", 1).await?;
        let b = point("t_pgvector", 3).await?;
        (a.payload["n"] == json!(2) && b.payload["n"] == json!(2)).then_some(())
    })
    .await;
    assert_eq!(
        sparse_vector("t_pgvector", 1, "terms").await,
        Some((vec![4], vec![2.0]))
    );
    assert_eq!(
        sparse_vector("t_pgvector", 3, "terms").await,
        Some((vec![], vec![]))
    );

    // verify compares the terms: in sync, one changed behind the connector's back is stale,
    // and repair writes the row's terms again.
    let reports = pg2qdrant::verify::run(&cfg, None, false).await.unwrap();
    assert_eq!((reports[0].rows, reports[0].drift()), (3, 0), "{reports:?}");
    set_sparse_vector("t_pgvector", 1, "terms", vec![4], vec![2.5]).await;
    let reports = pg2qdrant::verify::run(&cfg, None, false).await.unwrap();
    assert_eq!(reports[0].stale, 1, "{reports:?}");
    pg2qdrant::verify::run(&cfg, None, true).await.unwrap();
    assert_eq!(
        sparse_vector("t_pgvector", 1, "terms").await,
        Some((vec![4], vec![2.0]))
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toasted_sparsevec_is_kept_when_another_column_changes() {
    // 3000 terms: 24 kB, stored out of line (pgvector's types are STORAGE external). An update
    // of other columns sends it as "unchanged TOAST" and the point must keep it.
    let big: Vec<(u32, f32)> = (0..3000u32)
        .map(|i| {
            (
                i * 9 + 1,
                f32::from_bits(0x3f80_0000 ^ (i.wrapping_mul(2_654_435_761) >> 9)),
            )
        })
        .collect();
    let db = TestDb::new("t_pgvector_toast", DOCS).await;
    let cfg = db.config(&docs_table("t_pgvector_toast"));
    let run = db.start(cfg.clone()).await;
    db.exec(&format!(
        "INSERT INTO docs VALUES (1, '[1,0,0]', {}, '[1,2]', 1)",
        literal(&big, 30_000)
    ))
    .await;
    wait_count("t_pgvector_toast", 1).await;
    assert_eq!(
        sparse_vector("t_pgvector_toast", 1, "terms").await,
        Some(terms(&big))
    );
    // The value lives out of line: the table's TOAST relation holds its chunks.
    let toast: String = db
        .client
        .query_one(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'docs'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let chunks: i64 = db
        .client
        .query_one(&format!("SELECT count(*) FROM {toast}"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(chunks > 1, "the sparsevec is not TOASTed ({chunks} chunks)");

    let at_n = |n: i64| async move {
        wait_for(&format!("n = {n}"), WAIT, || async {
            point("t_pgvector_toast", 1)
                .await
                .filter(|p| p.payload["n"] == json!(n))
        })
        .await
    };
    // Other columns change: merged into the point, which keeps its sparse vector.
    db.exec("UPDATE docs SET n = 2, v = '[0,1,0]' WHERE id = 1")
        .await;
    let p = at_n(2).await;
    assert_eq!(p.vector, Some(vec![0.0, 1.0, 0.0]));
    assert_eq!(p.payload["h"], json!([1.0, 2.0]));
    assert_eq!(
        sparse_vector("t_pgvector_toast", 1, "terms").await,
        Some(terms(&big))
    );
    let reports = pg2qdrant::verify::run(&cfg, None, false).await.unwrap();
    assert_eq!((reports[0].rows, reports[0].drift()), (1, 0), "{reports:?}");

    // A column set to NULL: the point holds `"h": null` as a whole write would (Qdrant's
    // set-payload would drop the key), and still the sparse vector.
    db.exec("UPDATE docs SET n = 3, h = NULL WHERE id = 1")
        .await;
    let p = at_n(3).await;
    assert_eq!(p.payload.get("h"), Some(&json!(null)), "{:?}", p.payload);
    assert_eq!(
        sparse_vector("t_pgvector_toast", 1, "terms").await,
        Some(terms(&big))
    );
    let reports = pg2qdrant::verify::run(&cfg, None, false).await.unwrap();
    assert_eq!((reports[0].rows, reports[0].drift()), (1, 0), "{reports:?}");
    run.stop().await;
}
