//! End-to-end throughput against its two ceilings (run with `scripts/bench.sh`; prints figures,
//! asserts nothing about time).
//!
//! 1. Four slots are created at the same LSN; N rows (384-float vectors, small payload) are
//!    loaded in transactions of 1 000 rows, so the WAL to replay is identical for all runs.
//! 2. Source ceiling: `pg_recvlogical` reads that WAL (pgoutput, same publication) to /dev/null,
//!    with values in text and in binary (`binary 'true'`).
//! 3. End to end: pg2qdrant starts on another slot, `source.format` text, then binary; time
//!    until every point is in Qdrant.
//! 4. Sink ceiling: bare `wait=true` upserts of the same points, same batch size, one at a time.
//! 5. Copy: the same N existing rows copied by the snapshot (`initial_only`, default workers
//!    and chunk size) into a fresh collection, text then binary, until every row is there.

use pg2qdrant::config::parse;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use docs::{count, vector, DIM};

/// The allocator the shipped binary uses (src/main.rs): pg2qdrant runs inside this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/bench.sh"))
}

async fn sampler(url: &str, qdrant_pid: &str, apps: &'static [&'static str]) -> cpu::Sampler {
    cpu::start(url, qdrant_pid, apps)
}

/// Waits until Qdrant finished optimizing (indexing) every collection, so one phase's background
/// work does not slow the next phase down.
async fn settle(q: &Qdrant) {
    for _ in 0..1200 {
        let mut busy = false;
        for c in q
            .list_collections()
            .await
            .map(|r| r.collections)
            .unwrap_or_default()
        {
            let status = q
                .collection_info(&c.name)
                .await
                .ok()
                .and_then(|r| r.result)
                .map(|r| r.status);
            busy |= status != Some(qdrant_client::qdrant::CollectionStatus::Green as i32);
        }
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (rows, batch) = docs::rows_and_batch(100_000);
    let pg = env("PG2QDRANT_TEST_PG");
    let qurl = env("PG2QDRANT_TEST_QDRANT_GRPC");
    let work = std::path::PathBuf::from(env("PG2QDRANT_TEST_WORK")).join("bench");
    let qdrant_pid = std::fs::read_to_string(
        std::path::PathBuf::from(env("PG2QDRANT_TEST_WORK")).join("qdrant/qdrant.pid"),
    )
    .map(|p| p.trim().to_owned())
    .unwrap_or_default();
    std::fs::create_dir_all(&work).unwrap();
    let q = docs::qdrant(&qurl);
    if std::env::var("BENCH_ONLY").as_deref() == Ok("latency") {
        println!("{}", latency(&q, &pg, &qurl, &work).await);
        return;
    }
    for c in [
        "bench_e2e",
        "bench_e2e_text",
        "bench_e2e_shards",
        "bench_sink",
    ] {
        let _ = q.delete_collection(c).await;
    }

    let admin = docs::admin(&pg).await;
    let (url, db) = docs::fresh(
        &admin,
        &pg,
        "bench",
        &[
            "bench",
            "bench_text",
            "bench_shards",
            "bench_src",
            "bench_src_bin",
        ],
    )
    .await;

    let cfg_text = format!(
        "[source]\nurl = \"{url}\"\nslot = \"bench\"\npublication = \"bench\"\nsnapshot = \"never\"\nformat = \"binary\"\n\
         [qdrant]\nurl = \"{qurl}\"\nbatch_size = {batch}\n\
         [checkpoint]\npath = \"{cp}\"\n[dead_letter]\npath = \"{dl}\"\n[metrics]\naddr = \"\"\n\
         [[tables]]\ntable = \"docs\"\ncollection = \"bench_e2e\"\nvector = {{ column = \"v\", size = {DIM}, distance = \"Dot\" }}\n",
        cp = work.join("cp").display(),
        dl = work.join("dl").display(),
    );
    // The same in text: its own slot, collection and checkpoint.
    let text_cfg_text = cfg_text
        .replace("slot = \"bench\"", "slot = \"bench_text\"")
        .replace("format = \"binary\"", "format = \"text\"")
        .replace(
            "collection = \"bench_e2e\"",
            "collection = \"bench_e2e_text\"",
        )
        .replace(
            &work.join("cp").display().to_string(),
            &work.join("cp_text").display().to_string(),
        );
    // Binary again into a collection of two shards (Qdrant serialises each shard's writes; the
    // writer keeps `qdrant.parallel` = 2 batches in flight).
    let shards_cfg_text = cfg_text
        .replace("slot = \"bench\"", "slot = \"bench_shards\"")
        .replace(
            "collection = \"bench_e2e\"",
            "collection = \"bench_e2e_shards\"\ncollection_config = { shard_number = 2 }",
        )
        .replace(
            &work.join("cp").display().to_string(),
            &work.join("cp_shards").display().to_string(),
        );
    let _ = std::fs::remove_file(work.join("cp"));
    let _ = std::fs::remove_file(work.join("cp_text"));
    let _ = std::fs::remove_file(work.join("cp_shards"));
    let cfg = parse(&cfg_text).unwrap();
    cfg.validate().unwrap();
    let text_cfg = parse(&text_cfg_text).unwrap();
    let shards_cfg = parse(&shards_cfg_text).unwrap();
    shards_cfg.validate().unwrap();
    pg2qdrant::setup::prepare(&cfg).await.unwrap();
    pg2qdrant::setup::prepare(&text_cfg).await.unwrap();
    pg2qdrant::setup::prepare(&shards_cfg).await.unwrap();
    db.batch_execute(
        "SELECT pg_create_logical_replication_slot('bench_src', 'pgoutput'); \
         SELECT pg_create_logical_replication_slot('bench_src_bin', 'pgoutput')",
    )
    .await
    .unwrap();

    eprintln!("loading {rows} rows ...");
    let t = Instant::now();
    docs::load(&db, rows).await;
    let end_lsn: String = db
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "loaded in {:.1}s, WAL end {end_lsn}",
        t.elapsed().as_secs_f64()
    );

    // Source ceilings.
    let (source_secs, source_cpu) =
        source_ceiling(&url, &qdrant_pid, "bench_src", &end_lsn, false).await;
    let source = rows as f64 / source_secs;
    let (source_bin_secs, source_bin_cpu) =
        source_ceiling(&url, &qdrant_pid, "bench_src_bin", &end_lsn, true).await;
    let source_bin = rows as f64 / source_bin_secs;

    // End to end, text then binary.
    let (e2e_text_secs, e2e_text_cpu, e2e_text_steady) =
        end_to_end(&q, text_cfg, "bench_e2e_text", rows, &url, &qdrant_pid).await;
    let e2e_text = rows as f64 / e2e_text_secs;
    let (e2e_secs, e2e_cpu, e2e_steady) =
        end_to_end(&q, cfg, "bench_e2e", rows, &url, &qdrant_pid).await;
    let e2e = rows as f64 / e2e_secs;
    let (shards_secs, shards_cpu, _) =
        end_to_end(&q, shards_cfg, "bench_e2e_shards", rows, &url, &qdrant_pid).await;
    let shards = rows as f64 / shards_secs;

    // Sink ceiling.
    settle(&q).await;
    q.create_collection(
        CreateCollectionBuilder::new("bench_sink")
            .vectors_config(VectorParamsBuilder::new(DIM as u64, Distance::Dot)),
    )
    .await
    .unwrap();
    let points = docs::points(rows);
    let sampling = sampler(&url, &qdrant_pid, STREAM).await;
    let t = Instant::now();
    for chunk in points.chunks(batch) {
        q.upsert_points(UpsertPointsBuilder::new("bench_sink", chunk.to_vec()).wait(true))
            .await
            .unwrap();
    }
    let sink_secs = t.elapsed().as_secs_f64();
    let sink = rows as f64 / sink_secs;
    let sink_cpu = sampling.stop().await;

    // The same writes through pg2qdrant's own sink (position fences on), to tell the cost of the
    // fence from the cost of the rest of the pipeline.
    let _ = q.delete_collection("bench_sink").await;
    q.create_collection(
        CreateCollectionBuilder::new("bench_sink")
            .vectors_config(VectorParamsBuilder::new(DIM as u64, Distance::Dot)),
    )
    .await
    .unwrap();
    let table: std::sync::Arc<str> = "public.docs".into();
    let coll: std::sync::Arc<str> = "bench_sink".into();
    let ops: Vec<pg2qdrant::event::Op> = (1..=rows)
        .map(|i| {
            let position = pg2qdrant::lsn::Position {
                commit_lsn: 1,
                seq: i as u64,
            };
            let mut payload = serde_json::Map::new();
            payload.insert("id".into(), serde_json::json!(i));
            payload.insert("title".into(), serde_json::json!(format!("title {i}")));
            payload.insert("n".into(), serde_json::json!(i % 100));
            pg2qdrant::event::Op::Upsert {
                collection: coll.clone(),
                copied: false,
                doc: pg2qdrant::event::Document {
                    key: pg2qdrant::event::PointKey::Num(i as u64),
                    payload,
                    meta: Some(pg2qdrant::mapping::meta(&table, 0)),
                    vectors: Some(pg2qdrant::event::Vectors::Default(vector(i))),
                    embed: Vec::new(),
                    anchor: None,
                    position,
                },
            }
        })
        .collect();
    // Fenced as `run` fences (the sole writer of stream positions); appliers' fencing is the
    // Kafka bench's apply phase.
    let fenced_sink = pg2qdrant::sink::qdrant::QdrantSink::new(q.clone())
        .unwrap()
        .sole_writer();
    settle(&q).await;
    let sampling = sampler(&url, &qdrant_pid, STREAM).await;
    let t = Instant::now();
    for chunk in ops.chunks(batch) {
        pg2qdrant::sink::Sink::write(&fenced_sink, chunk)
            .await
            .unwrap();
    }
    let fenced_secs = t.elapsed().as_secs_f64();
    let fenced = rows as f64 / fenced_secs;
    let fenced_cpu = sampling.stop().await;

    // Copy: the existing rows through the snapshot, into a fresh collection; text, then binary.
    let copy_config = |format: &str| {
        let text = cfg_text
            .replace("slot = \"bench\"", "slot = \"bench_copy\"")
            .replace("snapshot = \"never\"", "snapshot = \"initial_only\"")
            .replace("format = \"binary\"", &format!("format = \"{format}\""))
            .replace("collection = \"bench_e2e\"", "collection = \"bench_copy\"")
            .replace(
                &work.join("cp").display().to_string(),
                &work.join("copy_cp").display().to_string(),
            );
        let cfg = parse(&text).unwrap();
        cfg.validate().unwrap();
        cfg
    };
    let workers = copy_config("text").source.snapshot_workers();
    let (copy_text_secs, copy_text_cpu, _) = copy_phase(
        &q,
        &admin,
        copy_config("text"),
        &work,
        rows,
        &url,
        &qdrant_pid,
    )
    .await;
    let copy_text = rows as f64 / copy_text_secs;
    let (copy_secs, copy_cpu, indexed_secs) = copy_phase(
        &q,
        &admin,
        copy_config("binary"),
        &work,
        rows,
        &url,
        &qdrant_pid,
    )
    .await;
    let copy = rows as f64 / copy_secs;

    let latency = latency(&q, &pg, &qurl, &work).await;

    // Decode + mapping alone (CPU only): the same rows as pgoutput Insert messages through the
    // assembler, batches dropped; values in text, then in binary.
    let decode = |binary: bool| {
        use pg2qdrant::source::pgoutput::{encode, Cell, Message, Relation, RelationColumn};
        let cfg = parse(&cfg_text).unwrap();
        let m = pg2qdrant::mapping::TableMapping::new(&cfg.tables[0], vec!["id".into()]).unwrap();
        let mappings = std::sync::Arc::new([(m.table.clone(), m)].into_iter().collect());
        let mut a = pg2qdrant::pipeline::assemble::Assembler::new(
            mappings,
            batch,
            Duration::from_millis(20),
        );
        let col = |name: &str, oid: u32, flags: u8| RelationColumn {
            flags,
            name: name.into(),
            type_oid: oid,
            type_modifier: -1,
        };
        let rel = encode(&Message::Relation(Relation {
            id: 1,
            namespace: "public".into(),
            name: "docs".into(),
            replica_identity: b'd',
            columns: vec![
                col("id", 20, 1),
                col("title", 25, 0),
                col("n", 23, 0),
                col("v", 1021, 0),
            ],
        }));
        let msgs: Vec<bytes::Bytes> = (1..=rows)
            .map(|i| {
                let new = if binary {
                    let mut arr = Vec::with_capacity(20 + 8 * DIM);
                    for x in [1i32, 0, 700, DIM as i32, 1] {
                        arr.extend(x.to_be_bytes());
                    }
                    for f in vector(i) {
                        arr.extend(4i32.to_be_bytes());
                        arr.extend(f.to_be_bytes());
                    }
                    vec![
                        Cell::Binary(i.to_be_bytes().to_vec().into()),
                        Cell::Binary(format!("title {i}").into_bytes().into()),
                        Cell::Binary(((i % 100) as i32).to_be_bytes().to_vec().into()),
                        Cell::Binary(arr.into()),
                    ]
                } else {
                    let v: Vec<String> = vector(i).iter().map(|f| f.to_string()).collect();
                    vec![
                        Cell::Text(i.to_string()),
                        Cell::Text(format!("title {i}")),
                        Cell::Text((i % 100).to_string()),
                        Cell::Text(format!("{{{}}}", v.join(","))),
                    ]
                };
                encode(&Message::Insert {
                    relation_id: 1,
                    new,
                })
                .into()
            })
            .collect();
        let mut dead = Vec::new();
        let t = Instant::now();
        a.begin(pg2qdrant::lsn::Lsn(1), 0);
        a.data(&rel.into(), &mut dead).unwrap();
        for m in &msgs {
            a.data(m, &mut dead).unwrap();
        }
        assert!(dead.is_empty());
        rows as f64 / t.elapsed().as_secs_f64()
    };
    let decode_text = decode(false);
    let decode = decode(true);

    println!("per phase (CPU from /proc; postgres = the walsender and copy backends):");
    for (name, cpu, secs) in [
        ("source ceiling, text", &source_cpu, source_secs),
        ("source ceiling, binary", &source_bin_cpu, source_bin_secs),
        ("end to end, text", &e2e_text_cpu, e2e_text_secs),
        ("end to end, binary", &e2e_cpu, e2e_secs),
        ("end to end, binary, 2 shards", &shards_cpu, shards_secs),
        ("sink ceiling (bare upserts)", &sink_cpu, sink_secs),
        ("pg2qdrant's fenced sink alone", &fenced_cpu, fenced_secs),
        ("copy, text", &copy_text_cpu, copy_text_secs),
        ("copy, binary", &copy_cpu, copy_secs),
    ] {
        println!("{}", cpu.line(name, rows, secs));
    }
    for (name, s) in [
        ("end to end, text, from 1st point", &e2e_text_steady),
        ("end to end, binary, from 1st point", &e2e_steady),
    ] {
        println!("{}", s.cpu.line(name, s.rows, s.secs));
    }
    println!(
        "pg2qdrant CPU / walsender CPU, end to end: text {:.2}, binary {:.2}; from the first point on: text {:.2}, binary {:.2} (issue 35 aims ≤ 0.6)",
        e2e_text_cpu.ours / e2e_text_cpu.postgres.max(1e-9),
        e2e_cpu.ours / e2e_cpu.postgres.max(1e-9),
        e2e_text_steady.ratio(),
        e2e_steady.ratio(),
    );
    println!(
        "start → first point, end to end: text {:.2} s, binary {:.2} s",
        e2e_text_steady.start_secs, e2e_steady.start_secs
    );
    println!("{latency}");
    let lower = source_bin.min(sink);
    println!("rows: {rows}, vector: {DIM} x f32, batch size: {batch}");
    println!("source ceiling (pg_recvlogical → /dev/null): text {source:>8.0}  binary {source_bin:>8.0} rows/s");
    println!("sink ceiling (bare batched upserts):         {sink:>8.0} rows/s");
    println!("pg2qdrant's fenced sink alone:               {fenced:>8.0} rows/s");
    println!("decode + mapping alone (one core, CPU):      text {decode_text:>8.0}  binary {decode:>8.0} rows/s");
    println!("end to end (pg2qdrant):                      text {e2e_text:>8.0}  binary {e2e:>8.0} rows/s");
    println!(
        "end to end, binary, 2 shards, parallel 2:    {shards:>8.0} rows/s ({:.2} of one shard)",
        shards / e2e
    );
    println!("copy of existing rows ({workers} workers):         text {copy_text:>8.0}  binary {copy:>8.0} rows/s");
    println!(
        "copy / sink ceiling:         text {:.2}, binary {:.2} (aim ≥ 0.9)",
        copy_text / sink,
        copy / sink
    );
    println!("copy (binary), then indexing restored and the collection green: {indexed_secs:.1} s in all");
    println!(
        "end to end / sink ceiling:   text {:.2}, binary {:.2} (aim ≥ 0.9)",
        e2e_text / sink,
        e2e / sink
    );
    println!(
        "end to end / sink ceiling, from the first point on: text {:.2}, binary {:.2}",
        e2e_text_steady.rate() / sink,
        e2e_steady.rate() / sink
    );
    println!(
        "end to end / lower ceiling:  binary {:.2} (lower of binary source and sink)",
        e2e / lower
    );
    for slot in ["bench_src", "bench_src_bin"] {
        let _ = admin
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await;
    }
}

const STREAM: &[&str] = &["pg2qdrant", "pg_recvlogical"];
const COPY: &[&str] = &["pg2qdrant", "pg2qdrant copy"];

/// `pg_recvlogical` reads the slot to `end_lsn` into /dev/null: seconds and CPU.
async fn source_ceiling(
    url: &str,
    qdrant_pid: &str,
    slot: &'static str,
    end_lsn: &str,
    binary: bool,
) -> (f64, cpu::Totals) {
    let sampling = sampler(url, qdrant_pid, STREAM).await;
    let t = Instant::now();
    let recv_url = url.to_owned();
    let recv_end = end_lsn.to_owned();
    let status = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new("pg_recvlogical");
        cmd.args([
            "-d",
            &recv_url,
            "--slot",
            slot,
            "--start",
            "--endpos",
            &recv_end,
            "-f",
            "/dev/null",
        ])
        .args([
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=bench",
            "--no-loop",
        ]);
        if binary {
            cmd.args(["-o", "binary=true"]);
        }
        cmd.status().expect("pg_recvlogical")
    })
    .await
    .unwrap();
    assert!(status.success(), "pg_recvlogical failed");
    let secs = t.elapsed().as_secs_f64();
    (secs, sampling.stop().await)
}

/// pg2qdrant streams the loaded rows into `collection`: seconds until all are there, and CPU.
async fn end_to_end(
    q: &Qdrant,
    cfg: pg2qdrant::config::Config,
    collection: &str,
    rows: i64,
    url: &str,
    qdrant_pid: &str,
) -> (f64, cpu::Totals, Steady) {
    settle(q).await;
    let token = CancellationToken::new();
    let sampling = sampler(url, qdrant_pid, STREAM).await;
    let t = Instant::now();
    let run = tokio::spawn(pg2qdrant::run(cfg, token.clone()));
    // The same phase from its first point on (as the sink ceiling and the peer bench count):
    // start-up (connections, catalog, collection set-up) is not a cost per row.
    let mut at_first = 0;
    while at_first == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        at_first = count(q, collection).await;
    }
    let start_secs = t.elapsed().as_secs_f64();
    let steady_sampling = sampler(url, qdrant_pid, STREAM).await;
    let from_first = Instant::now();
    while count(q, collection).await < rows as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let steady_secs = from_first.elapsed().as_secs_f64();
    let steady_cpu = steady_sampling.stop().await;
    let cpu = sampling.stop().await;
    token.cancel();
    run.await.unwrap().unwrap();
    let steady = Steady {
        rows: rows - at_first as i64,
        secs: steady_secs,
        cpu: steady_cpu,
        start_secs,
    };
    (secs, cpu, steady)
}

/// An end-to-end phase from its first point on: the rows written after it, in how long, at
/// what CPU; and how long start-up took until that first point.
struct Steady {
    rows: i64,
    secs: f64,
    cpu: cpu::Totals,
    start_secs: f64,
}

impl Steady {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.secs
    }
    fn ratio(&self) -> f64 {
        self.cpu.ours / self.cpu.postgres.max(1e-9)
    }
}

/// A snapshot copy of the rows into a fresh collection: seconds until every row is there, CPU,
/// and seconds until the process exited (indexing restored, collection green).
async fn copy_phase(
    q: &Qdrant,
    admin: &tokio_postgres::Client,
    cfg: pg2qdrant::config::Config,
    work: &std::path::Path,
    rows: i64,
    url: &str,
    qdrant_pid: &str,
) -> (f64, cpu::Totals, f64) {
    let _ = q.delete_collection("bench_copy").await;
    let _ = admin
        .execute("SELECT pg_drop_replication_slot('bench_copy')", &[])
        .await;
    let _ = std::fs::remove_file(work.join("copy_cp"));
    let _ = std::fs::remove_file(work.join("copy_cp.snapshot.json"));
    settle(q).await;
    // Timed until every row is in Qdrant (as end to end); the process then restores indexing
    // (bulk load) and exits once the collection is green: that part is reported apart.
    let sampling = sampler(url, qdrant_pid, COPY).await;
    let t = Instant::now();
    let run = tokio::spawn(pg2qdrant::run(cfg, CancellationToken::new()));
    while count(q, "bench_copy").await < rows as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = sampling.stop().await;
    run.await.unwrap().unwrap();
    let indexed = t.elapsed().as_secs_f64();
    assert_eq!(
        count(q, "bench_copy").await,
        rows as u64,
        "the copy wrote every row"
    );
    let _ = admin
        .execute("SELECT pg_drop_replication_slot('bench_copy')", &[])
        .await;
    (secs, cpu, indexed)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn p50_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// Commit → visible in Qdrant, in milliseconds (p50, p99), at light load (15 single-row
/// transactions/s) and at about 1 000/s (every 25th row sampled), next to one Qdrant write
/// (a single-point upsert with wait=true).
async fn latency(q: &Qdrant, pg: &str, qurl: &str, work: &std::path::Path) -> String {
    use qdrant_client::qdrant::GetPointsBuilder;
    let (admin, conn) = tokio_postgres::connect(&format!("{pg}/postgres"), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let _ = admin
        .execute("SELECT pg_drop_replication_slot('bench_lat')", &[])
        .await;
    admin
        .batch_execute("DROP DATABASE IF EXISTS bench_lat WITH (FORCE)")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE bench_lat")
        .await
        .unwrap();
    let url = format!("{pg}/bench_lat");
    let (db, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    // The test cluster runs with synchronous_commit = off, where the walsender sees a commit
    // only after the WAL writer's next flush (up to 200 ms): measure as production commits.
    db.batch_execute("SET synchronous_commit = on; CREATE TABLE msgs (id bigint PRIMARY KEY, body text, v real[])").await.unwrap();
    let _ = q.delete_collection("bench_lat").await;
    let _ = std::fs::remove_file(work.join("lat_cp"));
    let cfg = parse(&format!(
        "[source]\nurl = \"{url}\"\nslot = \"bench_lat\"\npublication = \"bench_lat\"\nsnapshot = \"never\"\n\
         [qdrant]\nurl = \"{qurl}\"\n[checkpoint]\npath = \"{}\"\n[dead_letter]\npath = \"{}\"\n[metrics]\naddr = \"\"\n\
         [[tables]]\ntable = \"msgs\"\ncollection = \"bench_lat\"\nvector = {{ column = \"v\", size = {DIM}, distance = \"Cosine\" }}\n",
        work.join("lat_cp").display(),
        work.join("lat_dl").display()
    ))
    .unwrap();
    let token = CancellationToken::new();
    let run = tokio::spawn(pg2qdrant::run(cfg, token.clone()));
    // Streaming once a walsender holds the slot.
    loop {
        let n: i64 = db.query_one("SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'bench_lat'", &[]).await.unwrap().get(0);
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let vec_sql = format!("array_fill(0.5::real, ARRAY[{DIM}])");
    let visible = |id: u64| {
        let q = q.clone();
        async move {
            let t = Instant::now();
            loop {
                let found = q
                    .get_points(GetPointsBuilder::new("bench_lat", vec![id.into()]))
                    .await
                    .map(|r| !r.result.is_empty())
                    .unwrap_or(false);
                if found {
                    return t.elapsed().as_secs_f64() * 1e3;
                }
                // Poll again at once: a timer sleep would add up to 2 ms of granularity (tokio
                // timers tick in whole milliseconds); one lookup is ~0.2 ms.
                tokio::task::yield_now().await;
            }
        }
    };
    // Light load: one row at a time, 15 per second.
    let mut light = Vec::new();
    for id in 1..=90u64 {
        let started = Instant::now();
        db.batch_execute(&format!("INSERT INTO msgs VALUES ({id}, 'm', {vec_sql})"))
            .await
            .unwrap();
        light.push(visible(id).await);
        tokio::time::sleep(Duration::from_millis(66).saturating_sub(started.elapsed())).await;
    }
    // About 1 000 transactions/s for 3 s; every 25th row is watched.
    let mut watchers = Vec::new();
    let start = Instant::now();
    for i in 0..3_000u64 {
        let id = 10_000 + i;
        db.batch_execute(&format!("INSERT INTO msgs VALUES ({id}, 'm', {vec_sql})"))
            .await
            .unwrap();
        if i % 25 == 0 {
            watchers.push(tokio::spawn(visible(id)));
        }
        let due = start + Duration::from_micros(1_000 * (i + 1));
        tokio::time::sleep_until(due.into()).await;
    }
    let rate = 3_000.0 / start.elapsed().as_secs_f64();
    let mut heavy = Vec::new();
    for w in watchers {
        heavy.push(w.await.unwrap());
    }
    token.cancel();
    run.await.unwrap().unwrap();
    // One Qdrant write, paced like the light load (an idle server answers slower than a busy
    // one: its threads wake up first).
    let mut write = Vec::new();
    for i in 0..90u64 {
        tokio::time::sleep(Duration::from_millis(66)).await;
        let t = Instant::now();
        q.upsert_points(
            UpsertPointsBuilder::new(
                "bench_lat",
                vec![PointStruct::new(
                    1_000_000 + i,
                    vector(i as i64),
                    Payload::new(),
                )],
            )
            .wait(true),
        )
        .await
        .unwrap();
        write.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (l50, l99) = p50_p99(light);
    let (h50, h99) = p50_p99(heavy);
    let (w50, w99) = p50_p99(write);
    format!(
        "commit → visible, light load (15 tx/s): p50 {l50:.1} ms, p99 {l99:.1} ms\n\
         commit → visible, {rate:.0} tx/s:          p50 {h50:.1} ms, p99 {h99:.1} ms\n\
         one Qdrant write (1 point, wait=true, 15/s): p50 {w50:.1} ms, p99 {w99:.1} ms\n\
         light-load p99 / write p99: {:.2} (issue 6 aims ≤ 2)",
        l99 / w99
    )
}

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/docs.rs"]
mod docs;
