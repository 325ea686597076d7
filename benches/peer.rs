//! pg2qdrant next to the tool users would pick instead: Debezium Server with its Qdrant sink
//! (`BENCH_ONLY=peer bash scripts/bench.sh`; `scripts/services.sh` fetches Debezium Server from
//! Maven Central once). Both read the same table, each through its own slot into its own
//! collection on the same Qdrant, one after the other, each as its own process:
//!
//! 1. **Copy**: the table holds `BENCH_ROWS` rows (default 10 000) when the tool starts; timed
//!    from the first point to the last (the start before it is printed apart).
//! 2. **Stream**: the tool stopped (SIGTERM), as many rows again inserted in transactions of
//!    1 000, the tool started again: timed from its first new point to the last, so the figure
//!    is the tool's reading of its slot, not the loader's pace.
//! 3. **Commit → visible** at light load: 200 single-row transactions one after the other, each
//!    waited for in Qdrant (point read by id every 2 ms).
//! 4. **Changes**: a tenth of the copied rows updated (title, n), a tenth deleted, a fiftieth
//!    given a new key; then every row must equal its point (ids, title, n, vector), waited for
//!    up to 120 s.
//!
//! Printed per tool: rows/s and CPU µs per row of the tool (from its first point on, from
//! `/proc/<pid>/stat`) and of Qdrant (the whole phase), for copy and stream; peak RSS (`VmHWM`,
//! the larger of its two runs); commit → visible p50/p99 (commits with `synchronous_commit = on`);
//! and whether every row equals its point; then the ratios.
//!
//! The table is what both accept: a `bigint` key (Debezium's sink takes only `bigint` or `uuid`
//! keys), a pgvector `vector(384)` (its sink reads only pgvector columns, not `real[]`), text and
//! integer payload columns. Collections use `Dot` distance so stored vectors are the source's.
//! Debezium Server 3.6.1.Final runs on the newest JDK 21+ under /usr/lib/jvm, with
//! `poll.interval.ms = 10` (its default 500 would add up to half a second per event at light
//! load), `tombstones.on.delete = false` (else a delete is two calls) and JSON without schemas
//! (the sink reads records, the serialisation is wasted work).

use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/docs.rs"]
mod docs;
#[path = "support/watch.rs"]
mod watch;

use docs::DIM;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/bench.sh"))
}

fn work() -> std::path::PathBuf {
    std::path::PathBuf::from(env("PG2QDRANT_TEST_WORK")).join("bench_peer")
}

/// The tools compared.
#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Pg2qdrant,
    Debezium,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Pg2qdrant => "pg2qdrant",
            Tool::Debezium => "Debezium Server",
        }
    }
    fn collection(self) -> &'static str {
        match self {
            Tool::Pg2qdrant => "peer_pg2qdrant",
            // Its sink names the collection after the topic: <topic.prefix>.<schema>.<table>.
            Tool::Debezium => "peer_dbz.public.docs",
        }
    }
    fn slot(self) -> &'static str {
        match self {
            Tool::Pg2qdrant => "peer_pg2qdrant",
            Tool::Debezium => "peer_dbz",
        }
    }
}

/// What one tool did.
#[derive(Default)]
struct Figures {
    start_s: f64,
    copy: Phase,
    stream: Phase,
    rss_mb: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Why a row does not equal its point (`None`: every row does).
    unequal: Option<String>,
}

impl Default for Phase {
    fn default() -> Self {
        Phase {
            rows_s: 0.0,
            tool_us: 0.0,
            qdrant_us: 0.0,
        }
    }
}

/// A timed phase: rows/s after the first point, CPU µs per row of the tool (after the first
/// point) and of Qdrant (the whole phase).
struct Phase {
    rows_s: f64,
    tool_us: f64,
    qdrant_us: f64,
}

#[tokio::main]
async fn main() {
    let (rows, _) = docs::rows_and_batch(10_000);
    let pg = env("PG2QDRANT_TEST_PG");
    let qhttp = env("PG2QDRANT_TEST_QDRANT_HTTP");
    let qgrpc = env("PG2QDRANT_TEST_QDRANT_GRPC");
    std::fs::create_dir_all(work()).unwrap();
    let admin = docs::admin(&pg).await;
    let slots = [Tool::Pg2qdrant.slot(), Tool::Debezium.slot()];
    let (url, db) = fresh(&admin, &pg, &slots).await;
    let q = docs::qdrant(&qgrpc);
    let mut results = Vec::new();
    // `BENCH_TOOL=pg2qdrant` (or `debezium`) runs one tool alone (to profile it).
    let only = std::env::var("BENCH_TOOL").unwrap_or_default();
    let tools = [Tool::Pg2qdrant, Tool::Debezium]
        .into_iter()
        .filter(|t| only.is_empty() || t.name().to_lowercase().starts_with(&only));
    for tool in tools {
        db.batch_execute("TRUNCATE docs").await.unwrap();
        load(&db, 1, rows).await;
        let _ = q.delete_collection(tool.collection()).await;
        let figures = run(tool, &url, &db, &qhttp, &qgrpc, rows).await;
        drop_slot(&admin, tool.slot()).await;
        // Its index work must not run into the next tool's phases.
        let _ = q.delete_collection(tool.collection()).await;
        results.push((tool, figures));
    }
    print(&results, rows);
}

/// Drops `slot` once its walsender is gone (a stopped tool's may linger a moment).
async fn drop_slot(admin: &Client, slot: &str) {
    for _ in 0..100 {
        let dropped = admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[&slot],
            )
            .await;
        let left = admin
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_or(1, |r| r.len());
        if dropped.is_ok() && left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("slot {slot} is still active 10 s after its tool stopped");
}

/// One tool through every phase.
async fn run(tool: Tool, url: &str, db: &Client, http: &str, grpc: &str, rows: i64) -> Figures {
    let qdrant_pid = std::fs::read_to_string(
        std::path::PathBuf::from(env("PG2QDRANT_TEST_WORK")).join("qdrant/qdrant.pid"),
    )
    .map(|p| p.trim().to_owned())
    .unwrap_or_default();
    let collection = tool.collection();
    let child = start(tool, url, http, grpc, true).await;
    let mut f = Figures::default();
    // 1. Copy.
    let sampling = cpu::start(url, &qdrant_pid, &[]);
    let name = format!("{}: copy", tool.name());
    let copy = watch::until_count(http, collection, 0, rows, &name, cpu_of(&child)).await;
    // Qdrant's share includes the index it builds for these points (pg2qdrant defers it during
    // a first copy; Debezium's collection indexes as it goes).
    until_green(http, collection).await;
    // The wait began as the tool was started.
    f.start_s = copy.first_s;
    f.copy = phase(copy, sampling.stop().await, rows);
    // 2. Stream: the rows written while the tool was stopped, read from its slot once it is back
    // (so the figure is the tool's, not the loader's).
    f.rss_mb = peak_rss_mb(child.id());
    child.stop();
    load(db, rows + 1, 2 * rows).await;
    let sampling = cpu::start(url, &qdrant_pid, &[]);
    let child = start(tool, url, http, grpc, false).await;
    let name = format!("{}: stream", tool.name());
    let stream =
        watch::until_count(http, collection, rows as u64, rows, &name, cpu_of(&child)).await;
    until_green(http, collection).await;
    f.stream = phase(stream, sampling.stop().await, rows);
    // 3. Commit → visible.
    (f.p50_ms, f.p99_ms) = latency(db, http, collection, 10 * rows).await;
    // 4. Changes, then every row equal to its point.
    changes(db, rows).await;
    f.unequal = equal_within(db, grpc, collection, Duration::from_secs(120))
        .await
        .err();
    f.rss_mb = f.rss_mb.max(peak_rss_mb(child.id()));
    child.stop();
    f
}

/// Starts `tool`; `fresh`: from nothing (else it resumes where it stopped).
async fn start(tool: Tool, url: &str, http: &str, grpc: &str, fresh: bool) -> Running {
    Running(match tool {
        Tool::Pg2qdrant => start_pg2qdrant(url, grpc, fresh),
        Tool::Debezium => start_debezium(url, http, grpc, fresh).await,
    })
}

/// Reads the CPU seconds of `child` so far.
fn cpu_of(child: &Running) -> impl Fn() -> f64 + Send + 'static {
    let pid = child.id().to_string();
    move || cpu::seconds_of(&pid)
}

fn phase(t: watch::Timed, cpu: cpu::Totals, rows: i64) -> Phase {
    Phase {
        rows_s: rows as f64 / t.secs,
        tool_us: t.steady_us,
        qdrant_us: cpu.qdrant * 1e6 / rows as f64,
    }
}

/// A database `bench_peer` afresh with the `docs` table both tools accept.
async fn fresh(admin: &Client, pg: &str, slots: &[&str]) -> (String, Client) {
    for slot in slots {
        let _ = admin
            .execute("SELECT pg_drop_replication_slot($1)", &[slot])
            .await;
    }
    for sql in [
        "DROP DATABASE IF EXISTS bench_peer WITH (FORCE)",
        "CREATE DATABASE bench_peer",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }
    let url = format!("{pg}/bench_peer");
    let (db, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    db.batch_execute(&format!(
        "CREATE EXTENSION vector; \
         CREATE TABLE docs (id bigint PRIMARY KEY, title text, n int, v vector({DIM}))"
    ))
    .await
    .unwrap();
    (url, db)
}

/// Inserts rows `first..=last` in transactions of 1 000 (row `i`'s vector: [`docs::vector`]).
async fn load(db: &Client, first: i64, last: i64) {
    let mut start = first;
    while start <= last {
        let end = (start + 999).min(last);
        db.batch_execute(&format!(
            "INSERT INTO docs SELECT g, 'title ' || g, g % 100, \
             ARRAY(SELECT ((g * 31 + j * 7) % 1000)::real / 1000 FROM generate_series(0, {}) j)::vector \
             FROM generate_series({start}, {end}) g",
            DIM - 1
        ))
        .await
        .unwrap();
        start = end + 1;
    }
}

/// `pg2qdrant run` (the release binary beside this bench) on its own slot.
fn start_pg2qdrant(url: &str, grpc: &str, fresh: bool) -> Child {
    let dir = work();
    let config = dir.join("pg2qdrant.toml");
    if fresh {
        let _ = std::fs::remove_file(dir.join("cp_pg2qdrant"));
        let _ = std::fs::remove_file(dir.join("cp_pg2qdrant.snapshot.json"));
    }
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{url}\"\nslot = \"{slot}\"\npublication = \"peer_pg2qdrant\"\nsnapshot = \"initial\"\n\
             [qdrant]\nurl = \"{grpc}\"\n[checkpoint]\npath = \"{cp}\"\n[dead_letter]\npath = \"{dl}\"\n[metrics]\naddr = \"\"\n\
             [[tables]]\ntable = \"docs\"\ncollection = \"{collection}\"\npayload = [\"title\", \"n\"]\n\
             vector = {{ column = \"v\", size = {DIM}, distance = \"Dot\" }}\n",
            slot = Tool::Pg2qdrant.slot(),
            collection = Tool::Pg2qdrant.collection(),
            cp = dir.join("cp_pg2qdrant").display(),
            dl = dir.join("dl_pg2qdrant").display(),
        ),
    )
    .unwrap();
    let bin = docs::binary();
    Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config)
        .env("PG2QDRANT_LOG", "warn")
        .stderr(log(&dir.join("pg2qdrant.log")))
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/bench.sh builds it)", bin.display()))
}

/// Debezium Server with its Qdrant sink, on its own slot and publication, into a collection
/// made here (its sink creates none): an unnamed vector of the table's size.
async fn start_debezium(url: &str, http: &str, grpc: &str, fresh: bool) -> Child {
    let home = env("DEBEZIUM_HOME");
    let java = env("DEBEZIUM_JAVA");
    let dir = work().join("debezium");
    if fresh {
        let _ = std::fs::remove_dir_all(&dir);
        create_collection(http, Tool::Debezium.collection());
    }
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let pg = url::parse(url);
    let grpc_port = grpc.rsplit(':').next().unwrap();
    let http_port = docs::free_port();
    std::fs::write(
        dir.join("config/application.properties"),
        format!(
            "debezium.sink.type=qdrant\n\
             debezium.sink.qdrant.host=127.0.0.1\n\
             debezium.sink.qdrant.port={grpc_port}\n\
             debezium.sink.qdrant.vector.field.names={collection}:v\n\
             debezium.source.connector.class=io.debezium.connector.postgresql.PostgresConnector\n\
             debezium.source.plugin.name=pgoutput\n\
             debezium.source.slot.name={slot}\n\
             debezium.source.slot.drop.on.stop=false\n\
             debezium.source.publication.name=peer_dbz\n\
             debezium.source.publication.autocreate.mode=filtered\n\
             debezium.source.database.hostname={host}\n\
             debezium.source.database.port={port}\n\
             debezium.source.database.user={user}\n\
             debezium.source.database.password=unused\n\
             debezium.source.database.dbname={dbname}\n\
             debezium.source.topic.prefix=peer_dbz\n\
             debezium.source.table.include.list=public.docs\n\
             debezium.source.snapshot.mode=initial\n\
             debezium.source.tombstones.on.delete=false\n\
             debezium.source.decimal.handling.mode=double\n\
             debezium.source.offset.storage.file.filename={offsets}\n\
             debezium.source.offset.flush.interval.ms=0\n\
             debezium.source.poll.interval.ms=10\n\
             debezium.format.key=json\n\
             debezium.format.value=json\n\
             debezium.format.schemas.enable=false\n\
             quarkus.http.port={http_port}\n\
             quarkus.http.host=127.0.0.1\n\
             quarkus.banner.enabled=false\n\
             quarkus.log.level=WARN\n",
            collection = Tool::Debezium.collection(),
            slot = Tool::Debezium.slot(),
            host = pg.host,
            port = pg.port,
            user = pg.user,
            dbname = pg.db,
            offsets = dir.join("data/offsets.dat").display(),
        ),
    )
    .unwrap();
    Command::new(&java)
        .args(["-Xms256m", "-Xmx1g", "-cp"])
        .arg(format!(
            "{home}/debezium-server-dist-{v}-runner.jar:{home}/lib/*",
            v = env("DEBEZIUM_VERSION")
        ))
        .arg("io.debezium.server.Main")
        .current_dir(&dir)
        .stdout(log(&dir.join("debezium.log")))
        .stderr(log(&dir.join("debezium.err")))
        .spawn()
        .unwrap_or_else(|e| panic!("{java}: {e} (scripts/services.sh install_debezium)"))
}

/// `path` opened for appending (a restarted tool's log follows its first run's).
fn log(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// The parts of `postgres://user@host:port/db` Debezium asks for one by one.
mod url {
    pub struct Parts {
        pub user: String,
        pub host: String,
        pub port: String,
        pub db: String,
    }
    pub fn parse(url: &str) -> Parts {
        let rest = url.trim_start_matches("postgres://");
        let (user, rest) = rest.split_once('@').unwrap();
        let (addr, db) = rest.split_once('/').unwrap();
        let (host, port) = addr.split_once(':').unwrap();
        Parts {
            user: user.to_owned(),
            host: host.to_owned(),
            port: port.to_owned(),
            db: db.to_owned(),
        }
    }
}

/// Waits until `collection` is green: its optimisations (index build) done.
async fn until_green(http: &str, collection: &str) {
    let (http, path) = (http.to_owned(), format!("/collections/{collection}"));
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        while !rest(&http, "GET", &path, "").contains("\"status\":\"green\"") {
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "{path} never became green"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
}

/// `collection` with an unnamed `Dot` vector of [`DIM`], through Qdrant's REST API.
fn create_collection(http: &str, collection: &str) {
    let body = format!(r#"{{"vectors":{{"size":{DIM},"distance":"Dot"}}}}"#);
    let reply = rest(http, "PUT", &format!("/collections/{collection}"), &body);
    assert!(reply.contains("\"ok\""), "creating {collection}: {reply}");
}

/// [`watch::rest`], which must answer.
fn rest(http: &str, method: &str, path: &str, body: &str) -> String {
    watch::rest(http, method, path, body)
        .unwrap_or_else(|| panic!("{method} {path}: no answer from {http}"))
}

/// Commit → visible at light load: 200 single-row inserts (ids from `first`), each waited for
/// in Qdrant before the next; p50 and p99 in ms.
async fn latency(db: &Client, http: &str, collection: &str, first: i64) -> (f64, f64) {
    // The test cluster runs with synchronous_commit = off, where the walsender sees a commit
    // only once the WAL writer flushed it (up to 200 ms later): these commits wait for it.
    db.batch_execute("SET synchronous_commit = on")
        .await
        .unwrap();
    let mut ms = Vec::new();
    for i in 0..200 {
        let id = first + i;
        db.batch_execute(&format!(
            "INSERT INTO docs SELECT {id}, 'title {id}', {id} % 100, \
             ARRAY(SELECT (({id} * 31 + j * 7) % 1000)::real / 1000 FROM generate_series(0, {}) j)::vector",
            DIM - 1
        ))
        .await
        .unwrap();
        let t = Instant::now();
        let (http, collection) = (http.to_owned(), collection.to_owned());
        tokio::task::spawn_blocking(move || {
            while !rest(
                &http,
                "GET",
                &format!("/collections/{collection}/points/{id}"),
                "",
            )
            .contains("\"payload\"")
            {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "point {id} never came"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        })
        .await
        .unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.batch_execute("SET synchronous_commit = off")
        .await
        .unwrap();
    ms.sort_by(|a, b| a.total_cmp(b));
    (ms[ms.len() / 2], ms[ms.len() * 99 / 100])
}

/// Updates, deletes and key changes among the copied rows `1..=rows`.
async fn changes(db: &Client, rows: i64) {
    db.batch_execute(&format!(
        "UPDATE docs SET title = title || ' (edited)', n = n + 1 WHERE id <= {rows} AND id % 10 = 0; \
         DELETE FROM docs WHERE id <= {rows} AND id % 10 = 1; \
         UPDATE docs SET id = id + {moved} WHERE id <= {rows} AND id % 50 = 2",
        moved = 100 * rows
    ))
    .await
    .unwrap();
}

/// Waits until every row equals its point (see [`differences`]), at most `limit`.
async fn equal_within(
    db: &Client,
    grpc: &str,
    collection: &str,
    limit: Duration,
) -> Result<(), String> {
    let q = docs::qdrant(grpc);
    let t = Instant::now();
    loop {
        let mut found = differences(db, &q, collection).await;
        if found.is_ok() {
            // Once more a second later: a late stale write would show.
            tokio::time::sleep(Duration::from_secs(1)).await;
            found = differences(db, &q, collection).await;
        }
        if found.is_ok() || t.elapsed() > limit {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every row's point is there with its title, n and vector, and no other point is.
async fn differences(
    db: &Client,
    q: &qdrant_client::Qdrant,
    collection: &str,
) -> Result<(), String> {
    use qdrant_client::qdrant::{
        point_id::PointIdOptions, vector_output, vectors_output, ScrollPointsBuilder,
    };
    use std::collections::HashMap;
    let rows = db
        .query("SELECT id, title, n, v::real[] FROM docs", &[])
        .await
        .unwrap();
    let mut points: HashMap<u64, (serde_json::Value, Vec<f32>)> = HashMap::new();
    let mut offset = None;
    loop {
        let mut b = ScrollPointsBuilder::new(collection)
            .limit(1000)
            .with_payload(true)
            .with_vectors(true);
        if let Some(o) = offset.take() {
            b = b.offset(o);
        }
        let r = q.scroll(b).await.map_err(|e| e.to_string())?;
        for p in r.result {
            let Some(PointIdOptions::Num(id)) = p.id.and_then(|i| i.point_id_options) else {
                return Err("a point without a numeric id".into());
            };
            #[allow(deprecated)]
            let vector = match p.vectors.and_then(|v| v.vectors_options) {
                Some(vectors_output::VectorsOptions::Vector(v)) => match v.vector {
                    Some(vector_output::Vector::Dense(d)) => d.data,
                    _ => v.data,
                },
                _ => Vec::new(),
            };
            let payload = serde_json::Value::from(qdrant_client::Payload::from(p.payload));
            points.insert(id, (payload, vector));
        }
        match r.next_page_offset {
            Some(o) => offset = Some(o),
            None => break,
        }
    }
    let mut wrong = 0;
    for r in &rows {
        let (id, title, n, v): (i64, String, i32, Vec<f32>) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let ok = points
            .remove(&(id as u64))
            .is_some_and(|(payload, vector)| {
                payload["title"] == serde_json::json!(title)
                    && payload["n"] == serde_json::json!(n)
                    && vector.len() == v.len()
                    && vector.iter().zip(&v).all(|(a, b)| (a - b).abs() <= 1e-6)
            });
        wrong += usize::from(!ok);
    }
    match (wrong, points.len()) {
        (0, 0) => Ok(()),
        (w, extra) => Err(format!(
            "{w} of {} rows missing or different, {extra} points of no row",
            rows.len()
        )),
    }
}

/// `java -version`'s first line, for Debezium Server's runtime.
fn java_version() -> String {
    std::env::var("DEBEZIUM_JAVA")
        .ok()
        .and_then(|java| Command::new(java).arg("-version").output().ok())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Peak resident memory of process `pid` (`VmHWM`), MB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// A tool's process: stopped with SIGTERM ([`Running::stop`]), or killed if the bench panics
/// first (so no JVM outlives a failed run).
struct Running(Child);

impl Running {
    fn id(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then the process reaped.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn print(results: &[(Tool, Figures)], rows: i64) {
    println!(
        "\n## pg2qdrant {} and Debezium Server {} (Qdrant sink; {}), {rows} rows copied, {rows} streamed\n",
        env!("CARGO_PKG_VERSION"),
        std::env::var("DEBEZIUM_VERSION").unwrap_or_default(),
        java_version(),
    );
    println!("| tool | start → first point s | copy rows/s | copy CPU µs/row (tool / Qdrant) | stream rows/s | stream CPU µs/row (tool / Qdrant) | peak RSS MB | commit → visible p50 / p99 ms | every row equals its point |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (tool, f) in results {
        println!(
            "| {} | {:.1} | {:.0} | {:.1} / {:.1} | {:.0} | {:.1} / {:.1} | {:.0} | {:.1} / {:.1} | {} |",
            tool.name(),
            f.start_s,
            f.copy.rows_s,
            f.copy.tool_us,
            f.copy.qdrant_us,
            f.stream.rows_s,
            f.stream.tool_us,
            f.stream.qdrant_us,
            f.rss_mb,
            f.p50_ms,
            f.p99_ms,
            match &f.unequal {
                None => "yes".to_owned(),
                Some(e) => format!("no: {e}"),
            }
        );
    }
    let [(_, ours), (_, peer)] = results else {
        return;
    };
    println!("\n| pg2qdrant / Debezium Server | aim | result |\n|---|---|---|");
    let ratios = [
        ("copy rows/s", "≥ 5", ours.copy.rows_s, peer.copy.rows_s),
        (
            "stream rows/s",
            "≥ 5",
            ours.stream.rows_s,
            peer.stream.rows_s,
        ),
        (
            "copy CPU per row",
            "≤ 0.2",
            ours.copy.tool_us,
            peer.copy.tool_us,
        ),
        (
            "stream CPU per row",
            "≤ 0.2",
            ours.stream.tool_us,
            peer.stream.tool_us,
        ),
        ("peak RSS", "≤ 0.2", ours.rss_mb, peer.rss_mb),
        ("commit → visible p50", "—", ours.p50_ms, peer.p50_ms),
    ];
    for (what, aim, a, b) in ratios {
        let r = if b > 0.0 { a / b } else { f64::NAN };
        println!("| {what} | {aim} | {r:.2} |");
    }
}
