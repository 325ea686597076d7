//! Sync status in one call: `GET /status` and `pg2qdrant status` through a table's life.

use crate::harness::*;
use qdrant_client::qdrant::SetPayloadPointsBuilder;
use qdrant_client::Payload;

const DOCS: &str = "CREATE TABLE docs (id bigint PRIMARY KEY, title text, v real[]);
    INSERT INTO docs SELECT g, 'title ' || g, ARRAY[1, 0, g]::real[] FROM generate_series(1, 50) g;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_table_in_sync_then_copying_then_drifted_with_its_exit_codes() {
    let db = TestDb::new("t_status", DOCS).await;
    let mut q = PrivateQdrant::start("t_status").await;
    let addr = format!("127.0.0.1:{}", free_port());
    let text = db
        .config_text(&table("docs", &db.name, 3, ""), &q.url())
        .replace("addr = \"\"", &format!("addr = \"{addr}\""));
    let config = work_dir(&db.name).join("config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, text).unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), said)
    };
    let (code, said) = cli(&["status"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no connector answers"), "{said}");

    let _run = Process::start("run", &config, "run.log");
    let said = wait_for("status in sync (exit 0)", WAIT, || async {
        let (code, said) = cli(&["status"]);
        (code == Some(0)).then_some(said)
    })
    .await;
    assert!(said.contains("done, 50 rows"), "{said}");
    assert!(said.contains("ready; in sync"), "{said}");

    // A resync while Qdrant is down: the copy starts and cannot finish.
    q.kill();
    assert_eq!(cli(&["resync", "--table", "docs"]).0, Some(0));
    let doc = wait_for("the table copying again", WAIT, || async {
        let (code, body) = http_get(&addr, "/status").await?;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && doc["tables"][0]["copy"] == "copying").then_some(doc)
    })
    .await;
    assert_eq!(doc["in_sync"], false, "{doc}");
    assert_eq!(doc["tables"][0]["copy_reason"], "resync", "{doc}");
    let (code, said) = cli(&["status"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("public.docs: copy copying"), "{said}");
    let said = wait_for("not ready, naming qdrant", WAIT, || async {
        let (code, said) = cli(&["status"]);
        (code == Some(1) && said.contains("not ready: qdrant")).then_some(said)
    })
    .await;
    assert!(said.contains("NOT READY"), "{said}");

    q.restart().await;
    let said = wait_for("in sync again (exit 0)", WAIT, || async {
        let (code, said) = cli(&["status"]);
        (code == Some(0)).then_some(said)
    })
    .await;
    assert!(said.contains("done, 50 rows"), "{said}");

    // A point changed behind the connector's back: verify finds it, status reports it.
    q.client()
        .set_payload(
            SetPayloadPointsBuilder::new(
                &db.name,
                Payload::try_from(serde_json::json!({ "title": "tampered" })).unwrap(),
            )
            .points_selector(vec![qdrant_client::qdrant::PointId::from(7u64)])
            .wait(true),
        )
        .await
        .unwrap();
    let (code, said) = cli(&["verify"]);
    assert_eq!(code, Some(1), "{said}");
    let doc = wait_for("the stale point in /status", WAIT, || async {
        let body = http_get(&addr, "/status").await?.1;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        (doc["tables"][0]["verify"]["stale"] == 1).then_some(doc)
    })
    .await;
    assert_eq!(doc["in_sync"], false, "{doc}");
    assert_eq!(doc["tables"][0]["verify"]["in_sync_percent"], 98.0, "{doc}");
    let (code, said) = cli(&["status"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("0/0/1") && said.contains("98.0%"), "{said}");
    assert!(
        said.contains("verify --repair --table public.docs"),
        "{said}"
    );
    let (code, json) = cli(&["status", "--json"]);
    assert_eq!(code, Some(1));
    assert!(json.contains("\"stale\": 1"), "{json}");
}
