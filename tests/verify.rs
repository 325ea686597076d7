//! `pg2qdrant verify` finds drift by kind and `--repair` fixes exactly that.

use crate::harness::*;
use crate::recovery::{DIM, LOAD};
use qdrant_client::qdrant::{
    DeletePointsBuilder, PointStruct, PointVectors, PointsIdsList, SetPayloadPointsBuilder,
    UpdatePointVectorsBuilder, UpsertPointsBuilder,
};
use serde_json::{json, Value};

pub fn verify(config: &std::path::Path, extra: &[&str]) -> (i32, Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["verify", "--json", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_counts_injected_drift_and_repair_fixes_exactly_it() {
    let db = TestDb::new("t_verify", LOAD).await;
    let dir = work_dir("t_verify");
    let config = dir.join("config.toml");
    let port = free_port();
    std::fs::write(
        &config,
        db.config_text(&table("docs", "t_verify", DIM as u64, ""), &qdrant_url())
            .replace("addr = \"\"", &format!("addr = \"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let run = db.start(pg2qdrant::config::load(&config).unwrap()).await;
    db.exec(&format!("INSERT INTO docs SELECT g, 'row ' || g, g, array_fill(g::real, ARRAY[{DIM}]) FROM generate_series(1, 1200) g")).await;
    wait_count("t_verify", 1200).await;

    let (code, clean) = verify(&config, &[]);
    assert_eq!(code, 0, "{clean}");
    assert_eq!(clean["rows"], 1200);
    assert_eq!(clean["points"], 1200);

    // Drift behind the connector's back: a deleted point, an edited payload, a changed
    // vector, an orphan (a point of this table whose row does not exist).
    let q = qdrant();
    q.delete_points(
        DeletePointsBuilder::new("t_verify")
            .points(PointsIdsList {
                ids: vec![11u64.into()],
            })
            .wait(true),
    )
    .await
    .unwrap();
    q.set_payload(
        SetPayloadPointsBuilder::new(
            "t_verify",
            qdrant_client::Payload::try_from(json!({"title": "edited"})).unwrap(),
        )
        .points_selector(PointsIdsList {
            ids: vec![22u64.into()],
        })
        .wait(true),
    )
    .await
    .unwrap();
    q.update_vectors(
        UpdatePointVectorsBuilder::new(
            "t_verify",
            vec![PointVectors {
                id: Some(33u64.into()),
                vectors: Some(vec![0.5f32; DIM].into()),
            }],
        )
        .wait(true),
    )
    .await
    .unwrap();
    let orphan = json!({"title": "ghost", "n": 0, "_pg2qdrant": {"table": "public.docs", "lsn": 1, "seq": 0, "key": {"id": "5000"}}});
    q.upsert_points(
        UpsertPointsBuilder::new(
            "t_verify",
            vec![PointStruct::new(
                5000u64,
                vec![1.0; DIM],
                qdrant_client::Payload::try_from(orphan).unwrap(),
            )],
        )
        .wait(true),
    )
    .await
    .unwrap();

    let (code, drift) = verify(&config, &["--table", "public.docs"]);
    assert_eq!(code, 1, "drift exits 1: {drift}");
    assert_eq!(
        (&drift["missing"], &drift["stale"], &drift["orphaned"]),
        (&json!(1), &json!(2), &json!(1)),
        "{drift}"
    );
    assert_eq!(drift["missing_keys"], json!([{"id": "11"}]));
    assert_eq!(drift["stale_keys"], json!([{"id": "22"}, {"id": "33"}]));
    assert_eq!(drift["orphaned_keys"], json!([{"id": "5000"}]));
    // The running connector exports the last result (seed 000's "sync health").
    wait_for("verify gauges on /metrics", WAIT, || async {
        let body = crate::chat::http_get(port, "/metrics").await;
        (body.contains("pg2qdrant_verify_stale{table=\"public.docs\"} 2")
            && body.contains("pg2qdrant_verify_orphaned{table=\"public.docs\"} 1"))
        .then_some(())
    })
    .await;

    let (code, repaired) = verify(&config, &["--repair"]);
    assert_eq!(code, 0, "repair fixed everything: {repaired}");
    assert_eq!(repaired["repaired"], 4, "{repaired}");
    assert_eq!(
        repaired["skipped_changed"], 0,
        "the re-check compares the repaired points too: {repaired}"
    );
    assert_eq!(repaired["missing"], 0);
    let p = point("t_verify", 22u64).await.unwrap();
    assert_eq!(p.payload["title"], json!("row 22"));
    assert_eq!(
        point("t_verify", 33u64).await.unwrap().vector,
        Some(vec![33.0; DIM])
    );
    assert!(point("t_verify", 11u64).await.is_some());
    assert!(point("t_verify", 5000u64).await.is_none());
    assert_eq!(count("t_verify").await, 1200);

    // Repairs are fenced: a row changed after them is still streamed over them.
    db.exec("UPDATE docs SET title = 'after repair' WHERE id = 22")
        .await;
    wait_for("streamed after repair", WAIT, || async {
        point("t_verify", 22u64)
            .await
            .filter(|p| p.payload["title"] == json!("after repair"))
    })
    .await;
    let (code, _) = verify(&config, &[]);
    assert_eq!(code, 0);
    run.stop().await;
}
