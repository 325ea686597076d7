//! Real services for the integration tests: PostgreSQL 15 and Qdrant 1.16.3 started by
//! `scripts/test.sh` (their addresses come in `PG2QDRANT_TEST_*`). Each test gets its own
//! database, slot, publication, collection and files, so tests run in parallel.

#![allow(dead_code)]

use pg2qdrant::config::{parse, Config};
use qdrant_client::qdrant::{
    vector_output, vectors_output, CountPointsBuilder, GetPointsBuilder, PointId,
    ScrollPointsBuilder, VectorOutput,
};
use qdrant_client::{Payload, Qdrant};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

mod kafka;
pub use kafka::PrivateKafka;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through scripts/test.sh, which starts the services"
        )
    })
}

pub fn pg_base() -> String {
    env("PG2QDRANT_TEST_PG")
}
pub fn qdrant_url() -> String {
    env("PG2QDRANT_TEST_QDRANT_GRPC")
}
pub fn work_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env("PG2QDRANT_TEST_WORK"))
        .join("cases")
        .join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `pg2qdrant check` on `text` written as `config.toml` in the test's `dir`: exit code and
/// stdout.
pub fn check_cli(dir: &std::path::Path, text: &str) -> (Option<i32>, String) {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A fresh database named after the test, with `schema` applied; its slot is dropped first.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub client: Client,
}

impl TestDb {
    pub async fn new(name: &str, schema: &str) -> Self {
        let _ = std::fs::remove_dir_all(work_dir(name));
        let admin = connect(&format!("{}/postgres", pg_base())).await;
        let _ = admin
            .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", &[&name])
            .await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = format!("{}/{name}", pg_base());
        let client = connect(&url).await;
        client.batch_execute(schema).await.unwrap();
        let q = qdrant();
        let _ = q.delete_collection(name).await;
        // Collections behind an alias of this name (`<name>_<UTC time>`) and the alias.
        let _ = q.delete_alias(name).await;
        for c in q
            .list_collections()
            .await
            .map(|r| r.collections)
            .unwrap_or_default()
        {
            let ours = c
                .name
                .strip_prefix(&format!("{name}_"))
                .is_some_and(|rest| rest.starts_with(|ch: char| ch.is_ascii_digit()));
            if ours {
                let _ = q.delete_collection(&c.name).await;
            }
        }
        Self {
            name: name.to_owned(),
            url,
            client,
        }
    }

    pub async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// A config for this database (`source.format` from `PG2QDRANT_TEST_FORMAT`, default auto;
    /// `scripts/test.sh` runs the suite in text and in binary): slot, publication and collection are all named after it.
    /// `tables` is the `[[tables]]` TOML.
    pub fn config(&self, tables: &str) -> Config {
        let text = self.config_text(tables, &qdrant_url());
        let cfg = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        cfg.validate().unwrap();
        cfg
    }

    /// The TOML text of [`TestDb::config`], against the Qdrant at `qdrant_grpc`.
    pub fn config_text(&self, tables: &str, qdrant_grpc: &str) -> String {
        let dir = work_dir(&self.name);
        let text = format!(
            r#"
[source]
url = "{url}"
slot = "{name}"
publication = "{name}"
format = "{format}"
status_interval_ms = 200
[qdrant]
url = "{qdrant}"
batch_size = 64
linger_ms = 10
max_backoff_ms = 500
[checkpoint]
path = "{cp}"
[dead_letter]
path = "{dl}"
[metrics]
addr = ""
{tables}
"#,
            url = self.url,
            name = self.name,
            format = value_format(),
            qdrant = qdrant_grpc,
            cp = dir.join("checkpoint").display(),
            dl = dir.join("deadletter.jsonl").display(),
        );
        text
    }

    pub async fn slot_confirmed(&self) -> Option<String> {
        let row = self
            .client
            .query_opt(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.name],
            )
            .await
            .unwrap();
        row.and_then(|r| r.get(0))
    }

    pub async fn current_lsn_u64(&self) -> u64 {
        let row = self
            .client
            .query_one("SELECT (pg_current_wal_lsn() - '0/0')::bigint", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0) as u64
    }

    /// The end of the WAL inserted so far: past every commit made before the call, even under
    /// `synchronous_commit = off` (where `pg_current_wal_lsn`, the position written out, can
    /// still be before a commit the caller just made).
    pub async fn insert_lsn_u64(&self) -> u64 {
        let row = self
            .client
            .query_one("SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0) as u64
    }

    pub async fn confirmed_u64(&self) -> u64 {
        let row = self
            .client
            .query_one("SELECT COALESCE((confirmed_flush_lsn - '0/0')::bigint, 0) FROM pg_replication_slots WHERE slot_name = $1", &[&self.name])
            .await
            .unwrap();
        row.get::<_, i64>(0) as u64
    }
}

/// The connector running in-process.
pub struct Running {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), pg2qdrant::Error>>,
}

impl TestDb {
    /// Starts the connector in-process and waits until its slot is streaming, so every change
    /// made after this returns is captured.
    /// Until the connector started with [`Self::config_text`]'s checkpoint has copied every
    /// table and restored the indexing it deferred for the first copy (the copy state file
    /// says so). Tests whose checks read the collection exactly start their load after it:
    /// twice, in full runs, a write was lost around that restore (suspected: Qdrant 1.16.3
    /// updating the collection's optimizer settings while writes land; not shown).
    pub async fn wait_first_copy_settled(&self) {
        let path = work_dir(&self.name).join("checkpoint.snapshot.json");
        wait_for(
            "the first copy done and its indexing restored",
            WAIT,
            || async {
                let state: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
                let copies = state["tables"].as_object()?;
                let done = !copies.is_empty() && copies.values().all(|c| c["status"] == "done");
                let restored = state["bulk"].as_object().is_none_or(|b| b.is_empty());
                (done && restored).then_some(())
            },
        )
        .await
    }

    pub async fn start(&self, cfg: Config) -> Running {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("PG2QDRANT_LOG")
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_test_writer()
            .try_init();
        let token = CancellationToken::new();
        let run = pg2qdrant::run(cfg, token.clone());
        let handle = tokio::spawn(async move {
            let r = run.await;
            if let Err(e) = &r {
                eprintln!("connector stopped with an error: {e}");
            }
            r
        });
        self.wait_streaming().await;
        Running { token, handle }
    }

    /// Waits for a walsender that holds the slot. `pg_replication_slots.active` alone is not
    /// enough: while `pg_create_logical_replication_slot` waits for running transactions, the
    /// slot already shows `active` (held by the creating backend) and a row committed then is
    /// before the slot's consistent point, so it is never streamed.
    pub async fn wait_streaming(&self) {
        wait_for("a walsender streaming the slot", WAIT, || async {
            let row = self
                .client
                .query_opt(
                    "SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid \
                     WHERE s.slot_name = $1",
                    &[&self.name],
                )
                .await
                .unwrap();
            row.map(|_| ())
        })
        .await;
    }
}

impl Running {
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    pub async fn stop(self) {
        self.token.cancel();
        let r = tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("connector stops in time");
        r.expect("connector task").expect("connector stops cleanly");
    }
}

pub fn qdrant() -> Qdrant {
    Qdrant::from_url(&qdrant_url())
        .skip_compatibility_check()
        .build()
        .unwrap()
}

/// Polls `f` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Like [`wait_for`], but the panic carries the last reason `f` gave.
pub async fn wait_ok<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(why) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {why}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub const WAIT: Duration = Duration::from_secs(60);

pub async fn count(collection: &str) -> u64 {
    count_at(&qdrant(), collection).await
}

/// Points in `collection` of Qdrant `q` (0 while it does not answer).
pub async fn count_at(q: &Qdrant, collection: &str) -> u64 {
    match q
        .count(CountPointsBuilder::new(collection).exact(true))
        .await
    {
        Ok(r) => r.result.map(|r| r.count).unwrap_or(0),
        Err(_) => 0,
    }
}

pub async fn wait_count(collection: &str, n: u64) {
    wait_count_at(&qdrant(), collection, n).await
}

/// Until `collection` of Qdrant `q` holds `n` points.
pub async fn wait_count_at(q: &Qdrant, collection: &str, n: u64) {
    wait_for(&format!("{n} points in {collection}"), WAIT, || async {
        (count_at(q, collection).await == n).then_some(())
    })
    .await;
}

/// A stored point: payload as JSON and its (unnamed) vector.
#[derive(Debug, Clone)]
pub struct Stored {
    pub payload: Value,
    pub vector: Option<Vec<f32>>,
}

pub async fn point(collection: &str, id: impl Into<PointId>) -> Option<Stored> {
    let r = qdrant()
        .get_points(
            GetPointsBuilder::new(collection, vec![id.into()])
                .with_payload(true)
                .with_vectors(true),
        )
        .await
        .ok()?;
    r.result.into_iter().next().map(|p| Stored {
        payload: Value::from(Payload::from(p.payload)),
        vector: p.vectors.and_then(|v| match v.vectors_options {
            Some(vectors_output::VectorsOptions::Vector(v)) => dense(v),
            // The unnamed vector beside sparse ones.
            Some(vectors_output::VectorsOptions::Vectors(mut n)) => {
                n.vectors.remove("").and_then(dense)
            }
            _ => None,
        }),
    })
}

/// A point's named sparse vector as (indices, values) in index order; None when the point or
/// the vector is missing.
pub async fn sparse_vector(
    collection: &str,
    id: impl Into<PointId>,
    name: &str,
) -> Option<(Vec<u32>, Vec<f32>)> {
    let r = qdrant()
        .get_points(GetPointsBuilder::new(collection, vec![id.into()]).with_vectors(true))
        .await
        .ok()?;
    let p = r.result.into_iter().next()?;
    let Some(vectors_output::VectorsOptions::Vectors(named)) = p.vectors?.vectors_options else {
        panic!("point {:?} has no named vectors", p.id);
    };
    let out = named.vectors.get(name)?.clone();
    #[allow(deprecated)]
    let (indices, values) = match out.vector {
        Some(vector_output::Vector::Sparse(s)) => (s.indices, s.values),
        // Older servers answer in the deprecated fields.
        None if out.indices.is_some() => (out.indices.unwrap().data, out.data),
        other => panic!("{name} of point {:?} is not sparse: {other:?}", p.id),
    };
    let mut pairs: Vec<(u32, f32)> = indices.into_iter().zip(values).collect();
    pairs.sort_by_key(|(i, _)| *i);
    Some(pairs.into_iter().unzip())
}

/// Overwrites a point's named sparse vector behind the connector's back (drift for `verify`).
pub async fn set_sparse_vector(
    collection: &str,
    id: u64,
    name: &str,
    indices: Vec<u32>,
    values: Vec<f32>,
) {
    let vectors = std::collections::HashMap::from([(
        name.to_owned(),
        qdrant_client::qdrant::Vector::new_sparse(indices, values),
    )]);
    qdrant()
        .update_vectors(
            qdrant_client::qdrant::UpdatePointVectorsBuilder::new(
                collection,
                vec![qdrant_client::qdrant::PointVectors {
                    id: Some(PointId::from(id)),
                    vectors: Some(vectors.into()),
                }],
            )
            .wait(true),
        )
        .await
        .unwrap();
}

/// Every point of a collection: (id as string, stored).
pub async fn all_points(collection: &str) -> Vec<(String, Stored)> {
    all_points_at(&qdrant(), collection).await
}

pub async fn all_points_at(q: &Qdrant, collection: &str) -> Vec<(String, Stored)> {
    all_points_read(q, collection, None).await
}

/// [`all_points_at`] read with `consistency` (Qdrant's default, one replica, when `None`).
pub async fn all_points_read(
    q: &Qdrant,
    collection: &str,
    consistency: Option<qdrant_client::qdrant::ReadConsistencyType>,
) -> Vec<(String, Stored)> {
    try_all_points_read(q, collection, consistency)
        .await
        .unwrap()
}

/// [`all_points_read`], Qdrant's refusal returned (a cluster's replicas not all active yet).
pub async fn try_all_points_read(
    q: &Qdrant,
    collection: &str,
    consistency: Option<qdrant_client::qdrant::ReadConsistencyType>,
) -> Result<Vec<(String, Stored)>, qdrant_client::QdrantError> {
    let mut out = Vec::new();
    let mut offset: Option<PointId> = None;
    loop {
        let mut b = ScrollPointsBuilder::new(collection)
            .limit(1000)
            .with_payload(true)
            .with_vectors(true);
        if let Some(c) = consistency {
            b = b.read_consistency(qdrant_client::qdrant::read_consistency::Value::Type(
                c as i32,
            ));
        }
        if let Some(o) = offset.take() {
            b = b.offset(o);
        }
        let r = q.scroll(b).await?;
        for p in r.result {
            let id = match p.id.and_then(|i| i.point_id_options) {
                Some(qdrant_client::qdrant::point_id::PointIdOptions::Num(n)) => n.to_string(),
                Some(qdrant_client::qdrant::point_id::PointIdOptions::Uuid(u)) => u,
                None => String::new(),
            };
            let vector = p.vectors.and_then(|v| match v.vectors_options {
                Some(vectors_output::VectorsOptions::Vector(v)) => dense(v),
                Some(vectors_output::VectorsOptions::Vectors(mut n)) => {
                    n.vectors.remove("").and_then(dense)
                }
                _ => None,
            });
            out.push((
                id,
                Stored {
                    payload: Value::from(Payload::from(p.payload)),
                    vector,
                },
            ));
        }
        match r.next_page_offset {
            Some(o) => offset = Some(o),
            None => return Ok(out),
        }
    }
}

/// A `[[tables]]` entry with an unnamed Dot vector of `size` from column `v`.
pub fn table(name: &str, collection: &str, size: u64, extra: &str) -> String {
    format!(
        "[[tables]]\ntable = \"public.{name}\"\ncollection = \"{collection}\"\nvector = {{ column = \"v\", size = {size}, distance = \"Dot\" }}\n{extra}\n"
    )
}

/// A loopback port for a private server to listen on. Taken below the kernel's ephemeral range
/// (32768–60999 by default), where `bind(0)` and every outgoing connection of the tests take
/// theirs: a port handed out that way and freed again may be taken by a client socket or by
/// another `bind(0)` before the server (a JVM) gets to bind it, and a test that then talks to
/// someone else's server waits for nothing. Each process walks its own stretch of 20000–32767
/// (by pid), never hands a port out twice, and skips ports already bound.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 64) * (SPAN / 64),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000-32767");
}

/// A private Qdrant server (for tests that stop and restart it, or need cluster mode).
pub struct PrivateQdrant {
    pub dir: PathBuf,
    pub http: u16,
    pub grpc: u16,
    /// Cluster mode's peer-to-peer port (a one-node cluster: custom sharding needs it).
    p2p: Option<u16>,
    /// The peer-to-peer port of the cluster's first node, for the others (`--bootstrap`).
    bootstrap: Option<u16>,
    /// The API key the server demands from its next (re)start on (`None`: none).
    pub api_key: Option<String>,
    child: Option<std::process::Child>,
}

impl PrivateQdrant {
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, None).await
    }

    /// One that demands the API key `key` (see [`PrivateQdrant::api_key`] to change it).
    pub async fn start_keyed(name: &str, key: &str) -> Self {
        let mut q = Self::start(name).await;
        q.kill();
        q.api_key = Some(key.to_owned());
        q.restart().await;
        q
    }

    /// A one-node cluster (distributed mode enabled), which custom sharding needs.
    pub async fn start_cluster(name: &str) -> Self {
        Self::start_with(name, Some(free_port())).await
    }

    async fn start_with(name: &str, p2p: Option<u16>) -> Self {
        let mut q = Self::node(work_dir(name).join("qdrant"), p2p, None);
        q.restart().await;
        q
    }

    fn node(dir: PathBuf, p2p: Option<u16>, bootstrap: Option<u16>) -> Self {
        Self {
            dir,
            http: free_port(),
            grpc: free_port(),
            p2p,
            bootstrap,
            api_key: None,
            child: None,
        }
    }

    /// A cluster of `n` nodes (the first bootstraps the others), each with its own storage
    /// under the test's work dir; node 0 is the one clients are given.
    pub async fn start_nodes(name: &str, n: usize) -> Vec<Self> {
        let first_p2p = free_port();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let dir = work_dir(name).join(format!("qdrant-{i}"));
            let mut q = if i == 0 {
                Self::node(dir, Some(first_p2p), None)
            } else {
                Self::node(dir, Some(free_port()), Some(first_p2p))
            };
            q.restart().await;
            nodes.push(q);
        }
        nodes
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    pub fn client(&self) -> Qdrant {
        Qdrant::from_url(&self.url())
            .api_key(self.api_key.clone())
            .skip_compatibility_check()
            .build()
            .unwrap()
    }

    pub async fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        std::fs::create_dir_all(&self.dir).unwrap();
        let mut command = std::process::Command::new(env("PG2QDRANT_TEST_QDRANT_BIN"));
        if let Some(first) = self.bootstrap {
            command.args(["--bootstrap", &format!("http://127.0.0.1:{first}")]);
        }
        if let Some(p2p) = self.p2p {
            command
                .args(["--uri", &format!("http://127.0.0.1:{p2p}")])
                .env("QDRANT__CLUSTER__ENABLED", "true")
                .env("QDRANT__CLUSTER__P2P__PORT", p2p.to_string());
        }
        if let Some(key) = &self.api_key {
            command.env("QDRANT__SERVICE__API_KEY", key);
        }
        let child = command
            .arg("--disable-telemetry")
            .current_dir(&self.dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", self.dir.join("storage"))
            .env(
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                self.dir.join("snapshots"),
            )
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start qdrant");
        self.child = Some(child);
        let client = self.client();
        wait_for("private qdrant healthy", WAIT, || async {
            client.health_check().await.ok().map(|_| ())
        })
        .await;
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateQdrant {
    fn drop(&mut self) {
        self.kill();
    }
}

#[allow(deprecated)]
pub fn dense(v: VectorOutput) -> Option<Vec<f32>> {
    match v.vector {
        Some(vector_output::Vector::Dense(d)) => Some(d.data),
        Some(_) => None,
        None => Some(v.data),
    }
}

/// The value format every test config asks for: `PG2QDRANT_TEST_FORMAT` (auto, text, binary).
pub fn value_format() -> String {
    std::env::var("PG2QDRANT_TEST_FORMAT").unwrap_or_else(|_| "auto".to_owned())
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Runs the pg2qdrant binary with `args` and `--config config`; panics with its stderr unless
/// it exits 0.
pub fn cli_ok(args: &[&str], config: &std::path::Path) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg2qdrant {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A pg2qdrant process (so it can be signalled or SIGKILLed); killed when dropped, so a failing
/// test leaves none behind.
pub struct Process(pub std::process::Child);

impl Process {
    /// `pg2qdrant <command> --config <config>`, its stdout and stderr in `log` next to the config.
    pub fn start(command: &str, config: &std::path::Path, log: &str) -> Self {
        let log = std::fs::File::create(config.with_file_name(log)).unwrap();
        Process(
            std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
                .args([command, "--config"])
                .arg(config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    /// Sends SIGTERM, as an orchestrator does.
    /// Its exit status, once it exits within `within` (panics naming `what` otherwise).
    pub async fn exit_within(&mut self, within: Duration, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn terminate(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `path` from `addr` (host:port): the status code and the body, or None when nothing
/// answers. HTTP/1.0, so the body is never chunked.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Waits until `/readyz` on `addr` answers `code` (`what` names the wait); returns the body.
pub async fn wait_readyz(addr: &str, code: u16, what: &str) -> String {
    wait_for(what, WAIT, || async {
        let (got, body) = http_get(addr, "/readyz").await?;
        (got == code).then_some(body)
    })
    .await
}

/// The sum of the samples in Prometheus text `metrics` whose series starts with `series`
/// (a name, or a name and the first labels: `name{table="public.docs"`); None when none.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    let mut found = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let exact = name == series || name.starts_with(&format!("{series}{{"));
        let labelled = series.contains('{') && name.starts_with(series);
        if exact || labelled {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(f64::NAN);
        }
    }
    found
}

/// A PostgreSQL cluster of one test's own (initdb, logical WAL, loopback): for what the shared
/// cluster cannot give, such as a WAL that only this test writes. Stopped when dropped.
pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    pub async fn start(name: &str) -> Self {
        let dir = work_dir(name).join("pg");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pg = Self {
            dir,
            port: free_port(),
        };
        // PostgreSQL refuses to run as root: as the postgres user then, owning its directory.
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let run = |bin: &str, args: &[&str]| {
            let exe = format!("{}/{bin}", env("PG2QDRANT_TEST_PG_BIN"));
            let mut c = if root {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--", &exe]);
                c
            } else {
                std::process::Command::new(exe)
            };
            let out = c.args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{bin}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if root {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&pg.dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let data = pg.dir.join("data");
        let data = data.to_str().unwrap();
        run(
            "initdb",
            &["-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c wal_level=logical -c fsync=off",
            pg.port,
            pg.dir.display()
        );
        let log = pg.dir.join("postgres.log");
        run(
            "pg_ctl",
            &[
                "-D",
                data,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
                "-o",
                &opts,
            ],
        );
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let exe = format!("{}/pg_ctl", env("PG2QDRANT_TEST_PG_BIN"));
        let data = self.dir.join("data");
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", &exe, "-D"])
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output()
            .or_else(|_| {
                std::process::Command::new(&exe)
                    .arg("-D")
                    .arg(&data)
                    .args(["-m", "immediate", "stop"])
                    .output()
            });
    }
}
