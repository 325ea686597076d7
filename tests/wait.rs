//! Read-your-writes: `GET /wait?lsn=…` and `pg2qdrant wait` against a running connector, with
//! the app's side as docs/operations.md gives it (commit, then `SELECT pg_current_wal_insert_lsn()`;
//! the test cluster runs with `synchronous_commit = off`, where `pg_current_wal_lsn()` can be
//! short of the commit just made).

use crate::harness::*;
use qdrant_client::qdrant::GetPointsBuilder;
use qdrant_client::Qdrant;
use std::path::PathBuf;
use std::sync::Arc;

const MSGS: &str =
    "CREATE TABLE msgs (id bigint PRIMARY KEY, v real[]); CREATE TABLE other (x int);";

/// The connector's config file against the Qdrant at `qdrant_grpc`, serving its endpoint on a
/// free port with `max_waiters`: the path and the endpoint's address.
fn config(db: &TestDb, qdrant_grpc: &str, max_waiters: usize) -> (PathBuf, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let text = db
        .config_text(&table("msgs", &db.name, 3, ""), qdrant_grpc)
        .replace(
            "addr = \"\"",
            &format!("addr = \"{addr}\"\nmax_waiters = {max_waiters}"),
        );
    let path = work_dir(&db.name).join("config.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    (path, addr)
}

/// Inserts message `id` in its own transaction, then reads the position as an app would.
async fn insert(db: &TestDb, id: i64) -> String {
    db.exec(&format!("INSERT INTO msgs VALUES ({id}, '{{1,0,{id}}}')"))
        .await;
    wal_lsn(db).await
}

async fn wal_lsn(db: &TestDb) -> String {
    db.client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0)
}

fn lsn_u64(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// `/wait` for `lsn`: the status and the durable LSN answered.
async fn wait(addr: &str, lsn: &str, timeout_ms: u64) -> (u16, String) {
    let (status, body) = http_get(addr, &format!("/wait?lsn={lsn}&timeout_ms={timeout_ms}"))
        .await
        .expect("the endpoint answers");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    let durable = json["durable_lsn"].as_str().unwrap_or_default().to_owned();
    (status, if durable.is_empty() { body } else { durable })
}

/// How many of the points `ids` the collection holds.
async fn held(q: &Qdrant, collection: &str, ids: impl Iterator<Item = u64>) -> usize {
    let ids: Vec<_> = ids.map(Into::into).collect();
    q.get_points(GetPointsBuilder::new(collection, ids))
        .await
        .unwrap()
        .result
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_answers_200_waiters_each_only_once_its_row_and_every_earlier_row_are_in_qdrant() {
    let db = TestDb::new("t_wait_many", MSGS).await;
    let mut q = PrivateQdrant::start("t_wait_many").await;
    let (config, addr) = config(&db, &q.url(), 1024);
    let _run = Process::start("run", &config, "run.log");
    wait_for("ready", WAIT, || async {
        (http_get(&addr, "/readyz").await?.0 == 200).then_some(())
    })
    .await;
    // Qdrant down: nothing can become durable, so every waiter below has to wait.
    q.kill();
    let mut lsns = Vec::new();
    for id in 1..=200 {
        lsns.push(insert(&db, id).await);
    }
    let client = Arc::new(q.client());
    let waiters: Vec<_> = lsns
        .iter()
        .enumerate()
        .map(|(i, lsn)| {
            let (addr, lsn, client, collection) =
                (addr.clone(), lsn.clone(), client.clone(), db.name.clone());
            tokio::spawn(async move {
                let (status, durable) = wait(&addr, &lsn, 120_000).await;
                // Right after the answer: this row and every row committed before it.
                let n = i as u64 + 1;
                let found = held(&client, &collection, 1..=n).await;
                (status, durable, lsn, n as usize, found)
            })
        })
        .collect();
    let scrape = || async { http_get(&addr, "/metrics").await.map(|r| r.1) };
    wait_for("200 waiters waiting", WAIT, || async {
        (metric(&scrape().await?, "pg2qdrant_waiters") == Some(200.0)).then_some(())
    })
    .await;
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "none answered while Qdrant is down"
    );

    q.restart().await;
    for w in waiters {
        let (status, durable, lsn, n, found) = w.await.unwrap();
        assert_eq!(status, 200, "waiter for {lsn}: {durable}");
        assert!(
            lsn_u64(&durable) >= lsn_u64(&lsn),
            "answered at {durable} < {lsn}"
        );
        assert_eq!(
            found, n,
            "waiter for {lsn} (row {n}) answered before its rows were in Qdrant"
        );
    }
    let m = scrape().await.unwrap();
    assert_eq!(metric(&m, "pg2qdrant_waiters"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_with_504_while_qdrant_is_down_and_is_bounded_and_the_process_stays_healthy()
{
    let db = TestDb::new("t_wait_timeout", MSGS).await;
    let mut q = PrivateQdrant::start("t_wait_timeout").await;
    let (config, addr) = config(&db, &q.url(), 2);
    let _run = Process::start("run", &config, "run.log");
    wait_for("ready", WAIT, || async {
        (http_get(&addr, "/readyz").await?.0 == 200).then_some(())
    })
    .await;
    let cli = |lsn: &str, timeout: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
            .args(["wait", "--lsn", lsn, "--timeout", timeout, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    // A position past anything the connector writes (only an unwatched table changed): reached
    // through the server's keepalives, nothing written for it.
    db.exec("INSERT INTO other VALUES (1)").await;
    let idle = wal_lsn(&db).await;
    assert_eq!(wait(&addr, &idle, 30_000).await.0, 200);
    let first = insert(&db, 1).await;
    assert_eq!(cli(&first, "30s").0, Some(0));
    assert_eq!(held(&q.client(), &db.name, 1..=1).await, 1);
    let (status, body) = http_get(&addr, "/wait?lsn=nope").await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("lsn: invalid LSN"), "{body}");

    q.kill();
    let second = insert(&db, 2).await;
    let (status, durable) = wait(&addr, &second, 1_000).await;
    assert_eq!(status, 504, "{durable}");
    assert!(
        lsn_u64(&durable) < lsn_u64(&second),
        "{durable} vs {second}"
    );
    let (code, said) = cli(&second, "1s");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("timed out"), "{said}");
    // Two wait (max_waiters = 2); a third is turned away at once.
    let hold = |lsn: String| {
        let addr = addr.clone();
        tokio::spawn(async move { wait(&addr, &lsn, 120_000).await.0 })
    };
    let held_waiters = [hold(second.clone()), hold(second.clone())];
    wait_for("two waiters", WAIT, || async {
        let m = http_get(&addr, "/metrics").await?.1;
        (metric(&m, "pg2qdrant_waiters") == Some(2.0)).then_some(())
    })
    .await;
    let (status, body) = http_get(&addr, &format!("/wait?lsn={second}"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("metrics.max_waiters"), "{body}");
    assert_eq!(http_get(&addr, "/healthz").await.map(|r| r.0), Some(200));

    q.restart().await;
    for w in held_waiters {
        assert_eq!(w.await.unwrap(), 200);
    }
    assert_eq!(held(&q.client(), &db.name, 2..=2).await, 1);
}
