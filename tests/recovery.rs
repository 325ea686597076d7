//! Crashes and outages lose nothing: kill -9 of the connector, Qdrant stopped mid-load.

use crate::harness::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

pub const LOAD: &str =
    "CREATE TABLE docs (id bigint PRIMARY KEY, title text NOT NULL, n int, v real[]);";
pub const DIM: usize = 8;

/// Inserts rows `first..=rows` in transactions of `per_txn`, then updates every 10th row and deletes
/// every 25th, so the end state exercises every op.
pub async fn load(url: String, first: i64, rows: i64, per_txn: i64) {
    let c = connect(&url).await;
    let mut start = first;
    while start <= rows {
        let end = (start + per_txn - 1).min(rows);
        c.batch_execute(&format!(
            "INSERT INTO docs SELECT g, 'row ' || g, g % 1000, array_fill((g % 97)::real, ARRAY[{DIM}]) FROM generate_series({start}, {end}) g"
        ))
        .await
        .unwrap();
        start = end + 1;
    }
    c.batch_execute("UPDATE docs SET title = title || ' updated', v[1] = -1 WHERE id % 10 = 0")
        .await
        .unwrap();
    c.batch_execute("DELETE FROM docs WHERE id % 25 = 0")
        .await
        .unwrap();
}

/// Every row equals its point (id, payload, vector) and there are no extra points.
pub async fn assert_mirrored(db: &TestDb, collection: &str) {
    assert_mirrored_at(db, collection, &qdrant()).await
}

pub async fn assert_mirrored_at(db: &TestDb, collection: &str, q: &qdrant_client::Qdrant) {
    assert_mirrored_read(db, collection, q, None).await
}

/// [`assert_mirrored_at`], reading with `consistency` (one replica when `None`).
pub async fn assert_mirrored_read(
    db: &TestDb,
    collection: &str,
    q: &qdrant_client::Qdrant,
    consistency: Option<qdrant_client::qdrant::ReadConsistencyType>,
) {
    let rows = db
        .client
        .query("SELECT id, title, n, v FROM docs", &[])
        .await
        .unwrap();
    let expected: HashMap<String, (String, i32, Vec<f32>)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0).to_string(),
                (r.get(1), r.get(2), r.get::<_, Vec<f32>>(3)),
            )
        })
        .collect();
    wait_ok("every point equal to its row", WAIT, || async {
        let points = try_all_points_read(q, collection, consistency)
            .await
            .map_err(|e| e.to_string())?;
        if points.len() != expected.len() {
            return Err(format!("{} points, {} rows", points.len(), expected.len()));
        }
        for (id, p) in &points {
            let Some((title, n, v)) = expected.get(id) else {
                return Err(format!("extra point {id}"));
            };
            if p.payload["title"] != json!(title)
                || p.payload["n"] != json!(n)
                || p.vector.as_ref() != Some(v)
            {
                return Err(format!(
                    "point {id}: {:?} vs row {title:?} {n} {v:?}",
                    p.payload
                ));
            }
        }
        Ok(())
    })
    .await;
}

pub fn spawn_binary(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["run", "--config"])
        .arg(config)
        .env("PG2QDRANT_LOG", "warn")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn pg2qdrant")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_10000_row_load_then_restart_mirrors_every_row() {
    let db = TestDb::new("t_kill9", LOAD).await;
    let dir = work_dir("t_kill9");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        db.config_text(&table("docs", "t_kill9", DIM as u64, ""), &qdrant_url()),
    )
    .unwrap();
    let mut child = spawn_binary(&config, &dir.join("run1.log"));
    db.wait_streaming().await;
    let loader = tokio::spawn(load(db.url.clone(), 1, 10_000, 100));
    wait_for("mid-load", WAIT, || async {
        (count("t_kill9").await >= 2_000).then_some(())
    })
    .await;
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let at_kill = count("t_kill9").await;
    loader.await.unwrap();
    assert!(at_kill < 10_000, "killed mid-load ({at_kill} points)");
    let mut child = spawn_binary(&config, &dir.join("run2.log"));
    assert_mirrored(&db, "t_kill9").await;
    // SIGTERM: clean exit, status 0.
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    // The checkpoint was written on the way out and the slot was told the same position.
    let cp = std::fs::read_to_string(dir.join("checkpoint")).expect("checkpoint written");
    let cp = pg2qdrant::lsn::parse_lsn(&cp).unwrap().as_u64();
    assert!(cp > 0);
    assert_eq!(
        db.confirmed_u64().await,
        cp,
        "slot confirmed = checkpoint after a clean stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_stopped_and_restarted_mid_load_loses_nothing() {
    let db = TestDb::new("t_qdrant_restart", LOAD).await;
    let mut q = PrivateQdrant::start("t_qdrant_restart").await;
    let cfg = pg2qdrant::config::parse(
        &db.config_text(&table("docs", "t_qdrant_restart", DIM as u64, ""), &q.url()),
    )
    .unwrap();
    let run = db.start(cfg).await;
    // First part of the load lands while Qdrant is up.
    db.exec(&format!("INSERT INTO docs SELECT g, 'a', g, array_fill(1::real, ARRAY[{DIM}]) FROM generate_series(1, 1000) g")).await;
    wait_count_at(&q.client(), "t_qdrant_restart", 1000).await;
    q.kill();
    // The rest of the load (inserts, updates, deletes) commits while Qdrant is down.
    load(db.url.clone(), 1_001, 3_000, 50).await;
    let end_of_load = db.current_lsn_u64().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let confirmed = db.confirmed_u64().await;
    assert!(
        confirmed < end_of_load,
        "the load was not acknowledged while Qdrant is down"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db.confirmed_u64().await,
        confirmed,
        "nothing is acknowledged while Qdrant is down"
    );
    assert!(
        !run.is_finished(),
        "the connector keeps running through the outage"
    );
    q.restart().await;
    assert_mirrored_at(&db, "t_qdrant_restart", &q.client()).await;
    run.stop().await;
}

/// A rotated key is an outage, not a pile of bad rows: while Qdrant refuses the connector's key
/// nothing is parked, readiness says so, and the slot holds; the right key again, and it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_refusing_the_key_mid_load_parks_nothing_and_holds_the_slot() {
    let db = TestDb::new("t_qdrant_key", LOAD).await;
    let mut q = PrivateQdrant::start_keyed("t_qdrant_key", "key-a").await;
    let mut cfg = pg2qdrant::config::parse(
        &db.config_text(&table("docs", "t_qdrant_key", DIM as u64, ""), &q.url())
            .replace("[qdrant]\n", "[qdrant]\napi_key = \"key-a\"\n"),
    )
    .unwrap();
    let port = free_port();
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    let dead_letters = cfg.dead_letter.path.clone();
    let run = db.start(cfg).await;
    db.exec(&format!("INSERT INTO docs SELECT g, 'a', g, array_fill(1::real, ARRAY[{DIM}]) FROM generate_series(1, 500) g")).await;
    assert_mirrored_at(&db, "t_qdrant_key", &q.client()).await;
    let addr = format!("127.0.0.1:{port}");
    wait_readyz(&addr, 200, "ready").await;
    // The operator rotates the key on Qdrant before the connector's.
    q.kill();
    q.api_key = Some("key-b".into());
    q.restart().await;
    load(db.url.clone(), 501, 1_500, 50).await;
    let end_of_load = db.insert_lsn_u64().await;
    let body = wait_readyz(&addr, 503, "readyz 503 while Qdrant refuses the key").await;
    assert!(body.contains("qdrant"), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(db.confirmed_u64().await < end_of_load, "the slot holds");
    let parked = std::fs::read_to_string(&dead_letters).unwrap_or_default();
    assert!(parked.is_empty(), "nothing parked for an outage: {parked}");
    assert!(!run.is_finished(), "the connector keeps running through it");
    // The key matches again: everything arrives, nothing was lost or parked.
    q.kill();
    q.api_key = Some("key-a".into());
    q.restart().await;
    assert_mirrored_at(&db, "t_qdrant_key", &q.client()).await;
    wait_readyz(&addr, 200, "ready again").await;
    assert_eq!(
        std::fs::read_to_string(&dead_letters).unwrap_or_default(),
        ""
    );
    run.stop().await;
}

/// A collection deleted under the running connector is not a pile of bad rows: the connector
/// stops without acknowledging the batch and parks nothing; its next start creates the
/// collection again and copies the table again, so every row has its point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_deleted_under_the_connector_stops_it_and_the_next_start_copies_again() {
    let db = TestDb::new("t_collection_gone", LOAD).await;
    let dir = work_dir(&db.name);
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        db.config_text(&table("docs", &db.name, DIM as u64, ""), &qdrant_url()),
    )
    .unwrap();
    let mut run = Process::start("run", &config, "run1.log");
    db.wait_streaming().await;
    db.exec(&format!("INSERT INTO docs SELECT g, 'a', g, array_fill(1::real, ARRAY[{DIM}]) FROM generate_series(1, 200) g")).await;
    wait_count(&db.name, 200).await;
    qdrant().delete_collection(&db.name).await.unwrap();
    db.exec(&format!("INSERT INTO docs SELECT g, 'b', g, array_fill(2::real, ARRAY[{DIM}]) FROM generate_series(201, 300) g")).await;
    let end_of_insert = db.insert_lsn_u64().await;
    let status = run.exit_within(WAIT, "the connector did not stop").await;
    assert_eq!(status.code(), Some(1), "{status}");
    let log = std::fs::read_to_string(dir.join("run1.log")).unwrap();
    assert!(log.contains("creates the collection again"), "{log}");
    assert!(
        db.confirmed_u64().await < end_of_insert,
        "the failed batch was not acknowledged"
    );
    let parked = std::fs::read_to_string(dir.join("deadletter.jsonl")).unwrap_or_default();
    assert!(
        parked.is_empty(),
        "nothing parked for a missing collection: {parked}"
    );
    let _again = Process::start("run", &config, "run2.log");
    wait_for("the collection created again", WAIT, || async {
        qdrant()
            .collection_exists(&db.name)
            .await
            .ok()?
            .then_some(())
    })
    .await;
    assert_mirrored(&db, &db.name).await;
    let log = std::fs::read_to_string(dir.join("run2.log")).unwrap();
    assert!(log.contains("copied again"), "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.join("deadletter.jsonl")).unwrap_or_default(),
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_connection_killed_reconnects_and_loses_nothing() {
    let db = TestDb::new("t_pg_reconnect", LOAD).await;
    let run = db
        .start(db.config(&table("docs", "t_pg_reconnect", DIM as u64, "")))
        .await;
    db.exec("INSERT INTO docs SELECT g, 'a', g, array_fill(1::real, ARRAY[8]) FROM generate_series(1, 100) g").await;
    wait_count("t_pg_reconnect", 100).await;
    db.exec("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 't_pg_reconnect'").await;
    db.exec("INSERT INTO docs SELECT g, 'b', g, array_fill(2::real, ARRAY[8]) FROM generate_series(101, 200) g").await;
    db.exec("DELETE FROM docs WHERE id <= 10").await;
    assert_mirrored(&db, "t_pg_reconnect").await;
    run.stop().await;
}

/// A row that can only be read back whole (its vector is stored out of line and unchanged) and
/// cannot be mapped is parked once, not once per retry of the step that read it: here the same
/// step retries while Qdrant is down, because the next row's merge asks Qdrant about its point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmappable_row_read_back_during_an_outage_is_parked_once() {
    let db = TestDb::new(
        "t_readback_once",
        "CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text, v real[]);
         ALTER TABLE docs ALTER COLUMN v SET STORAGE EXTERNAL, ALTER COLUMN body SET STORAGE EXTERNAL;",
    )
    .await;
    let mut q = PrivateQdrant::start("t_readback_once").await;
    let mut cfg = pg2qdrant::config::parse(
        &db.config_text(&table("docs", "t_readback_once", DIM as u64, ""), &q.url()),
    )
    .unwrap();
    // No copy: a copy still running when the rows arrive would read (and park) row 1 again.
    cfg.source.snapshot = pg2qdrant::config::SnapshotMode::Never;
    let dead_letters = cfg.dead_letter.path.clone();
    let run = db.start(cfg).await;
    // Row 1's vector has 3000 dimensions, not 8: it is parked when inserted. Row 2 is fine and
    // has a body stored out of line.
    db.exec(&format!(
        "INSERT INTO docs VALUES
           (1, 'bad', 'short', array_fill(1::real, ARRAY[3000])),
           (2, 'good', repeat('body ', 4000), array_fill(1::real, ARRAY[{DIM}]))"
    ))
    .await;
    wait_count_at(&q.client(), "t_readback_once", 1).await;
    let parked_for_row_1 = || {
        std::fs::read_to_string(&dead_letters)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["key"] == json!({"id": "1"}))
            .count()
    };
    wait_for("the insert of row 1 parked", WAIT, || async {
        (parked_for_row_1() == 1).then_some(())
    })
    .await;
    q.kill();
    // Row 1: a NULL title makes its merge a read-back (the vector is unchanged, out of line),
    // which cannot be mapped. Row 2: its merge asks Qdrant whether its point exists, and fails
    // while Qdrant is down, so the whole step is retried.
    db.exec("BEGIN; UPDATE docs SET title = NULL WHERE id = 1; UPDATE docs SET title = 'good 2' WHERE id = 2; COMMIT")
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    q.restart().await;
    let qc = q.client();
    wait_for("row 2 updated", WAIT, || async {
        let p = qc
            .get_points(
                qdrant_client::qdrant::GetPointsBuilder::new("t_readback_once", vec![2u64.into()])
                    .with_payload(true),
            )
            .await
            .ok()?
            .result
            .pop()?;
        (p.payload.get("title")?.as_str()? == "good 2").then_some(())
    })
    .await;
    assert_eq!(
        parked_for_row_1(),
        2,
        "row 1 parked once more for its update, whatever the retries"
    );
    run.stop().await;
}
