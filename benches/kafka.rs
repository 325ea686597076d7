//! Kafka fan-out against its ceilings (run with `BENCH_ONLY=kafka scripts/bench.sh`; prints
//! figures, asserts nothing about time).
//!
//! 1. N rows (384-float vectors, small payload) are loaded after the slots were created.
//! 2. Publish: pg2qdrant (`qdrant.direct = false`) streams them to a 3-partition topic; timed
//!    from the slot's first acknowledgement until it acknowledged the load (every event
//!    delivered); the start before is reported apart.
//! 3. Producer ceiling: a bare rdkafka producer (same settings: idempotent, acks=all, lz4),
//!    warmed up by one delivery, sends the same keys and bytes to another topic, every
//!    delivery awaited.
//! 4. Consumer ceiling: a bare consumer reads the topic through, doing nothing (librdkafka's and
//!    the broker's own cost per event). Apply: one applier from the topic into a fresh
//!    collection, until every point is there.
//! 5. Sink ceiling: bare `wait=true` upserts of the same points, same batch size. Direct path:
//!    `run` without `[kafka]` from a second slot over the same rows (the mapping and writes an
//!    applier does, from the slot instead of a topic).
//! 6. One applier, then two in one group, each its own `pg2qdrant apply` process (the release
//!    binary; their CPU from `/proc`, start and group join included in the phase's): on two
//!    cores the figure shows what a second member costs and gives, not a second machine.
//!
//! CPU: this process (pg2qdrant), the walsender, and the server of the phase (the broker for
//! 2–3, Qdrant for 4–6), from `/proc`, over the whole phase (start and group join included).
//! The phases that end on a point count (apply, direct) also print pg2qdrant's CPU per row
//! after the first point: summed over this process's threads in nanoseconds. The bench's own
//! watching (the CPU sampler, the poller of the point count on its own HTTP connection) runs on
//! threads of its own, left out of pg2qdrant's CPU in every phase (polling through the shared
//! gRPC client every 50 ms added ~4 µs per row to a 2 s phase). Compare applier and direct path
//! by the figure after the first point: at 5 000 rows the start and the group join (~60 ms of
//! CPU) add ~12 µs per row to the whole phase's.
//!
//! 5 000 rows by default (`BENCH_ROWS`); the figures are taken at 50 000 (a topic of
//! about 85 MB), on Apache Kafka 4.1 (one KRaft node, `scripts/kafka/broker.sh`).

use futures_util::StreamExt;
use pg2qdrant::config::parse;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, Distance, UpsertPointsBuilder, VectorParamsBuilder,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/docs.rs"]
mod docs;
#[path = "support/qdrant_cluster.rs"]
mod qdrant_cluster;
#[path = "support/watch.rs"]
mod watch;

use watch::{until_every_point, until_every_point_by};

use docs::DIM;
const STREAM: &[&str] = &["pg2qdrant"];

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/bench.sh"))
}

fn pid_of(file: &str) -> String {
    std::fs::read_to_string(std::path::PathBuf::from(env("PG2QDRANT_TEST_WORK")).join(file))
        .map(|p| p.trim().to_owned())
        .unwrap_or_default()
}

async fn sampler(url: &str, server_pid: &str) -> cpu::Sampler {
    cpu::start(url, server_pid, STREAM)
}

/// The events of the loaded rows, encoded by pg2qdrant's encoder (key, bytes): what the
/// publish phase produced, built here so the ceiling does not read the broker first.
async fn events(
    db: &tokio_postgres::Client,
    cfg: &pg2qdrant::config::Config,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    use pg2qdrant::event::{Change, ChangeKind, Column, Datum, Row, TableName};
    let mapping = pg2qdrant::mapping::TableMapping::new(&cfg.tables[0], vec!["id".into()]).unwrap();
    let columns: std::sync::Arc<[Column]> = [("id", 20), ("title", 25), ("n", 23), ("v", 1021)]
        .iter()
        .map(|(name, oid)| Column {
            name: (*name).into(),
            type_oid: *oid,
            type_modifier: -1,
            is_key: *name == "id",
        })
        .collect::<Vec<_>>()
        .into();
    let mut out = Vec::new();
    for m in db
        .simple_query("SELECT id, title, n, v FROM docs ORDER BY id")
        .await
        .unwrap()
    {
        let tokio_postgres::SimpleQueryMessage::Row(r) = m else {
            continue;
        };
        let values = (0..4)
            .map(|i| Datum::Text(r.get(i).unwrap().to_owned()))
            .collect();
        let change = Change {
            table: TableName::parse("docs"),
            position: pg2qdrant::lsn::Position {
                commit_lsn: 1,
                seq: out.len() as u64,
            },
            commit_time_micros: 0,
            kind: ChangeKind::Insert {
                new: Row {
                    columns: columns.clone(),
                    values,
                },
            },
        };
        let e = pg2qdrant::kafka::event::encode(&mapping, &change, false);
        out.push((
            r.get(0).unwrap().as_bytes().to_vec(),
            prost::Message::encode_to_vec(&e),
        ));
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // pg2qdrant's warnings (scripts/bench.sh sets PG2QDRANT_LOG=warn) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PG2QDRANT_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let (rows, batch) = docs::rows_and_batch(5_000);
    let pg = env("PG2QDRANT_TEST_PG");
    let qurl = env("PG2QDRANT_TEST_QDRANT_GRPC");
    let qhttp = env("PG2QDRANT_TEST_QDRANT_HTTP");
    let brokers = env("PG2QDRANT_TEST_KAFKA");
    let work = std::path::PathBuf::from(env("PG2QDRANT_TEST_WORK")).join("bench_kafka");
    std::fs::create_dir_all(&work).unwrap();
    let qdrant_pid = pid_of("qdrant/qdrant.pid");
    let broker_pid = pid_of("kafka/kafka.pid");
    let q = docs::qdrant(&qurl);
    let run_id = std::process::id();
    let prefix = format!("benchk{run_id}");
    let admin = docs::admin(&pg).await;
    let (url, db) = docs::fresh(
        &admin,
        &pg,
        "bench_kafka",
        &["bench_kafka", "bench_kafka_direct", "bench_kafka_cluster"],
    )
    .await;
    // Batches in flight (`qdrant.parallel`: Qdrant writes and Kafka deliveries alike).
    let parallel: usize = std::env::var("BENCH_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(pg2qdrant::config::DEFAULT_PARALLEL);
    // `slot` "bench_kafka" publishes (and its config serves the appliers); "bench_kafka_direct"
    // is the direct path's, with no `[kafka]`.
    let text_of = |slot: &str, collection: &str, group: &str, direct: bool| {
        let kafka = if slot == "bench_kafka" {
            format!("[kafka]\nbrokers = \"{brokers}\"\ntopic_template = \"{prefix}.{{schema}}.{{table}}\"\npartitions = 3\ngroup_id = \"{prefix}{group}\"\n")
        } else {
            String::new()
        };
        let text = format!(
            "[source]\nurl = \"{url}\"\nslot = \"{slot}\"\npublication = \"bench_kafka\"\nsnapshot = \"never\"\nformat = \"binary\"\nstatus_interval_ms = 20\n\
             [qdrant]\nurl = \"{qurl}\"\nbatch_size = {batch}\ndirect = {direct}\nparallel = {parallel}\n\
             [checkpoint]\npath = \"{cp}\"\n[dead_letter]\npath = \"{dl}\"\n[metrics]\naddr = \"\"\n{kafka}\
             [[tables]]\ntable = \"docs\"\ncollection = \"{collection}\"\nvector = {{ column = \"v\", size = {DIM}, distance = \"Dot\" }}\n",
            cp = work.join(format!("cp_{slot}")).display(),
            dl = work.join(format!("dl_{slot}")).display(),
        );
        text
    };
    let config_of = |slot: &str, collection: &str, group: &str, direct: bool| {
        let cfg = parse(&text_of(slot, collection, group, direct)).unwrap();
        cfg.validate().unwrap();
        cfg
    };
    let config = |collection: &str, group: &str, direct: bool| {
        config_of("bench_kafka", collection, group, direct)
    };
    let direct_cfg = config_of("bench_kafka_direct", "bench_kafka_direct", "", true);
    // 7. The direct path into a 3-node Qdrant cluster on this machine: 6 shards of 2 replicas,
    // a write counted once one replica has it (docs/kafka.md's advice). Its own slot, like 5b.
    let cluster = qdrant_cluster::Cluster::start(&env("PG2QDRANT_TEST_QDRANT_BIN"), &work, 3);
    let mut cluster_cfg = config_of("bench_kafka_cluster", "bench_kafka_cluster", "", true);
    cluster_cfg.qdrant.url = cluster.grpc.clone();
    for t in &mut cluster_cfg.tables {
        t.collection_config.shard_number = Some(6);
        t.collection_config.replication_factor = Some(2);
        t.collection_config.write_consistency_factor = Some(1);
    }
    for slot in ["bench_kafka", "bench_kafka_direct", "bench_kafka_cluster"] {
        let _ = std::fs::remove_file(work.join(format!("cp_{slot}")));
    }
    let publish_cfg = config("bench_kafka_unused", "", false);
    pg2qdrant::setup::prepare(&publish_cfg).await.unwrap();
    pg2qdrant::setup::prepare(&direct_cfg).await.unwrap();
    pg2qdrant::setup::prepare(&cluster_cfg).await.unwrap();

    eprintln!("loading {rows} rows ...");
    docs::load(&db, rows).await;
    let end_lsn: i64 = db
        .query_one("SELECT (pg_current_wal_lsn() - '0/0')::bigint", &[])
        .await
        .unwrap()
        .get(0);

    // 2. Publish. Timed from the slot's first acknowledgement on, as apply is from its first
    // point: the connector's start (set-up, topic metadata, the replication connection) is
    // reported apart. The rate is of WAL acknowledged, extrapolated to the whole load; the
    // slot hears of acknowledgements every `status_interval_ms` (20 here, 1 000 by default,
    // which alone would add up to a second to a phase of two).
    let confirmed = || async {
        let lsn: i64 = db
            .query_one("SELECT COALESCE((confirmed_flush_lsn - '0/0')::bigint, 0) FROM pg_replication_slots WHERE slot_name = 'bench_kafka'", &[])
            .await
            .unwrap()
            .get(0);
        lsn
    };
    let start_lsn = confirmed().await;
    let sampling = sampler(&url, &broker_pid).await;
    let t = Instant::now();
    let token = CancellationToken::new();
    let run = tokio::spawn(pg2qdrant::run(publish_cfg, token.clone()));
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let lsn = confirmed().await;
        if lsn > start_lsn && first.is_none() {
            first = Some((Instant::now(), lsn));
        }
        if lsn >= end_lsn {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (t0, lsn0) = first.expect("the slot moved");
    let publish_secs =
        t0.elapsed().as_secs_f64() * (end_lsn - start_lsn) as f64 / (end_lsn - lsn0).max(1) as f64;
    eprintln!(
        "publish: first acknowledgement after {:.1} s, then {:.1} s",
        (t0 - t).as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    let publish_cpu = sampling.stop().await;
    token.cancel();
    run.await.unwrap().unwrap();
    let messages = events(&db, &config("bench_kafka_unused", "", false)).await;
    let bytes: usize = messages.iter().map(|(_, p)| p.len()).sum();

    // 3. Producer ceiling: the same keys and bytes, same producer settings.
    let ceiling_topic = format!("{prefix}.ceiling");
    let kcfg = publish_cfg_kafka(&brokers);
    pg2qdrant::kafka::client::ensure_topics(&kcfg, std::slice::from_ref(&ceiling_topic))
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    // Warmed up by one delivery first (connection, metadata, producer id), as publish is timed
    // from its first acknowledgement.
    producer
        .send(
            FutureRecord::to(&ceiling_topic)
                .key("warm-up")
                .payload("warm-up"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let sampling = sampler(&url, &broker_pid).await;
    let t = Instant::now();
    let mut deliveries = futures_util::stream::FuturesUnordered::new();
    for (key, payload) in &messages {
        let record = FutureRecord::to(&ceiling_topic).key(key).payload(payload);
        deliveries.push(producer.send(record, Duration::from_secs(60)));
    }
    while let Some(d) = deliveries.next().await {
        d.unwrap();
    }
    let ceiling_secs = t.elapsed().as_secs_f64();
    eprintln!("producer ceiling: {:.1} s", t.elapsed().as_secs_f64());
    let ceiling_cpu = sampling.stop().await;
    // Its polling thread would otherwise count in the later phases' CPU of this process.
    drop(deliveries);
    drop(producer);

    // 3b. Consumer ceiling: a bare consumer of its own group reads the published topic through
    // and does nothing with the messages: what librdkafka and the broker cost per event. Timed
    // from subscribing (librdkafka fetches ahead, so the messages come all but at once after the
    // group join).
    let sampling = sampler(&url, &broker_pid).await;
    let t = Instant::now();
    let bare: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{prefix}bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    rdkafka::consumer::Consumer::subscribe(&bare, &[&format!("{prefix}.public.docs")]).unwrap();
    let mut cpu0 = 0.0;
    for i in 0..rows {
        let m = bare.recv().await.unwrap();
        std::hint::black_box(rdkafka::Message::payload(&m));
        if i == 0 {
            cpu0 = cpu::own();
        }
    }
    let consume_secs = t.elapsed().as_secs_f64();
    let consume_steady = (cpu::own() - cpu0) * 1e6 / (rows - 1) as f64;
    eprintln!("consumer ceiling: {consume_secs:.1} s with the group join, {consume_steady:.1} µs of CPU per event after the first");
    let consume_cpu = sampling.stop().await;
    drop(bare);

    // 3c. The applier's own work per event, without a broker: protobuf decode, event → change,
    // change → ops, one event at a time on one thread (each dropped before the next, as the
    // applier does: decoding all first would time page faults of fresh memory instead).
    let decode_alone = {
        use prost::Message as _;
        let cfg = config("bench_kafka_unused", "", false);
        let mapping =
            pg2qdrant::mapping::TableMapping::new(&cfg.tables[0], vec!["id".into()]).unwrap();
        let (mut pb, mut to_change, mut to_ops) = (0.0, 0.0, 0.0);
        for (_, p) in &messages {
            let t = Instant::now();
            let e = pg2qdrant::kafka::proto::ChangeEvent::decode(p.as_slice()).unwrap();
            let t1 = Instant::now();
            let c = pg2qdrant::kafka::decode::change(&mapping, &e).unwrap();
            let t2 = Instant::now();
            let ops = mapping.ops(&c).unwrap();
            let t3 = Instant::now();
            assert_eq!(ops.len(), 1);
            pb += (t1 - t).as_secs_f64();
            to_change += (t2 - t1).as_secs_f64();
            to_ops += (t3 - t2).as_secs_f64();
        }
        let us = |s: f64| s * 1e6 / messages.len() as f64;
        format!(
            "apply's decode + mapping alone (one thread, no broker): {:.1} µs/event = protobuf {:.1} + to change {:.1} + to ops {:.1}",
            us(pb + to_change + to_ops),
            us(pb),
            us(to_change),
            us(to_ops)
        )
    };

    // 4. One applier, in this process (as the direct path of 5b is).
    let (apply, apply_cpu) = {
        let collection = "bench_kafka_apply1";
        let _ = q.delete_collection(collection).await;
        let sampling = sampler(&url, &qdrant_pid).await;
        let token = CancellationToken::new();
        let applier = tokio::spawn(pg2qdrant::apply::run(
            config(collection, "a1", true),
            token.clone(),
        ));
        let timed = until_every_point(&qhttp, collection, rows, "apply (1)").await;
        let cpu = sampling.stop().await.less_watching(timed.watching);
        token.cancel();
        applier.await.unwrap().unwrap();
        (timed, cpu)
    };
    let apply_secs = apply.secs;

    // 5. Qdrant sink ceiling.
    let _ = q.delete_collection("bench_kafka_sink").await;
    q.create_collection(
        CreateCollectionBuilder::new("bench_kafka_sink")
            .vectors_config(VectorParamsBuilder::new(DIM as u64, Distance::Dot)),
    )
    .await
    .unwrap();
    let points = docs::points(rows);
    let sampling = sampler(&url, &qdrant_pid).await;
    let t = Instant::now();
    for chunk in points.chunks(batch) {
        q.upsert_points(UpsertPointsBuilder::new("bench_kafka_sink", chunk.to_vec()).wait(true))
            .await
            .unwrap();
    }
    let sink_secs = t.elapsed().as_secs_f64();
    eprintln!("sink ceiling: {:.1} s", t.elapsed().as_secs_f64());
    let sink_cpu = sampling.stop().await;

    // 6. Two appliers.
    // 5b. The direct path over the same rows (its own slot, created before the load): the
    // mapping and writes an applier does, from the slot instead of a topic.
    let _ = q.delete_collection("bench_kafka_direct").await;
    let sampling = sampler(&url, &qdrant_pid).await;
    let token = CancellationToken::new();
    let run = tokio::spawn(pg2qdrant::run(direct_cfg, token.clone()));
    let direct = until_every_point(&qhttp, "bench_kafka_direct", rows, "direct").await;
    let direct_cpu = sampling.stop().await.less_watching(direct.watching);
    token.cancel();
    run.await.unwrap().unwrap();

    // 6. One applier, then two, each its own `pg2qdrant apply` process (the release binary
    // beside this bench), as they are deployed; their CPU read from /proc (utime + stime).
    let processes = |n: usize, collection: &'static str, group: &'static str| {
        let (q, qhttp, url, qdrant_pid) = (&q, &qhttp, &url, &qdrant_pid);
        let path = work.join(format!("{collection}.toml"));
        let logs = work.clone();
        std::fs::write(&path, text_of("bench_kafka", collection, group, true)).unwrap();
        async move {
            let _ = q.delete_collection(collection).await;
            let bin = docs::binary();
            let sampling = sampler(url, qdrant_pid).await;
            let appliers: Vec<std::process::Child> = (0..n)
                .map(|i| {
                    std::process::Command::new(&bin)
                        .args(["apply", "--config"])
                        .arg(&path)
                        .stderr(
                            std::fs::File::create(logs.join(format!("{collection}-{i}.log")))
                                .unwrap(),
                        )
                        .spawn()
                        .unwrap_or_else(|e| {
                            panic!("{}: {e} (scripts/bench.sh builds it)", bin.display())
                        })
                })
                .collect();
            let pids: Vec<String> = appliers.iter().map(|c| c.id().to_string()).collect();
            let pids = pids.join(",");
            let ours = {
                let pids = pids.clone();
                move || cpu::seconds_of(&pids)
            };
            let cpu0 = cpu::seconds_of(&pids);
            let name = format!("apply ({n} processes)");
            let timed = until_every_point_by(qhttp, collection, rows, &name, ours).await;
            let applied = cpu::seconds_of(&pids) - cpu0;
            let cpu = sampling.stop().await.with_ours(applied);
            for mut c in appliers {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
                let status = c.wait().unwrap();
                assert!(status.success(), "an applier process ended with {status}");
            }
            (timed, cpu)
        }
    };
    let (one_process, one_process_cpu) = processes(1, "bench_kafka_apply1p", "a1p").await;
    let (two, two_cpu) = processes(2, "bench_kafka_apply2", "a2").await;
    let two_secs = two.secs;

    // 7. The direct path into the 3-node cluster, the nodes' CPU summed.
    let sampling = sampler(&url, &cluster.pids()).await;
    let token = CancellationToken::new();
    let run = tokio::spawn(pg2qdrant::run(cluster_cfg, token.clone()));
    let clustered = until_every_point(&cluster.http, "bench_kafka_cluster", rows, "cluster").await;
    let cluster_cpu = sampling.stop().await.less_watching(clustered.watching);
    token.cancel();
    run.await.unwrap().unwrap();
    drop(cluster);

    let per_s = |s: f64| rows as f64 / s;
    println!("{decode_alone}");
    println!("\nKafka fan-out, {rows} rows of {DIM} floats, events {:.0} bytes each on average, 3 partitions, Apache Kafka (one KRaft node)\n", bytes as f64 / rows as f64);
    println!(
        "{}",
        publish_cpu.line_for(
            "publish (slot → Kafka, delivered)",
            rows,
            publish_secs,
            "broker"
        )
    );
    println!(
        "{}",
        ceiling_cpu.line_for(
            "producer ceiling (same bytes)",
            rows,
            ceiling_secs,
            "broker"
        )
    );
    println!(
        "{}",
        consume_cpu.line_for(
            "consumer ceiling (bare, join incl.)",
            rows,
            consume_secs,
            "broker"
        )
    );
    println!(
        "{}",
        apply_cpu.line_for("apply, one applier", rows, apply_secs, "qdrant")
    );
    println!(
        "{}",
        sink_cpu.line_for(
            "Qdrant sink ceiling (bare upserts)",
            rows,
            sink_secs,
            "qdrant"
        )
    );
    println!(
        "{}",
        direct_cpu.line_for("direct path (slot → Qdrant)", rows, direct.secs, "qdrant")
    );
    println!(
        "{}",
        one_process_cpu.line_for(
            "apply, one applier (a process)",
            rows,
            one_process.secs,
            "qdrant"
        )
    );
    println!(
        "{}",
        two_cpu.line_for(
            "apply, two appliers (two processes)",
            rows,
            two_secs,
            "qdrant"
        )
    );
    println!(
        "{}",
        cluster_cpu.line_for(
            "direct path, 3-node Qdrant (6×2)",
            rows,
            clustered.secs,
            "qdrant"
        )
    );
    println!(
        "\npg2qdrant CPU µs/row after the first point (start and group join left out): apply {:.1}, one applier process {:.1}, two applier processes {:.1}, direct {:.1}, bare consumer {:.1}",
        apply.steady_us, one_process.steady_us, two.steady_us, direct.steady_us, consume_steady
    );
    println!(
        "ratios: publish / producer ceiling {:.2}; apply / sink ceiling {:.2}; two applier processes / one, rows/s {:.2}; \
         after the first point, CPU per event: applier / direct {:.2}, two applier processes / one {:.2}",
        per_s(publish_secs) / per_s(ceiling_secs),
        per_s(apply_secs) / per_s(sink_secs),
        per_s(two_secs) / per_s(one_process.secs),
        apply.steady_us / direct.steady_us,
        two.steady_us / one_process.steady_us,
    );
    println!(
        "direct path, 3-node cluster (6 shards × 2 replicas, write factor 1) / one node: {:.2} in rows/s, \
         {:.2} in pg2qdrant CPU per row after the first point (the three nodes share this machine's cores)",
        per_s(clustered.secs) / per_s(direct.secs),
        clustered.steady_us / direct.steady_us,
    );
    for slot in ["bench_kafka", "bench_kafka_direct", "bench_kafka_cluster"] {
        let _ = admin
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await;
    }
}

/// A `[kafka]` section for topic creation.
fn publish_cfg_kafka(brokers: &str) -> pg2qdrant::config::KafkaConfig {
    let mut k = pg2qdrant::config::KafkaConfig::with_brokers(brokers.to_owned());
    k.partitions = 3;
    k
}
