//! Existing rows: the copy between watermarks, its resume after kill -9, online resync, the
//! snapshot modes, tables added later, and a lost slot. One scenario each.

use crate::chat::http_get;
use crate::harness::*;
use crate::recovery::{assert_mirrored, spawn_binary, DIM, LOAD};
use pg2qdrant::config::SnapshotMode;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Inserts rows `1..=n` (8-float vectors) in one statement.
async fn existing_rows(db: &TestDb, n: i64) {
    db.exec(&format!(
        "INSERT INTO docs SELECT g, 'row ' || g, g % 1000, array_fill((g % 97)::real, ARRAY[{DIM}]) FROM generate_series(1, {n}) g"
    ))
    .await;
}

/// Updates, deletes and re-inserts keys among `1..=n` (and adds new ones), `rounds` small
/// transactions, so the stream keeps touching rows the copy is reading.
async fn churn(url: String, n: i64, rounds: i64) {
    let c = connect(&url).await;
    for r in 0..rounds {
        let lo = (r * 997) % n + 1;
        c.batch_execute(&format!(
            "BEGIN;
             UPDATE docs SET title = title || ' u{r}', v[1] = {r} WHERE id % 97 = {m97};
             DELETE FROM docs WHERE id % 101 = {m101};
             INSERT INTO docs SELECT g, 'again {r}', {r}, array_fill({r}::real, ARRAY[{DIM}]) FROM generate_series({lo}, {hi}) g
               ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, n = EXCLUDED.n, v = EXCLUDED.v;
             INSERT INTO docs VALUES ({new}, 'new {r}', {r}, array_fill(1::real, ARRAY[{DIM}]));
             COMMIT;",
            m97 = r % 97,
            m101 = (r * 7) % 101,
            hi = (lo + 50).min(n),
            new = n + 1 + r,
        ))
        .await
        .unwrap();
    }
}

fn state(dir: &Path) -> Value {
    std::fs::read(dir.join("checkpoint.snapshot.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn copy_of(dir: &Path) -> Value {
    state(dir)["tables"]["public.docs"].clone()
}

/// A copy killed at `at_kill` and finished (`done`) by a second process (metrics on `port`):
/// it copied `rows` in all, kept its start, and the second process read only the chunks that
/// were not durable at the kill.
async fn assert_resumed(done: &Value, at_kill: &Value, port: u16, rows: u64) {
    assert_eq!(done["rows"].as_u64(), Some(rows), "{done}");
    assert_eq!(
        done["start_lsn"], at_kill["start_lsn"],
        "the resumed copy keeps its start"
    );
    let body = http_get(port, "/metrics").await;
    let copied: u64 = body
        .lines()
        .find(|l| l.starts_with("pg2qdrant_snapshot_rows_total{table=\"public.docs\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no snapshot rows metric:\n{body}"));
    let at_kill = at_kill["rows"].as_u64().unwrap();
    assert_eq!(
        copied,
        rows - at_kill,
        "finished chunks are not copied again"
    );
}

async fn wait_copy_done(dir: &Path) -> Value {
    wait_for("the copy to finish", WAIT, || async {
        let c = copy_of(dir);
        (c["status"] == "done").then_some(c)
    })
    .await
}

/// The connector started on `db` (its config with `source_extra`) over `n` existing rows, once
/// every row is a point and the first copy has settled (done, its deferred indexing restored):
/// the config file and the running connector.
async fn running_over_copied_rows(
    db: &TestDb,
    n: i64,
    source_extra: &str,
) -> (std::path::PathBuf, Running) {
    let config = config_file(db, source_extra, "");
    let run = db.start(pg2qdrant::config::load(&config).unwrap()).await;
    existing_rows(db, n).await;
    wait_count(&db.name, n as u64).await;
    db.wait_first_copy_settled().await;
    (config, run)
}

/// The config file of `db` with extra `[source]` lines (e.g. the snapshot knobs).
fn config_file(db: &TestDb, source_extra: &str, metrics: &str) -> std::path::PathBuf {
    let dir = work_dir(&db.name);
    let text = db
        .config_text(&table("docs", &db.name, DIM as u64, ""), &qdrant_url())
        .replace(
            "status_interval_ms = 200\n",
            &format!("status_interval_ms = 200\n{source_extra}\n"),
        )
        .replace("addr = \"\"", &format!("addr = \"{metrics}\""));
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_of_50000_rows_under_concurrent_writes_mirrors_every_row() {
    let db = TestDb::new("t_snap_writes", LOAD).await;
    existing_rows(&db, 50_000).await;
    let mut cfg = db.config(&table("docs", "t_snap_writes", DIM as u64, ""));
    cfg.source.snapshot_chunk_pages = 16;
    let run = db.start(cfg).await;
    let writer = tokio::spawn(churn(db.url.clone(), 50_000, 40));
    // The writer runs while the copy is in its first chunks.
    writer.await.unwrap();
    let copy = wait_copy_done(&work_dir("t_snap_writes")).await;
    assert!(copy["chunks"].as_u64().unwrap() > 10, "{copy}");
    assert_mirrored(&db, "t_snap_writes").await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_copy_resumes_from_the_finished_chunks() {
    let db = TestDb::new("t_snap_kill", LOAD).await;
    const ROWS: u64 = 40_000;
    existing_rows(&db, ROWS as i64).await;
    let dir = work_dir("t_snap_kill");
    let config = config_file(&db, "snapshot_workers = 1\nsnapshot_chunk_pages = 4", "");
    let mut child = spawn_binary(&config, &dir.join("run1.log"));
    wait_for("a few durable chunks", WAIT, || async {
        let c = copy_of(&dir);
        (c["done"].as_array().is_some_and(|d| d.len() >= 5)).then_some(())
    })
    .await;
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let at_kill = copy_of(&dir);
    assert_eq!(at_kill["status"], "copying", "killed mid-copy: {at_kill}");
    let chunks = at_kill["chunks"].as_u64().unwrap();
    let done_at_kill = at_kill["done"].as_array().unwrap().len() as u64;
    let rows_at_kill = at_kill["rows"].as_u64().unwrap();
    assert!(done_at_kill < chunks && rows_at_kill > 0, "{at_kill}");

    let port = free_port();
    let config = config_file(
        &db,
        "snapshot_workers = 1\nsnapshot_chunk_pages = 4",
        &format!("127.0.0.1:{port}"),
    );
    let mut child = spawn_binary(&config, &dir.join("run2.log"));
    let done = wait_copy_done(&dir).await;
    assert_resumed(&done, &at_kill, port, ROWS).await;
    assert_mirrored(&db, "t_snap_kill").await;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_under_updates_and_deletes_leaves_no_ghost_and_no_stale_point() {
    use qdrant_client::qdrant::{
        DeletePointsBuilder, PointStruct, PointsIdsList, SetPayloadPointsBuilder,
        UpsertPointsBuilder,
    };
    let db = TestDb::new("t_resync", LOAD).await;
    let dir = work_dir("t_resync");
    // Mirrored first: the first copy done and its deferred indexing restored, so the resync
    // below is what removes the drift (not the first copy's sweep, and not while Qdrant
    // reconfigures the collection).
    let (config, run) = running_over_copied_rows(&db, 10_000, "snapshot_chunk_pages = 2").await;
    // Drift: an orphan (its row never existed), a stale payload, a missing point.
    let q = qdrant();
    let orphan = serde_json::json!({"title": "ghost", "_pg2qdrant": {"table": "public.docs", "lsn": 1, "seq": 0, "key": {"id": "900000"}}});
    q.upsert_points(
        UpsertPointsBuilder::new(
            "t_resync",
            vec![PointStruct::new(
                900_000u64,
                vec![1.0; DIM],
                qdrant_client::Payload::try_from(orphan).unwrap(),
            )],
        )
        .wait(true),
    )
    .await
    .unwrap();
    q.set_payload(
        SetPayloadPointsBuilder::new(
            "t_resync",
            qdrant_client::Payload::try_from(serde_json::json!({"title": "WRONG"})).unwrap(),
        )
        .points_selector(PointsIdsList {
            ids: vec![7u64.into()],
        })
        .wait(true),
    )
    .await
    .unwrap();
    q.delete_points(
        DeletePointsBuilder::new("t_resync")
            .points(PointsIdsList {
                ids: vec![8u64.into()],
            })
            .wait(true),
    )
    .await
    .unwrap();
    // Updates and deletes hit the same keys while the table is copied again.
    let writer = tokio::spawn(churn(db.url.clone(), 10_000, 60));
    cli_ok(&["resync", "--table", "docs"], &config);
    writer.await.unwrap();
    let copy = wait_for("the resync to finish", WAIT, || async {
        let c = copy_of(&dir);
        (c["reason"] == "resync" && c["status"] == "done").then_some(c)
    })
    .await;
    assert!(copy["chunks"].as_u64().unwrap() > 1, "{copy}");
    if let Some(p) = point("t_resync", 900_000u64).await {
        panic!(
            "the orphan outlived the resync's sweep: its payload {}, the copy {copy}",
            p.payload
        );
    }
    assert_mirrored(&db, "t_resync").await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_where_copies_exactly_the_matching_rows_while_others_stream() {
    use qdrant_client::qdrant::{Filter, SetPayloadPointsBuilder};
    let db = TestDb::new("t_resync_where", LOAD).await;
    let dir = work_dir("t_resync_where");
    let (config, run) = running_over_copied_rows(&db, 2_000, "snapshot_chunk_pages = 2").await;
    // Every point drifts: only a copy (or the stream) can put a row's title back.
    qdrant()
        .set_payload(
            SetPayloadPointsBuilder::new(
                "t_resync_where",
                qdrant_client::Payload::try_from(serde_json::json!({"title": "WRONG"})).unwrap(),
            )
            .points_selector(Filter::default())
            .wait(true),
        )
        .await
        .unwrap();
    // Other rows stream while the matching ones are copied: new rows, updates outside the
    // condition and inside it.
    let writer = {
        let url = db.url.clone();
        tokio::spawn(async move {
            let c = connect(&url).await;
            for r in 0..30 {
                c.batch_execute(&format!(
                    "INSERT INTO docs VALUES ({id}, 'new {r}', 500, array_fill(1::real, ARRAY[{DIM}]));
                     UPDATE docs SET title = 'streamed {r}' WHERE id IN ({out}, {inside});",
                    id = 10_000 + r,
                    out = 500 + r,
                    inside = 1_000 + r,
                ))
                .await
                .unwrap();
            }
        })
    };
    // g % 1000 < 100 among 1..=2000: 1..=99, 1000..=1099, 2000.
    let out = cli_ok(
        &["resync", "--table", "docs", "--where", "n < 100"],
        &config,
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("200 rows match"), "{said}");
    writer.await.unwrap();
    let copy = wait_for("the partial resync to finish", WAIT, || async {
        let c = copy_of(&dir);
        (c["reason"] == "resync" && c["status"] == "done").then_some(c)
    })
    .await;
    assert_eq!(copy["where"], "n < 100", "{copy}");
    assert_eq!(copy["rows"].as_u64(), Some(200), "{copy}");
    assert!(copy["chunks"].as_u64().unwrap() > 1, "{copy}");
    let rows: std::collections::HashMap<String, (String, i32)> = db
        .client
        .query("SELECT id, title, n FROM docs", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0).to_string(), (r.get(1), r.get(2))))
        .collect();
    let streamed = |id: i64| {
        (10_000..10_030).contains(&id) || (500..530).contains(&id) || (1_000..1_030).contains(&id)
    };
    wait_ok(
        "matching and streamed rows equal, others untouched",
        WAIT,
        || async {
            let points = all_points("t_resync_where").await;
            if points.len() != rows.len() {
                return Err(format!("{} points, {} rows", points.len(), rows.len()));
            }
            for (id, p) in &points {
                let (title, n) = rows.get(id).ok_or(format!("extra point {id}"))?;
                let want = if *n < 100 || streamed(id.parse().unwrap()) {
                    title.as_str()
                } else {
                    "WRONG" // not matching, not streamed: the partial copy must not rewrite it
                };
                if p.payload["title"] != want {
                    return Err(format!(
                        "point {id} (n = {n}): title {}, want {want:?}",
                        p.payload["title"]
                    ));
                }
            }
            Ok(())
        },
    )
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_partial_resync_resumes_it_with_its_condition() {
    let db = TestDb::new("t_resync_where_kill", LOAD).await;
    const ROWS: u64 = 40_000;
    existing_rows(&db, ROWS as i64).await;
    let dir = work_dir("t_resync_where_kill");
    let knobs = "snapshot_workers = 1\nsnapshot_chunk_pages = 4";
    let config = config_file(&db, knobs, "");
    let mut child = spawn_binary(&config, &dir.join("run1.log"));
    wait_copy_done(&dir).await;
    wait_count("t_resync_where_kill", ROWS).await;
    // n = id % 1000: half the rows match.
    let out = cli_ok(
        &["resync", "--table", "docs", "--where", "n < 500"],
        &config,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("20000 rows match"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for("a few durable chunks of the partial copy", WAIT, || async {
        let c = copy_of(&dir);
        (c["where"] == "n < 500" && c["done"].as_array().is_some_and(|d| d.len() >= 5))
            .then_some(())
    })
    .await;
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let at_kill = copy_of(&dir);
    assert_eq!(at_kill["status"], "copying", "killed mid-copy: {at_kill}");
    let rows_at_kill = at_kill["rows"].as_u64().unwrap();
    assert!(rows_at_kill > 0 && rows_at_kill < 20_000, "{at_kill}");

    let port = free_port();
    let config = config_file(&db, knobs, &format!("127.0.0.1:{port}"));
    let mut child = spawn_binary(&config, &dir.join("run2.log"));
    let done = wait_copy_done(&dir).await;
    assert_eq!(
        done["where"], "n < 500",
        "the condition survives the restart: {done}"
    );
    assert_resumed(&done, &at_kill, port, 20_000).await;
    // No sweep: every point is still there.
    assert_mirrored(&db, "t_resync_where_kill").await;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_where_refuses_what_is_not_one_boolean_expression() {
    let db = TestDb::new("t_resync_refuse", LOAD).await;
    existing_rows(&db, 10).await;
    let config = config_file(&db, "", "");
    for (condition, says) in [
        ("true; DROP TABLE docs", "`;`"),
        ("n + 1", "boolean"),
        ("n < 3) OR (true", "did not open"),
        ("no_such_column = 1", "no_such_column"),
        // Only what a publication row filter may hold: nothing with an effect or a subquery.
        ("n < 3 AND random() < 2", "not allowed"),
        ("n IN (SELECT 1)", "Only columns, constants"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
            .args([
                "resync", "--table", "docs", "--where", condition, "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{condition}: {stderr}");
        assert!(
            stderr.contains("--where") && stderr.contains(says),
            "{condition}: {stderr}"
        );
    }
    let rows: i64 = db
        .client
        .query_one("SELECT count(*) FROM docs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 10, "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_resync_request_with_a_condition_that_may_run_anything_copies_nothing() {
    let db = TestDb::new("t_resync_forged", LOAD).await;
    let dir = work_dir("t_resync_forged");
    let (_, run) = running_over_copied_rows(&db, 10, "").await;
    // Any role may write into the WAL: a request that did not come from `pg2qdrant resync`,
    // with a condition calling a volatile function, is checked again by the connector.
    db.exec(
        r#"SELECT pg_logical_emit_message(true, 'pg2qdrant',
             '{"kind":"resync","slot":"t_resync_forged","table":"public.docs","where":"n < 5 AND random() < 2"}')"#,
    )
    .await;
    let copy = wait_for("the request refused", WAIT, || async {
        let c = copy_of(&dir);
        (c["reason"] == "resync" && c["status"] == "done").then_some(c)
    })
    .await;
    assert_eq!(copy["rows"].as_u64(), Some(0), "nothing copied: {copy}");
    assert!(copy["chunks"].is_null(), "never planned: {copy}");
    // A condition that would end its parenthesis is refused as soon as the stream reads it.
    db.exec(
        r#"SELECT pg_logical_emit_message(true, 'pg2qdrant',
             '{"kind":"resync","slot":"t_resync_forged","table":"public.docs","where":"1=1) ; DROP TABLE docs; SELECT (1"}')"#,
    )
    .await;
    // The stream goes on.
    db.exec("UPDATE docs SET title = 'after' WHERE id = 1")
        .await;
    wait_for("the stream", WAIT, || async {
        point("t_resync_forged", 1u64)
            .await
            .filter(|p| p.payload["title"] == "after")
    })
    .await;
    assert_eq!(copy_of(&dir), copy, "the second request took nothing");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_never_streams_only_new_changes() {
    let db = TestDb::new("t_snap_never", LOAD).await;
    existing_rows(&db, 100).await;
    let mut cfg = db.config(&table("docs", "t_snap_never", DIM as u64, ""));
    cfg.source.snapshot = SnapshotMode::Never;
    let run = db.start(cfg).await;
    db.exec("INSERT INTO docs VALUES (1000, 'new', 1, array_fill(1::real, ARRAY[8]))")
        .await;
    wait_for("the streamed row", WAIT, || point("t_snap_never", 1000u64)).await;
    // Copies are planned and recorded in the state file at start, before the stream opens
    // (`Coordinator::start`): with no copy recorded once a streamed row is in, none can follow
    // (only a resync would start one), so the count below is final, not a snapshot in time.
    assert!(copy_of(&work_dir("t_snap_never")).is_null());
    assert_eq!(
        count("t_snap_never").await,
        1,
        "existing rows are not copied"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_initial_only_copies_and_exits_then_run_streams_on_without_a_gap() {
    let db = TestDb::new("t_snap_only", LOAD).await;
    existing_rows(&db, 3_000).await;
    let dir = work_dir("t_snap_only");
    let config = config_file(&db, "snapshot = \"initial_only\"", "");
    let mut child = spawn_binary(&config, &dir.join("run1.log"));
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "initial_only exits 0 by itself: {status}");
    assert_eq!(count("t_snap_only").await, 3_000);
    assert!(db.slot_confirmed().await.is_some(), "the slot is kept");
    // Changes made after the backfill are streamed by a later run, not lost, not re-copied.
    db.exec("INSERT INTO docs VALUES (5000, 'after', 1, array_fill(1::real, ARRAY[8])); DELETE FROM docs WHERE id = 1")
        .await;
    let config = config_file(&db, "", "");
    let mut child = spawn_binary(&config, &dir.join("run2.log"));
    assert_mirrored(&db, "t_snap_only").await;
    assert_eq!(copy_of(&dir)["reason"], "initial", "not copied again");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_added_to_the_config_is_copied_on_restart_while_the_other_streams() {
    let db = TestDb::new(
        "t_snap_added",
        &format!("{LOAD} CREATE TABLE notes (id bigint PRIMARY KEY, body text, v real[]);"),
    )
    .await;
    let docs = table("docs", "t_snap_added", DIM as u64, "");
    let run = db.start(db.config(&docs)).await;
    existing_rows(&db, 200).await;
    db.exec("INSERT INTO notes SELECT g, 'note ' || g, '{1,2}' FROM generate_series(1, 2000) g")
        .await;
    wait_count("t_snap_added", 200).await;
    run.stop().await;
    let both = format!("{docs}{}", table("notes", "t_snap_added_notes", 2, ""));
    let run = db.start(db.config(&both)).await;
    db.exec(
        "INSERT INTO docs VALUES (9000, 'streamed meanwhile', 1, array_fill(1::real, ARRAY[8]))",
    )
    .await;
    wait_count("t_snap_added_notes", 2_000).await;
    wait_for("docs streams on", WAIT, || point("t_snap_added", 9000u64)).await;
    // Points are visible before the state file records the chunk: wait for the record.
    let dir = work_dir("t_snap_added");
    let s = wait_for("the notes copy to be recorded done", WAIT, || async {
        let s = state(&dir);
        (s["tables"]["public.notes"]["status"] == "done").then_some(s)
    })
    .await;
    assert_eq!(
        s["tables"]["public.docs"]["reason"], "initial",
        "docs is not copied again: {s}"
    );
    db.exec("UPDATE notes SET body = 'edited' WHERE id = 1")
        .await;
    wait_for("notes streams too", WAIT, || async {
        point("t_snap_added_notes", 1u64)
            .await
            .filter(|p| p.payload["body"] == "edited")
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_slot_is_not_streamed_over_the_gap_every_table_is_copied_again() {
    let db = TestDb::new("t_slot_lost", LOAD).await;
    let dir = work_dir("t_slot_lost");
    let cfg = db.config(&table("docs", "t_slot_lost", DIM as u64, ""));
    let run = db.start(cfg.clone()).await;
    existing_rows(&db, 100).await;
    wait_count("t_slot_lost", 100).await;
    run.stop().await;
    // While the connector is stopped its slot is dropped and rows change: a gap in the stream.
    wait_for("the walsender to release the slot", WAIT, || async {
        let active: bool = db
            .client
            .query_one(
                "SELECT active FROM pg_replication_slots WHERE slot_name = 't_slot_lost'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (!active).then_some(())
    })
    .await;
    db.exec("SELECT pg_drop_replication_slot('t_slot_lost')")
        .await;
    db.exec("DELETE FROM docs WHERE id <= 10; UPDATE docs SET title = 'changed in the gap' WHERE id = 50; INSERT INTO docs VALUES (500, 'gap', 1, array_fill(1::real, ARRAY[8]))").await;
    let mut refuse = cfg.clone();
    refuse.source.snapshot_on_slot_loss = false;
    let err = pg2qdrant::run(refuse, tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("refuses to stream over the gap");
    assert!(err.to_string().contains("t_slot_lost"), "{err}");
    let run = db.start(cfg).await;
    assert_mirrored(&db, "t_slot_lost").await;
    assert_eq!(copy_of(&dir)["reason"], "slot lost");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_dead_letters_rows_it_cannot_map_and_copies_the_rest() {
    let db = TestDb::new("t_snap_bad", LOAD).await;
    existing_rows(&db, 300).await;
    db.exec("UPDATE docs SET v = '{1,2}' WHERE id = 7; UPDATE docs SET v = NULL WHERE id = 8")
        .await;
    let cfg = db.config(&table("docs", "t_snap_bad", DIM as u64, ""));
    let dl = cfg.dead_letter.path.clone();
    let run = db.start(cfg).await;
    wait_copy_done(&work_dir("t_snap_bad")).await;
    assert_eq!(count("t_snap_bad").await, 298);
    let text = std::fs::read_to_string(&dl).expect("dead-letter file");
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by_key(|l| l["key"]["id"].as_str().unwrap_or("").to_owned());
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["table"], "public.docs");
    assert_eq!(lines[0]["key"], serde_json::json!({"id": "7"}));
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("2 dimensions"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["key"], serde_json::json!({"id": "8"}));
    assert!(
        lines[1]["reason"].as_str().unwrap().contains("NULL"),
        "{}",
        lines[1]
    );
    run.stop().await;
}

async fn indexing_threshold(collection: &str) -> Option<u64> {
    qdrant()
        .collection_info(collection)
        .await
        .ok()?
        .result?
        .config?
        .optimizer_config?
        .indexing_threshold
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_copy_into_a_new_collection_defers_indexing_until_it_is_done() {
    let db = TestDb::new("t_bulk", LOAD).await;
    existing_rows(&db, 2_000).await;
    let cfg = db.config(&table("docs", "t_bulk", DIM as u64, ""));
    // Set-up creates the slot and the collection for a bulk load.
    pg2qdrant::setup::prepare(&cfg).await.unwrap();
    let deferred = state(&work_dir("t_bulk"))["bulk"]["t_bulk"].as_u64();
    let restore_to = deferred.expect("the threshold to restore is recorded");
    assert!(restore_to > 0);
    assert_eq!(
        indexing_threshold("t_bulk").await,
        Some(0),
        "indexing deferred"
    );
    // A running transaction holds the copy at its first watermark.
    let blocker = connect(&db.url).await;
    blocker
        .batch_execute("BEGIN; SELECT txid_current();")
        .await
        .unwrap();
    let run = db.start(cfg).await;
    wait_for("the copy to start", WAIT, || async {
        (copy_of(&work_dir("t_bulk"))["status"] == "copying").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(copy_of(&work_dir("t_bulk"))["status"], "copying");
    assert_eq!(indexing_threshold("t_bulk").await, Some(0));
    blocker.batch_execute("COMMIT").await.unwrap();
    wait_copy_done(&work_dir("t_bulk")).await;
    wait_for(
        "indexing restored and the bulk load closed",
        WAIT,
        || async {
            (indexing_threshold("t_bulk").await == Some(restore_to)
                && state(&work_dir("t_bulk"))["bulk"]
                    .as_object()
                    .is_some_and(|b| b.is_empty()))
            .then_some(())
        },
    )
    .await;
    assert_eq!(count("t_bulk").await, 2_000);
    run.stop().await;
}

/// Key changes of rows whose large column is stored out of line and left unchanged, made while
/// the copy reads those rows (inside its replay windows): every point still carries the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_of_toasted_rows_during_the_copy_keep_every_column() {
    let db = TestDb::new(
        "t_snap_toast_rekey",
        "CREATE TABLE docs (id bigint PRIMARY KEY, title text, big text, v real[]);
         ALTER TABLE docs ALTER COLUMN big SET STORAGE EXTERNAL;",
    )
    .await;
    // Random text does not compress: every `big` is stored out of line.
    db.exec(&format!(
        "INSERT INTO docs SELECT k, 'row ' || k, string_agg(md5(k::text || g::text), ''), array_fill(1::real, ARRAY[{DIM}])
         FROM generate_series(1, 3000) k, generate_series(1, 80) g GROUP BY k"
    ))
    .await;
    let mut cfg = db.config(&table("docs", &db.name, DIM as u64, ""));
    cfg.source.snapshot_chunk_pages = 1;
    cfg.source.snapshot_workers = Some(1);
    let run = db.start(cfg).await;
    // Keys move (some twice) while the copy reads the table; `big` is never set.
    let c = connect(&db.url).await;
    let dir = work_dir(&db.name);
    wait_for("the copy started", WAIT, || async {
        (copy_of(&dir)["status"] == "copying").then_some(())
    })
    .await;
    for r in 0..30 {
        c.batch_execute(&format!(
            "UPDATE docs SET id = id + 100000 WHERE id % 30 = {r} AND id < 100000;
             UPDATE docs SET title = title || ' moved' WHERE id % 30 = {r} AND id > 100000 AND id % 7 = 0;
             UPDATE docs SET id = id + 100000 WHERE id % 30 = {r} AND id > 100000 AND id % 11 = 0;"
        ))
        .await
        .unwrap();
        if r == 0 {
            let copying = copy_of(&dir);
            assert_eq!(
                copying["status"], "copying",
                "keys moved during the copy: {copying}"
            );
        }
    }
    let copy = wait_copy_done(&dir).await;
    assert!(copy["chunks"].as_u64().unwrap() > 3, "{copy}");
    let rows = db
        .client
        .query("SELECT id, title, big FROM docs", &[])
        .await
        .unwrap();
    let expected: std::collections::HashMap<String, (String, String)> = rows
        .iter()
        .map(|r| (r.get::<_, i64>(0).to_string(), (r.get(1), r.get(2))))
        .collect();
    wait_ok(
        "every point equal to its row, big column included",
        WAIT,
        || async {
            let points = all_points(&db.name).await;
            if points.len() != expected.len() {
                return Err(format!("{} points, {} rows", points.len(), expected.len()));
            }
            for (id, p) in &points {
                let Some((title, big)) = expected.get(id) else {
                    return Err(format!("extra point {id}"));
                };
                if p.payload["title"].as_str() != Some(title)
                    || p.payload["big"].as_str() != Some(big)
                {
                    return Err(format!(
                        "point {id}: title {:?}, big {} chars",
                        p.payload["title"],
                        p.payload["big"].as_str().map_or(0, str::len)
                    ));
                }
            }
            Ok(())
        },
    )
    .await;
    run.stop().await;
}
