//! Changes of every kind reach Qdrant, and rows that cannot be mapped do not stop the stream.

use crate::harness::*;
use serde_json::json;

const ITEMS: &str =
    "CREATE TABLE items (id bigint PRIMARY KEY, title text, big text, n int, v real[]);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_update_delete_reach_qdrant() {
    let db = TestDb::new("t_crud", ITEMS).await;
    let run = db.start(db.config(&table("items", "t_crud", 3, ""))).await;
    db.exec(
        "INSERT INTO items VALUES (1, 'one', NULL, 1, '{1,0,0}'), (2, 'two', NULL, 2, '{0,1,0}')",
    )
    .await;
    wait_count("t_crud", 2).await;
    db.exec("UPDATE items SET title = 'uno', v = '{0,0,1}' WHERE id = 1")
        .await;
    let p = wait_for("update applied", WAIT, || async {
        point("t_crud", 1)
            .await
            .filter(|p| p.payload["title"] == json!("uno"))
    })
    .await;
    assert_eq!(p.vector, Some(vec![0.0, 0.0, 1.0]));
    assert_eq!(p.payload["n"], json!(1));
    assert_eq!(p.payload["_pg2qdrant"]["table"], json!("public.items"));
    assert!(
        p.payload.get("v").is_none(),
        "the vector column is not copied into the payload"
    );
    db.exec("DELETE FROM items WHERE id = 2").await;
    wait_count("t_crud", 1).await;
    assert!(point("t_crud", 2).await.is_none());
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_removes_every_point_of_the_table() {
    let db = TestDb::new("t_truncate", ITEMS).await;
    let run = db
        .start(db.config(&table("items", "t_truncate", 3, "")))
        .await;
    db.exec("INSERT INTO items SELECT g, 't', NULL, g, '{1,1,1}' FROM generate_series(1, 50) g")
        .await;
    wait_count("t_truncate", 50).await;
    db.exec("TRUNCATE items").await;
    wait_count("t_truncate", 0).await;
    db.exec("INSERT INTO items VALUES (7, 'after', NULL, 7, '{1,1,1}')")
        .await;
    wait_count("t_truncate", 1).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_change_moves_the_point() {
    let db = TestDb::new("t_keychange", ITEMS).await;
    let run = db
        .start(db.config(&table("items", "t_keychange", 3, "")))
        .await;
    db.exec("INSERT INTO items VALUES (1, 'moving', NULL, 1, '{1,2,3}')")
        .await;
    wait_count("t_keychange", 1).await;
    db.exec("UPDATE items SET id = 100 WHERE id = 1").await;
    let p = wait_for("point 100", WAIT, || point("t_keychange", 100)).await;
    assert_eq!(p.payload["title"], json!("moving"));
    assert_eq!(p.vector, Some(vec![1.0, 2.0, 3.0]));
    wait_count("t_keychange", 1).await;
    assert!(
        point("t_keychange", 1).await.is_none(),
        "the old point is gone"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toast_unchanged_keeps_the_stored_field() {
    let db = TestDb::new("t_toast", ITEMS).await;
    // Random text does not compress, so it is stored out of line (TOAST) and not re-sent.
    db.exec("ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL")
        .await;
    let run = db.start(db.config(&table("items", "t_toast", 3, ""))).await;
    db.exec("INSERT INTO items SELECT 1, 'a', string_agg(md5(g::text), ''), 1, '{1,0,0}' FROM generate_series(1, 200) g").await;
    let before = wait_for("insert", WAIT, || point("t_toast", 1)).await;
    let big = before.payload["big"]
        .as_str()
        .expect("big stored")
        .to_owned();
    assert!(big.len() > 4000);
    db.exec("UPDATE items SET n = 2 WHERE id = 1").await;
    let after = wait_for("update", WAIT, || async {
        point("t_toast", 1)
            .await
            .filter(|p| p.payload["n"] == json!(2))
    })
    .await;
    assert_eq!(
        after.payload["big"].as_str(),
        Some(big.as_str()),
        "unchanged TOAST value kept"
    );
    assert_eq!(after.vector, Some(vec![1.0, 0.0, 0.0]));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toast_merge_without_a_point_reads_the_row_from_postgres() {
    let db = TestDb::new("t_toastfetch", ITEMS).await;
    db.exec("ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL")
        .await;
    db.exec("INSERT INTO items SELECT 1, 'a', string_agg(md5(g::text), ''), 1, '{1,0,0}' FROM generate_series(1, 200) g").await;
    // The connector starts after the insert and copies nothing: the slot never saw the row, so
    // there is no point to merge into.
    let mut cfg = db.config(&table("items", "t_toastfetch", 3, ""));
    cfg.source.snapshot = pg2qdrant::config::SnapshotMode::Never;
    let run = db.start(cfg).await;
    db.exec("UPDATE items SET n = 5 WHERE id = 1").await;
    let p = wait_for("fetched row", WAIT, || point("t_toastfetch", 1)).await;
    assert_eq!(p.payload["n"], json!(5));
    assert_eq!(
        p.payload["big"].as_str().map(str::len),
        Some(200 * 32),
        "full row, not a partial point"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_change_of_a_row_with_an_unchanged_toasted_column_keeps_every_column() {
    let db = TestDb::new("t_toast_rekey", ITEMS).await;
    db.exec("ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL")
        .await;
    let run = db
        .start(db.config(&table("items", "t_toast_rekey", 3, "")))
        .await;
    // Random text does not compress: stored out of line, and sent as "unchanged TOAST" by an
    // UPDATE that does not set it.
    db.exec("INSERT INTO items SELECT k, 'a', string_agg(md5(k::text || g::text), ''), 1, '{1,0,0}' FROM generate_series(1, 200) g, (VALUES (10), (20)) AS r(k) GROUP BY k").await;
    wait_count("t_toast_rekey", 2).await;
    let big = |id: u64| async move {
        point("t_toast_rekey", id)
            .await
            .and_then(|p| p.payload["big"].as_str().map(str::to_owned))
    };
    let (big10, big20) = (big(10).await.unwrap(), big(20).await.unwrap());
    assert_eq!(big10.len(), 200 * 32);
    // Alone, and after another update of the row in the same transaction.
    db.exec("UPDATE items SET id = 5000 WHERE id = 10").await;
    db.exec("BEGIN; UPDATE items SET n = 7 WHERE id = 20; UPDATE items SET id = 6000 WHERE id = 20; COMMIT")
        .await;
    let p = wait_for("point 6000", WAIT, || async {
        point("t_toast_rekey", 6000)
            .await
            .filter(|p| p.payload["n"] == json!(7))
    })
    .await;
    assert_eq!(
        p.payload["big"].as_str(),
        Some(big20.as_str()),
        "the TOASTed column is kept"
    );
    assert_eq!(p.vector, Some(vec![1.0, 0.0, 0.0]));
    let p = point("t_toast_rekey", 5000).await.expect("point 5000");
    assert_eq!(
        p.payload["big"].as_str(),
        Some(big10.as_str()),
        "the TOASTed column is kept"
    );
    assert_eq!(p.payload["title"], json!("a"));
    wait_count("t_toast_rekey", 2).await;
    assert!(
        point("t_toast_rekey", 10).await.is_none() && point("t_toast_rekey", 20).await.is_none()
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_drop_column_mid_stream_keep_streaming() {
    let db = TestDb::new("t_schema", ITEMS).await;
    let run = db
        .start(db.config(&table("items", "t_schema", 3, "")))
        .await;
    db.exec("INSERT INTO items VALUES (1, 'a', NULL, 1, '{1,0,0}')")
        .await;
    wait_count("t_schema", 1).await;
    db.exec("ALTER TABLE items ADD COLUMN color text; INSERT INTO items VALUES (2, 'b', NULL, 2, '{0,1,0}', 'red')").await;
    let p = wait_for("point 2", WAIT, || point("t_schema", 2)).await;
    assert_eq!(p.payload["color"], json!("red"));
    db.exec("ALTER TABLE items DROP COLUMN n; INSERT INTO items (id, title, v, color) VALUES (3, 'c', '{0,0,1}', 'blue')").await;
    let p = wait_for("point 3", WAIT, || point("t_schema", 3)).await;
    assert_eq!(p.payload["color"], json!("blue"));
    assert!(p.payload.get("n").is_none());
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_and_text_keys_get_stable_uuid5_ids() {
    let db = TestDb::new(
        "t_uuid5",
        "CREATE TABLE pairs (a text, b int, v real[], PRIMARY KEY (a, b)); CREATE TABLE named (k text PRIMARY KEY, v real[]);",
    )
    .await;
    let tables = format!(
        "{}{}",
        table("pairs", "t_uuid5", 2, ""),
        table("named", "t_uuid5_named", 2, "")
    );
    let run = db.start(db.config(&tables)).await;
    db.exec(
        "INSERT INTO pairs VALUES ('x', 1, '{1,0}'); INSERT INTO named VALUES ('alpha', '{0,1}')",
    )
    .await;
    wait_count("t_uuid5", 1).await;
    wait_count("t_uuid5_named", 1).await;
    let pair_id = pg2qdrant::mapping::key::point_key(
        &pg2qdrant::event::TableName::parse("public.pairs"),
        &[(25, "x"), (23, "1")],
    )
    .to_string();
    let named_id = pg2qdrant::mapping::key::point_key(
        &pg2qdrant::event::TableName::parse("public.named"),
        &[(25, "alpha")],
    )
    .to_string();
    assert!(
        point("t_uuid5", pair_id.clone()).await.is_some(),
        "composite key → uuid5 {pair_id}"
    );
    assert!(
        point("t_uuid5_named", named_id.clone()).await.is_some(),
        "text key → uuid5 {named_id}"
    );
    // Same row again (update) lands on the same point.
    db.exec("UPDATE pairs SET v = '{0,1}' WHERE a = 'x'").await;
    wait_for("update on same id", WAIT, || async {
        point("t_uuid5", pair_id.clone())
            .await
            .filter(|p| p.vector == Some(vec![0.0, 1.0]))
    })
    .await;
    assert_eq!(count("t_uuid5").await, 1);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deleted_rows_leave_qdrant() {
    let db = TestDb::new("t_soft", "CREATE TABLE msgs (id bigint PRIMARY KEY, body text, is_deleted boolean NOT NULL DEFAULT false, v real[]);").await;
    let run = db
        .start(db.config(&table("msgs", "t_soft", 2, "soft_delete = \"is_deleted\"")))
        .await;
    db.exec("INSERT INTO msgs VALUES (1, 'keep', false, '{1,0}'), (2, 'drop', false, '{0,1}')")
        .await;
    wait_count("t_soft", 2).await;
    db.exec("UPDATE msgs SET is_deleted = true WHERE id = 2")
        .await;
    wait_count("t_soft", 1).await;
    assert!(point("t_soft", 2).await.is_none());
    db.exec("UPDATE msgs SET is_deleted = false WHERE id = 2")
        .await;
    wait_count("t_soft", 2).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_vector_is_dead_lettered_and_the_stream_goes_on() {
    let db = TestDb::new("t_deadletter", ITEMS).await;
    let mut cfg = db.config(&table("items", "t_deadletter", 3, ""));
    // Streamed rows only: a bad row committed while the initial copy reads its chunk would be
    // dead-lettered by the copy as well.
    cfg.source.snapshot = pg2qdrant::config::SnapshotMode::Never;
    let dl = cfg.dead_letter.path.clone();
    let run = db.start(cfg).await;
    db.exec("INSERT INTO items VALUES (1, 'short', NULL, 1, '{1,2}')")
        .await;
    db.exec("INSERT INTO items VALUES (2, 'nan', NULL, 2, '{1,NaN,2}')")
        .await;
    db.exec("INSERT INTO items VALUES (3, 'null', NULL, 3, NULL)")
        .await;
    db.exec("INSERT INTO items VALUES (4, 'good', NULL, 4, '{1,2,3}')")
        .await;
    wait_count("t_deadletter", 1).await;
    let lines: Vec<serde_json::Value> = wait_for("three dead letters", WAIT, || async {
        let text = std::fs::read_to_string(&dl).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.len() == 3).then_some(lines)
    })
    .await;
    assert_eq!(lines[0]["table"], "public.items");
    assert_eq!(lines[0]["key"], json!({"id": "1"}));
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("2 dimensions"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1]["reason"].as_str().unwrap().contains("not finite"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2]["reason"].as_str().unwrap().contains("NULL"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[0]["row"]["title"], "short");
    assert!(lines[0]["lsn"].as_str().unwrap().contains('/'));
    assert!(point("t_deadletter", 4).await.is_some());
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_change_applied_after_a_newer_one_does_not_regress_the_point() {
    use pg2qdrant::event::{Document, Op, PointKey, Vectors};
    use pg2qdrant::lsn::Position;
    use pg2qdrant::sink::Sink;
    let db = TestDb::new("t_fence", ITEMS).await;
    // Create the collection through the connector's own set-up.
    let cfg = db.config(&table("items", "t_fence", 2, ""));
    pg2qdrant::setup::prepare(&cfg).await.unwrap();
    let sink = pg2qdrant::sink::qdrant::QdrantSink::new(qdrant()).unwrap();
    let table: std::sync::Arc<str> = "public.items".into();
    let doc = |title: &str, lsn: u64, seq: u64, v: Vec<f32>| {
        let position = Position {
            commit_lsn: lsn,
            seq,
        };
        let mut payload = serde_json::Map::new();
        payload.insert("title".into(), json!(title));
        Document {
            key: PointKey::Num(9),
            payload,
            meta: Some(pg2qdrant::mapping::meta(&table, 0)),
            vectors: Some(Vectors::Default(v)),
            embed: Vec::new(),
            anchor: None,
            position,
        }
    };
    let c: std::sync::Arc<str> = "t_fence".into();
    let upsert = |d: Document| Op::Upsert {
        collection: c.clone(),
        doc: d,
        copied: false,
    };
    let skipped = sink
        .write(&[upsert(doc("new", 200, 1, vec![1.0, 0.0]))])
        .await
        .unwrap();
    assert!(skipped.is_empty(), "a new point is applied: {skipped:?}");
    // Older commit, and same commit with an earlier ordinal: both skipped, and reported as
    // skipped (the writer counts them apart from what was applied).
    let skipped = sink
        .write(&[upsert(doc("old", 100, 5, vec![0.0, 1.0]))])
        .await
        .unwrap();
    assert_eq!(skipped, vec![(c.clone(), 1)]);
    let skipped = sink
        .write(&[upsert(doc("older-seq", 200, 0, vec![0.0, 1.0]))])
        .await
        .unwrap();
    assert_eq!(skipped, vec![(c.clone(), 1)]);
    sink.write(&[Op::Delete {
        collection: c.clone(),
        key: PointKey::Num(9),
        position: Position {
            commit_lsn: 150,
            seq: 0,
        },
    }])
    .await
    .unwrap();
    let p = point("t_fence", 9)
        .await
        .expect("point survives an older delete");
    assert_eq!(p.payload["title"], json!("new"));
    assert_eq!(p.vector, Some(vec![1.0, 0.0]));
    // A newer change does apply.
    let skipped = sink
        .write(&[upsert(doc("newer", 300, 0, vec![0.0, 1.0]))])
        .await
        .unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        point("t_fence", 9).await.unwrap().payload["title"],
        json!("newer")
    );
    // A point written by someone else (no position) may be overwritten.
    qdrant()
        .upsert_points(
            qdrant_client::qdrant::UpsertPointsBuilder::new(
                "t_fence",
                vec![qdrant_client::qdrant::PointStruct::new(
                    10,
                    vec![1.0, 1.0],
                    qdrant_client::Payload::new(),
                )],
            )
            .wait(true),
        )
        .await
        .unwrap();
    let mut foreign = doc("ours", 1, 0, vec![0.0, 1.0]);
    foreign.key = PointKey::Num(10);
    sink.write(&[upsert(foreign)]).await.unwrap();
    assert_eq!(
        point("t_fence", 10).await.unwrap().payload["title"],
        json!("ours")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_command_names_the_missing_table_and_fails() {
    let db = TestDb::new("t_check", ITEMS).await;
    let dir = work_dir("t_check");
    let config = dir.join("config.toml");
    let tables = format!(
        "{}{}",
        table("items", "t_check", 3, ""),
        table("nosuch", "t_check2", 3, "")
    );
    std::fs::write(&config, db.config_text(&tables, &qdrant_url())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok   wal_level: logical"), "{stdout}");
    assert!(
        stdout.contains("ok   tables[0] public.items: existing rows are copied at start"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL tables[1] public.nosuch") && stdout.contains("does not exist"),
        "{stdout}"
    );
    // Checks that cannot run say so (they used to vanish from the list).
    assert!(
        stdout.contains("FAIL point ids: cannot be checked"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL source.format: cannot be checked"),
        "{stdout}"
    );
    // A bad config is reported with its field path, and is a failure too.
    std::fs::write(
        &config,
        db.config_text(&tables, &qdrant_url())
            .replace("batch_size = 64", "batch_size = 0"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("qdrant.batch_size"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_write_in_flight_a_commit_is_sent_without_waiting_for_the_linger() {
    let db = TestDb::new("t_nolinger", ITEMS).await;
    let mut cfg = db.config(&table("items", "t_nolinger", 3, ""));
    // A linger far longer than the test's patience: only the idle flush can deliver in time.
    cfg.qdrant.linger_ms = 600_000;
    let run = db.start(cfg).await;
    db.exec("INSERT INTO items VALUES (1, 'alone', NULL, 1, '{1,0,0}')")
        .await;
    wait_for("the lone insert", WAIT, || point("t_nolinger", 1)).await;
    db.exec("UPDATE items SET title = 'again' WHERE id = 1")
        .await;
    wait_for("the update", WAIT, || async {
        point("t_nolinger", 1)
            .await
            .filter(|p| p.payload["title"] == json!("again"))
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_as_string_domains_and_intervals_map_losslessly_when_streamed_and_copied() {
    let db = TestDb::new(
        "t_lossless",
        "CREATE DOMAIN qty AS int CHECK (VALUE >= 0);
         CREATE TABLE priced (id bigint PRIMARY KEY, price numeric(30,10), n qty, wait interval, v real[]);
         INSERT INTO priced VALUES (1, 12345678901234567890.0123456789, 7, '1 day 02:00:00', '{1,0}');",
    )
    .await;
    let cfg = db.config(&table("priced", "t_lossless", 2, "numeric = \"string\""));
    let run = db.start(cfg).await;
    db.exec("INSERT INTO priced VALUES (2, 0.1, 0, '-1 year -3 mons', '{0,1}')")
        .await;
    let copied = wait_for("copied row", WAIT, || point("t_lossless", 1)).await;
    assert_eq!(
        copied.payload["price"],
        json!("12345678901234567890.0123456789")
    );
    assert_eq!(
        copied.payload["n"],
        json!(7),
        "a domain maps like its base type"
    );
    assert_eq!(copied.payload["wait"], json!("P1DT2H"));
    let streamed = wait_for("streamed row", WAIT, || point("t_lossless", 2)).await;
    assert_eq!(streamed.payload["price"], json!("0.1000000000"));
    assert_eq!(streamed.payload["n"], json!(0));
    assert_eq!(streamed.payload["wait"], json!("P-1Y-3M"));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tables_with_integer_ids_in_one_collection_are_refused_unless_one_uses_uuid5() {
    let db = TestDb::new(
        "t_idclash",
        "CREATE TABLE a (id bigint PRIMARY KEY, v real[]); CREATE TABLE b (id bigint PRIMARY KEY, v real[]);",
    )
    .await;
    let clash = format!(
        "{}{}",
        table("a", "t_idclash", 2, ""),
        table("b", "t_idclash", 2, "")
    );
    let err = pg2qdrant::setup::prepare(&db.config(&clash))
        .await
        .expect_err("colliding ids are refused");
    let text = err.to_string();
    assert!(
        text.contains("public.a") && text.contains("public.b") && text.contains("uuid5"),
        "{text}"
    );
    let dir = work_dir("t_idclash");
    let config = dir.join("config.toml");
    std::fs::write(&config, db.config_text(&clash, &qdrant_url())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL point ids"), "{stdout}");

    let fixed = format!(
        "{}{}",
        table("a", "t_idclash", 2, ""),
        table("b", "t_idclash", 2, "id = \"uuid5\"")
    );
    let run = db.start(db.config(&fixed)).await;
    db.exec("INSERT INTO a VALUES (1, '{1,0}'); INSERT INTO b VALUES (1, '{0,1}')")
        .await;
    wait_count("t_idclash", 2).await;
    let b1 = pg2qdrant::mapping::key::uuid5(
        &pg2qdrant::event::TableName::parse("public.b"),
        &[(20, "1")],
    );
    assert!(point("t_idclash", 1u64).await.is_some());
    assert!(point("t_idclash", b1.to_string()).await.is_some());
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_of_two_shards_with_vectors_on_disk_is_created_so_and_written_in_parallel() {
    let db = TestDb::new("t_shards", ITEMS).await;
    let mut cfg = db.config(&table(
        "items",
        "t_shards",
        3,
        "collection_config = { shard_number = 2, on_disk = true, write_consistency_factor = 1 }",
    ));
    // Four batches of 16 in flight at most: every row still lands as its last change says.
    cfg.qdrant.parallel = 4;
    cfg.qdrant.batch_size = 16;
    let run = db.start(cfg).await;
    db.exec("INSERT INTO items SELECT g, 't' || g, NULL, g, ARRAY[g, 1, 0]::real[] FROM generate_series(1, 400) g")
        .await;
    db.exec(
        "UPDATE items SET title = 'even' WHERE id % 2 = 0; DELETE FROM items WHERE id % 10 = 5",
    )
    .await;
    wait_count("t_shards", 360).await;
    let points = wait_for("every update applied", WAIT, || async {
        let points = all_points("t_shards").await;
        let evens = points
            .iter()
            .filter(|(_, p)| p.payload["title"] == json!("even"))
            .count();
        (points.len() == 360 && evens == 200).then_some(points)
    })
    .await;
    for (id, p) in &points {
        let n: i64 = id.parse().unwrap();
        assert_ne!(n % 10, 5, "point {id} of a deleted row");
        let title = if n % 2 == 0 {
            json!("even")
        } else {
            json!(format!("t{n}"))
        };
        assert_eq!(
            (&p.payload["title"], &p.payload["n"]),
            (&title, &json!(n)),
            "point {id}"
        );
        assert_eq!(p.vector, Some(vec![n as f32, 1.0, 0.0]), "point {id}");
    }
    let info = qdrant()
        .collection_info("t_shards")
        .await
        .unwrap()
        .result
        .unwrap();
    let params = info.config.unwrap().params.unwrap();
    assert_eq!(params.shard_number, 2);
    assert_eq!(params.write_consistency_factor, Some(1));
    use qdrant_client::qdrant::vectors_config::Config as V;
    let Some(V::Params(v)) = params.vectors_config.and_then(|c| c.config) else {
        panic!("one unnamed vector")
    };
    // Qdrant 1.16 reports `on_disk` (newer servers also `memory`).
    #[allow(deprecated)]
    let on_disk = v.on_disk;
    assert_eq!(on_disk, Some(true));
    run.stop().await;
}
