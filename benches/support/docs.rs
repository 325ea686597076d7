//! What the benches share: a fresh database with the `docs` table (id, title, n, 384-float
//! vector), loading it, the points of the sink ceiling, and Qdrant counts.
#![allow(dead_code)]

use qdrant_client::qdrant::{CountPointsBuilder, PointStruct};
use qdrant_client::{Payload, Qdrant};
use tokio_postgres::{Client, NoTls};

pub const DIM: usize = 384;

/// `BENCH_ROWS` (else `rows`) and `BENCH_BATCH` (else 256).
pub fn rows_and_batch(rows: i64) -> (i64, usize) {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    (
        var("BENCH_ROWS").map_or(rows, |v: u64| v as i64),
        var("BENCH_BATCH").map_or(256, |v: u64| v as usize),
    )
}

/// A Qdrant client patient enough for bulk phases.
pub fn qdrant(url: &str) -> Qdrant {
    Qdrant::from_url(url)
        .skip_compatibility_check()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Row `i`'s vector, as `load` writes it.
pub fn vector(i: i64) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((i as usize * 31 + j * 7) % 1000) as f32 / 1000.0)
        .collect()
}

/// A connection to the server's `postgres` database (for slots and databases).
pub async fn admin(pg: &str) -> Client {
    let (admin, conn) = tokio_postgres::connect(&format!("{pg}/postgres"), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
}

/// Drops `slots`, creates database `name` afresh with the empty `docs` table; its URL and a
/// connection.
pub async fn fresh(admin: &Client, pg: &str, name: &str, slots: &[&str]) -> (String, Client) {
    for slot in slots {
        let _ = admin
            .execute("SELECT pg_drop_replication_slot($1)", &[slot])
            .await;
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{pg}/{name}");
    let (db, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    db.batch_execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, n int, v real[])")
        .await
        .unwrap();
    (url, db)
}

/// Inserts rows 1..=`rows` in transactions of 1 000.
pub async fn load(db: &Client, rows: i64) {
    let mut start = 1;
    while start <= rows {
        let end = (start + 999).min(rows);
        db.batch_execute(&format!(
            "INSERT INTO docs SELECT g, 'title ' || g, g % 100, \
             ARRAY(SELECT ((g * 31 + j * 7) % 1000)::real / 1000 FROM generate_series(0, {}) j) FROM generate_series({start}, {end}) g",
            DIM - 1
        ))
        .await
        .unwrap();
        start = end + 1;
    }
}

/// The rows' points as pg2qdrant would write them (payload and position), for the sink ceiling.
pub fn points(rows: i64) -> Vec<PointStruct> {
    (1..=rows)
        .map(|i| {
            let payload = Payload::try_from(
                serde_json::json!({"id": i, "title": format!("title {i}"), "n": i % 100,
                "_pg2qdrant": {"table": "public.docs", "lsn": 1, "seq": i}}),
            )
            .unwrap();
            PointStruct::new(i as u64, vector(i), payload)
        })
        .collect()
}

#[allow(dead_code)]
pub async fn count(q: &Qdrant, c: &str) -> u64 {
    q.count(CountPointsBuilder::new(c).exact(true))
        .await
        .ok()
        .and_then(|r| r.result)
        .map(|r| r.count)
        .unwrap_or(0)
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The release `pg2qdrant` binary beside the running bench (`scripts/bench.sh` builds it).
pub fn binary() -> std::path::PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("pg2qdrant")
}
