//! Kafka fan-out against a real Apache Kafka broker (started by `scripts/test.sh`):
//! publish mode, apply mode, ordering, redelivery, dead letters, broker restarts, and a killed
//! member of the consumer group.

use crate::harness::*;
use pg2qdrant::config::{parse, Config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) const DOCS: &str =
    "CREATE TABLE docs (id bigint PRIMARY KEY, title text, n int, v real[]);";
const PARTITIONS: i32 = 3;

pub(crate) fn brokers() -> String {
    env("PG2QDRANT_TEST_KAFKA")
}

/// Topic and group names of one test in this run: the suite runs twice against one broker
/// (binary, then text), so each run gets its own.
pub(crate) fn prefix(db: &TestDb) -> String {
    format!("{}_{}", db.name, std::process::id())
}

pub(crate) fn topic(db: &TestDb) -> String {
    format!("{}.public.docs", prefix(db))
}

/// The test's config text: `docs` into the test's collection, plus `[kafka]` with the test's
/// own topics, group and dead-letter topic.
pub(crate) fn kafka_text(db: &TestDb, brokers: &str, direct: bool) -> String {
    kafka_text_for(db, &table("docs", &db.name, 3, ""), brokers, direct)
}

/// [`kafka_text`] with these `[[tables]]` (and embedders).
pub(crate) fn kafka_text_for(db: &TestDb, tables: &str, brokers: &str, direct: bool) -> String {
    let mut text = db.config_text(tables, &qdrant_url());
    if !direct {
        text = text.replace("[qdrant]\n", "[qdrant]\ndirect = false\n");
    }
    text + &format!(
        "[kafka]\nbrokers = \"{brokers}\"\ntopic_template = \"{p}.{{schema}}.{{table}}\"\npartitions = {PARTITIONS}\n\
         group_id = \"{p}\"\ndlq_topic = \"{p}.dlq\"\n",
        p = prefix(db)
    )
}

fn kafka_config(db: &TestDb, brokers: &str, direct: bool) -> (Config, PathBuf) {
    let text = kafka_text(db, brokers, direct);
    let path = work_dir(&db.name).join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    cfg.validate().unwrap();
    (cfg, path)
}

/// [`kafka_text`] (publish mode) with `extra` lines in the table entry, written to the test's
/// config file: (config, path).
fn kafka_config_with(db: &TestDb, extra: &str) -> (Config, PathBuf) {
    let text = kafka_text(db, &brokers(), false).replace(
        "distance = \"Dot\" }\n",
        &format!("distance = \"Dot\" }}\n{extra}\n"),
    );
    assert!(text.contains(extra), "{text}");
    let path = work_dir(&db.name).join("config.toml");
    std::fs::write(&path, &text).unwrap();
    (parse(&text).unwrap(), path)
}

/// Waits until the applier created the test's collection.
pub(crate) async fn wait_collection(db: &TestDb) {
    wait_for("the applier's collection", WAIT, || async {
        qdrant()
            .collection_exists(&db.name)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
}

/// No copy of the (empty) table: one still running when the test's rows arrive would publish
/// them as reads too (correct, and a TRUNCATE restarts it), which blurs exact message counts.
pub(crate) fn streamed_only(cfg: &mut Config) {
    cfg.source.snapshot = pg2qdrant::config::SnapshotMode::Never;
}

/// An applier running in this process.
pub(crate) struct Applier {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), pg2qdrant::Error>>,
}

pub(crate) fn apply(cfg: Config) -> Applier {
    let token = CancellationToken::new();
    let handle = tokio::spawn(pg2qdrant::apply::run(cfg, token.clone()));
    Applier { token, handle }
}

impl Applier {
    pub(crate) async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("applier stops in time")
            .expect("applier task")
            .expect("applier stops cleanly");
    }
}

/// An applier as its own process (so it can be SIGKILLed).
pub(crate) fn apply_process(config: &std::path::Path, log: &str) -> Process {
    Process::start("apply", config, log)
}

pub(crate) fn client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

/// Every message of `topic` (all partitions, from the start) once `n` arrived or nothing more
/// came for 3 s.
pub(crate) async fn read_topic(brokers: &str, topic: &str, n: usize) -> Vec<OwnedMessage> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client(&brokers)
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let mut quiet = std::time::Instant::now();
        let deadline = std::time::Instant::now() + WAIT;
        while out.len() < n && quiet.elapsed() < Duration::from_secs(3) || out.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{topic}: {} of {n} messages",
                out.len()
            );
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                out.push(m.unwrap().detach());
                quiet = std::time::Instant::now();
            }
        }
        out
    })
    .await
    .unwrap()
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// `pg2qdrant_kafka_applied_total{topic}` of the appliers in this process (0 when absent).
async fn applied(port: u16, topic: &str) -> u64 {
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        return 0; // not serving yet
    }
    let body = crate::chat::http_get(port, "/metrics").await;
    let needle = format!("pg2qdrant_kafka_applied_total{{topic=\"{topic}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Starts an in-process applier serving metrics, and returns it with its metrics port.
fn apply_with_metrics(mut cfg: Config) -> (Applier, u16) {
    let port = free_port();
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    (apply(cfg), port)
}

/// Waits until the appliers in this process applied `n` events of `topic`.
async fn wait_applied(port: u16, topic: &str, n: u64) {
    wait_for(
        &format!("{n} events of {topic} applied"),
        WAIT,
        || async move {
            let got = applied(port, topic).await;
            assert!(
                got <= n,
                "{got} events applied, more than the {n} published"
            );
            (got == n).then_some(())
        },
    )
    .await
}

/// No event of `topic` was sent to the dead-letter topic by the appliers serving metrics on `addr`.
async fn assert_nothing_dead_lettered(addr: &str, topic: &str) {
    let metrics = http_get(addr, "/metrics").await.unwrap().1;
    let series = format!("pg2qdrant_kafka_dead_lettered_total{{topic=\"{topic}\"");
    assert_eq!(
        metric(&metrics, &series).unwrap_or(0.0),
        0.0,
        "nothing sent to the dead-letter topic"
    );
}

/// Waits until the test's group committed every partition of its topic to the partition's end:
/// every event is applied and durable (an applier commits an offset only after its writes).
pub(crate) async fn wait_group_caught_up(db: &TestDb) {
    let (brokers, topic, group) = (brokers(), topic(db), prefix(db));
    wait_for("the group committed every event", WAIT, || {
        let (brokers, topic, group) = (brokers.clone(), topic.clone(), group.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let c: BaseConsumer = client(&brokers)
                    .set("group.id", &group)
                    .set("enable.auto.commit", "false")
                    .create()
                    .ok()?;
                let md = c
                    .fetch_metadata(Some(&topic), Duration::from_secs(10))
                    .ok()?;
                let mut tpl = TopicPartitionList::new();
                for p in md.topics().first()?.partitions() {
                    tpl.add_partition(&topic, p.id());
                }
                let committed = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
                for e in committed.elements() {
                    let (low, high) = c
                        .fetch_watermarks(&topic, e.partition(), Duration::from_secs(10))
                        .ok()?;
                    match e.offset() {
                        _ if high == low => {}
                        Offset::Offset(o) if o >= high => {}
                        _ => return None,
                    }
                }
                Some(())
            })
            .await
            .ok()
            .flatten()
        }
    })
    .await
}

/// Waits until every row's point holds the row's title (and no other point exists).
pub(crate) async fn wait_equal(db: &TestDb) {
    wait_for("Qdrant equal to PostgreSQL", WAIT, || async {
        let rows: BTreeMap<String, serde_json::Value> = db
            .client
            .query("SELECT id::text, title FROM docs", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), json!(r.get::<_, Option<String>>(1))))
            .collect();
        (titles(&db.name).await == rows).then_some(())
    })
    .await
}

/// Waits until the slot acknowledged everything written so far (in publish mode: delivered).
pub(crate) async fn wait_published(db: &TestDb) {
    // The insert position: the write position can be short of the last commit.
    let lsn = db.insert_lsn_u64().await;
    wait_for("the slot acknowledged every change", WAIT, || async {
        (db.confirmed_u64().await >= lsn).then_some(())
    })
    .await;
}

/// Inserts rows in batches of 20, `pause` apart, updating earlier rows as it goes (the last
/// update of a row decides its title, so per-key order shows in the end state) and deleting
/// some (a point left behind would show).
pub(crate) async fn writes(url: String, batches: i64, pause: Duration) {
    let c = connect(&url).await;
    for batch in 0..batches {
        c.batch_execute(&format!(
            "INSERT INTO docs SELECT g, 'r', g, '{{1,1,1}}' FROM generate_series({}, {}) g;
             UPDATE docs SET title = 'u' || {batch} WHERE id % 29 = {} AND id <= {};
             DELETE FROM docs WHERE id % 31 = {} AND id <= {}",
            batch * 20 + 1,
            batch * 20 + 20,
            batch % 29,
            batch * 20,
            batch % 31,
            batch * 20
        ))
        .await
        .unwrap();
        tokio::time::sleep(pause).await;
    }
}

/// Rows in `docs` now.
pub(crate) async fn rows(db: &TestDb) -> i64 {
    db.client
        .query_one("SELECT count(*) FROM docs", &[])
        .await
        .unwrap()
        .get(0)
}

async fn titles(collection: &str) -> BTreeMap<String, serde_json::Value> {
    all_points(collection)
        .await
        .into_iter()
        .map(|(id, p)| (id, p.payload["title"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_apply_makes_qdrant_equal_postgres() {
    let db = TestDb::new("t_kafka_e2e", DOCS).await;
    db.exec(
        "INSERT INTO docs SELECT g, 'copied ' || g, g, '{1,0,0}' FROM generate_series(1, 200) g",
    )
    .await;
    let (cfg, path) = kafka_config(&db, &brokers(), false);
    let run = db.start(cfg.clone()).await;
    let (applier, port) = apply_with_metrics(cfg.clone());
    // The copy first: a change streamed inside its window replaces the copied row's event (by
    // design), which would blur the count below. The copy ends with its sweep, once per
    // partition.
    wait_applied(port, &topic(&db), 200 + PARTITIONS as u64).await;
    db.exec("INSERT INTO docs SELECT g, 'streamed ' || g, g, '{0,1,0}' FROM generate_series(201, 300) g")
        .await;
    db.exec("UPDATE docs SET title = 'updated', v = '{0,0,1}' WHERE id % 4 = 0")
        .await;
    db.exec("DELETE FROM docs WHERE id % 10 = 5").await;
    wait_published(&db).await;
    // 200 copied and the sweep, 100 inserted, 75 updated, 30 deleted.
    wait_applied(port, &topic(&db), 405 + PARTITIONS as u64).await;
    assert_eq!(count(&db.name).await, 270);
    let p = point(&db.name, 8).await.expect("point 8");
    assert_eq!(p.payload["title"], json!("updated"));
    assert_eq!(p.vector, Some(vec![0.0, 0.0, 1.0]));
    assert_eq!(
        point(&db.name, 201).await.unwrap().payload["title"],
        json!("streamed 201")
    );
    // Every row against its point, payload and vector.
    let (code, report) = crate::verify::verify(&path, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (report["rows"].clone(), report["points"].clone()),
        (json!(270), json!(270))
    );
    applier.stop().await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_decode_with_the_published_proto_keyed_by_point_id() {
    let db = TestDb::new("t_kafka_proto", DOCS).await;
    db.exec("INSERT INTO docs VALUES (1, 'copied', 1, '{1,0,0}')")
        .await;
    let metrics = free_port();
    let (mut cfg, _) = kafka_config(&db, &brokers(), true);
    cfg.metrics.addr = format!("127.0.0.1:{metrics}");
    let run = db.start(cfg).await;
    wait_count(&db.name, 1).await;
    db.exec("INSERT INTO docs VALUES (2, 'two', 2, '{0,1,0}')")
        .await;
    db.exec("UPDATE docs SET title = 'deux' WHERE id = 2").await;
    db.exec("DELETE FROM docs WHERE id = 1").await;
    db.exec("TRUNCATE docs").await;
    wait_published(&db).await;
    // Published while Qdrant was written directly too.
    wait_count(&db.name, 0).await;
    // The copy's read and its sweep (every partition), 3 changes, the TRUNCATE (every partition).
    let messages = read_topic(&brokers(), &topic(&db), 4 + 2 * PARTITIONS as usize).await;
    assert_eq!(messages.len(), 4 + 2 * PARTITIONS as usize);

    // A consumer that has only the .proto file: compile it and decode dynamically.
    let files = protox::compile(
        ["pg2qdrant/v1/change_event.proto"],
        [concat!(env!("CARGO_MANIFEST_DIR"), "/proto")],
    )
    .unwrap();
    let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(files).unwrap();
    let desc = pool
        .get_message_by_name("pg2qdrant.v1.ChangeEvent")
        .unwrap();
    let mut seen = Vec::new();
    let mut truncates = BTreeSet::new();
    let mut sweeps = BTreeSet::new();
    for m in &messages {
        let e = prost_reflect::DynamicMessage::decode(desc.clone(), m.payload().unwrap()).unwrap();
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["source"]["table"], json!("docs"), "{json}");
        let op = json["operation"].as_str().unwrap().to_owned();
        assert_eq!(
            header(m, "pg2qdrant.lsn").unwrap(),
            json["commitLsn"].as_str().unwrap(),
            "{json}"
        );
        assert_eq!(header(m, "pg2qdrant.table").unwrap(), "public.docs");
        if op == "OPERATION_TRUNCATE" {
            assert!(m.key().is_none());
            truncates.insert(m.partition());
            continue;
        }
        if op == "OPERATION_SWEEP" {
            // The copy's start: rows not written since are gone.
            assert!(m.key().is_none() && json.get("pointId").is_none(), "{json}");
            sweeps.insert(m.partition());
            continue;
        }
        let id = json["pointId"]["num"].as_str().unwrap().to_owned();
        assert_eq!(
            m.key().unwrap(),
            id.as_bytes(),
            "the message key is the point id"
        );
        seen.push((id, op, m.partition(), m.offset(), json));
    }
    assert_eq!(
        truncates.len(),
        PARTITIONS as usize,
        "a TRUNCATE goes to every partition"
    );
    assert_eq!(sweeps.len(), PARTITIONS as usize, "so does a copy's sweep");
    let ops: BTreeSet<(String, String)> = seen.iter().map(|s| (s.0.clone(), s.1.clone())).collect();
    let want: BTreeSet<(String, String)> = [
        ("1", "OPERATION_READ"),
        ("2", "OPERATION_INSERT"),
        ("2", "OPERATION_UPDATE"),
        ("1", "OPERATION_DELETE"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(ops, want);
    // One row's changes: one partition, in commit order.
    let row2: Vec<_> = seen.iter().filter(|s| s.0 == "2").collect();
    assert_eq!(row2[0].2, row2[1].2);
    let (insert, update) = if row2[0].1 == "OPERATION_INSERT" {
        (row2[0], row2[1])
    } else {
        (row2[1], row2[0])
    };
    assert!(insert.3 < update.3);
    let new_row = &update.4["newRow"];
    let title = new_row
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == json!("title"))
        .unwrap();
    assert_eq!(title["value"]["text"], json!("deux"));
    let body = crate::chat::http_get(metrics, "/metrics").await;
    let delivered = format!(
        "pg2qdrant_kafka_delivered_total{{topic=\"{}\"}}",
        topic(&db)
    );
    assert!(body.contains(&delivered), "{delivered} missing:\n{body}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unmappable_messages_go_to_the_dlq_and_the_applier_goes_on() {
    let db = TestDb::new("t_kafka_dlq", DOCS).await;
    let (mut cfg, _) = kafka_config(&db, &brokers(), false);
    streamed_only(&mut cfg);
    let run = db.start(cfg.clone()).await;
    let applier = apply(cfg.clone());
    let producer: FutureProducer = client(&brokers()).create().unwrap();
    let garbage: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
    producer
        .send(
            FutureRecord::to(&topic(&db)).key("junk").payload(&garbage),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    // A well-formed event whose vector has 2 dimensions where the collection takes 3.
    db.exec("INSERT INTO docs VALUES (1, 'one', 1, '{1,0}')")
        .await;
    db.exec("INSERT INTO docs VALUES (2, 'two', 2, '{0,1,0}')")
        .await;
    wait_for("the good row applied after the bad ones", WAIT, || async {
        point(&db.name, 2).await
    })
    .await;
    let dlq = read_topic(&brokers(), &format!("{}.dlq", prefix(&db)), 2).await;
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let junk = dlq
        .iter()
        .find(|m| m.key() == Some(b"junk".as_slice()))
        .unwrap();
    assert_eq!(junk.payload().unwrap(), garbage.as_slice());
    assert!(header(junk, "pg2qdrant.error")
        .unwrap()
        .contains("ChangeEvent"));
    assert_eq!(header(junk, "pg2qdrant.source.topic").unwrap(), topic(&db));
    let unmappable = dlq
        .iter()
        .find(|m| m.key() == Some(b"1".as_slice()))
        .unwrap();
    let reason = header(unmappable, "pg2qdrant.error").unwrap();
    assert!(
        reason.contains("dimensions") && reason.contains("public.docs"),
        "{reason}"
    );
    assert!(point(&db.name, 1).await.is_none());
    applier.stop().await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_event_delivered_again_does_not_regress_the_point() {
    let db = TestDb::new("t_kafka_redeliver", DOCS).await;
    let (mut cfg, _) = kafka_config(&db, &brokers(), false);
    streamed_only(&mut cfg);
    let run = db.start(cfg.clone()).await;
    let (applier, port) = apply_with_metrics(cfg.clone());
    db.exec("INSERT INTO docs VALUES (1, 'v1', 1, '{1,0,0}')")
        .await;
    db.exec("UPDATE docs SET title = 'v2', v = '{0,1,0}' WHERE id = 1")
        .await;
    wait_for("v2 applied", WAIT, || async {
        point(&db.name, 1)
            .await
            .filter(|p| p.payload["title"] == json!("v2"))
    })
    .await;
    let messages = read_topic(&brokers(), &topic(&db), 2).await;
    let old = messages
        .iter()
        .min_by_key(|m| m.offset())
        .expect("the insert event");
    // The insert of v1 again, after the update: as a redelivery after a rebalance would.
    let producer: FutureProducer = client(&brokers()).create().unwrap();
    let delivery = producer
        .send(
            FutureRecord::to(&topic(&db))
                .key(old.key().unwrap())
                .payload(old.payload().unwrap()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        delivery.partition,
        old.partition(),
        "same key, same partition"
    );
    assert!(delivery.offset > old.offset());
    wait_applied(port, &topic(&db), 3).await;
    let p = point(&db.name, 1).await.unwrap();
    assert_eq!(
        p.payload["title"],
        json!("v2"),
        "the point did not go back to v1"
    );
    assert_eq!(p.vector, Some(vec![0.0, 1.0, 0.0]));
    applier.stop().await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_then_reused_keys_land_right_across_partitions() {
    let db = TestDb::new("t_kafka_truncate", DOCS).await;
    let (mut cfg, path) = kafka_config(&db, &brokers(), false);
    streamed_only(&mut cfg);
    let run = db.start(cfg.clone()).await;
    db.exec("INSERT INTO docs SELECT g, 'old', g, '{1,0,0}' FROM generate_series(1, 60) g")
        .await;
    db.exec("TRUNCATE docs").await;
    db.exec("INSERT INTO docs SELECT g, 'new', g, '{0,1,0}' FROM generate_series(1, 20) g")
        .await;
    wait_published(&db).await;
    // Everything is on the topic before the applier starts: it reads the partitions in
    // whatever interleaving the broker gives.
    let (applier, port) = apply_with_metrics(cfg.clone());
    // 60 inserts, the TRUNCATE once per partition, 20 inserts.
    wait_applied(port, &topic(&db), 60 + PARTITIONS as u64 + 20).await;
    let t = titles(&db.name).await;
    assert_eq!(t.len(), 20, "{t:?}");
    assert!(t.values().all(|v| v == &json!("new")), "{t:?}");
    let (code, report) = crate::verify::verify(&path, &[]);
    assert_eq!(code, 0, "{report}");
    applier.stop().await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_publish_loses_nothing() {
    let db = TestDb::new("t_kafka_broker", DOCS).await;
    let mut kafka = PrivateKafka::start("t_kafka_broker").await;
    let (mut cfg, _) = kafka_config(&db, &kafka.brokers(), false);
    // The first batch must not race the initial copy (its rows would be published as reads too).
    streamed_only(&mut cfg);
    let run = db.start(cfg).await;
    let writes = {
        let url = db.url.clone();
        tokio::spawn(async move {
            let c = connect(&url).await;
            for batch in 0..40i64 {
                c.batch_execute(&format!(
                    "INSERT INTO docs SELECT g, 'r', g, '{{1,1,1}}' FROM generate_series({}, {}) g",
                    batch * 25 + 1,
                    batch * 25 + 25
                ))
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // This test's run is in-process: its producer's counters are this process's, by topic.
    let counters = || {
        let text = pg2qdrant::metrics::server::install().render();
        let series = |name: &str| format!("{name}{{topic=\"{}\"", topic(&db));
        (
            metric(&text, &series("pg2qdrant_kafka_produced_total")).unwrap_or(0.0),
            metric(&text, &series("pg2qdrant_kafka_delivered_total")).unwrap_or(0.0),
        )
    };
    wait_for("events delivered before the kill", WAIT, || async {
        (counters().1 >= 100.0).then_some(())
    })
    .await;
    kafka.kill();
    // Mid-publish: events the producer took and the dead broker never confirmed.
    let pending = wait_for("deliveries pending at the dead broker", WAIT, || async {
        let (produced, delivered) = counters();
        (produced > delivered).then_some(produced - delivered)
    })
    .await;
    eprintln!("{pending} events pending while the broker is down");
    let held = db.confirmed_u64().await;
    kafka.restart().await;
    writes.await.unwrap();
    wait_published(&db).await;
    assert!(db.confirmed_u64().await > held);
    // Delivery is at least once: a batch the dead broker had stored but not confirmed is sent
    // again, so read until the topic is quiet, not up to 1000 messages.
    let messages = read_topic(&kafka.brokers(), &topic(&db), usize::MAX).await;
    let ids: BTreeSet<i64> = messages
        .iter()
        .map(|m| {
            std::str::from_utf8(m.key().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        ids,
        (1..=1000).collect::<BTreeSet<i64>>(),
        "every row is on the topic"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_appliers_one_killed_the_survivor_takes_its_partitions_and_nothing_is_lost() {
    let db = TestDb::new("t_kafka_group", DOCS).await;
    let (cfg, path) = kafka_config(&db, &brokers(), false);
    // The dead member keeps its partitions until its session expires (librdkafka's default is
    // 45 s): the broker's shortest (6 s) keeps the test short.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path).unwrap()
            + "properties = { \"session.timeout.ms\" = \"6000\" }\n",
    )
    .unwrap();
    let run = db.start(cfg).await;
    let mut a = apply_process(&path, "applier-a.log");
    // b joins once a leads the group (alone, it owns every partition).
    let assigned_at = |log: &str| {
        std::fs::read_to_string(path.with_file_name(log))
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("partitions assigned") && l.contains(&topic(&db)))
            .map(str::to_owned)
    };
    wait_for("the first applier leads the group", WAIT, || async {
        assigned_at("applier-a.log")
    })
    .await;
    let mut b = apply_process(&path, "applier-b.log");
    // Deletes too: a member's write still in flight when its partitions move could bring a
    // deleted row back (a revocation waits for the writes, see `kafka::client::GroupLog`).
    let writes = tokio::spawn(writes(db.url.clone(), 60, Duration::from_millis(100)));
    // Both members own partitions, and changes are being applied.
    wait_for("both appliers own partitions", WAIT, || async {
        assigned_at("applier-b.log")
    })
    .await;
    wait_for("changes being applied", WAIT, || async {
        (count(&db.name).await >= 200).then_some(())
    })
    .await;
    // SIGKILL the group's first member (its leader): the broker notices when its session
    // expires, and the survivor takes its partitions; no member joins.
    let revoked = |log: &str| {
        std::fs::read_to_string(path.with_file_name(log))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("partitions revoked"))
            .count()
    };
    let before = revoked("applier-b.log");
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    // The group notices the dead member when its session expires: the coordinator answers the
    // survivor's next heartbeat with a rebalance, which the survivor logs as a revocation.
    wait_for("the group to evict the dead member", WAIT, || async {
        (revoked("applier-b.log") > before).then_some(())
    })
    .await;
    writes.await.unwrap();
    wait_published(&db).await;
    wait_equal(&db).await;
    let rows = rows(&db).await;
    assert!(rows < 1200, "rows were deleted under the rebalances");
    assert_eq!(count(&db.name).await, rows as u64);
    let (code, report) = crate::verify::verify(&path, &[]);
    assert_eq!(code, 0, "{report}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &b.0.id().to_string()])
        .status();
    let status = b.0.wait().unwrap();
    assert!(status.success(), "applier exits 0 on SIGTERM: {status}");
    run.stop().await;
}

/// The publisher SIGKILLed mid-load (after events were applied, before the writer ends) and
/// started again: the slot resumes from the last position it acknowledged (every event before
/// it delivered), so events delivered but not yet acknowledged are published again and the
/// applier's fences make any repeat harmless: every row equals its point, deleted rows leave
/// no ghost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_sigkilled_mid_load_and_restarted_loses_nothing_and_leaves_no_ghost() {
    let db = TestDb::new("t_kafka_publisher_kill", DOCS).await;
    let (cfg, path) = kafka_config(&db, &brokers(), false);
    let mut publisher = Process::start("run", &path, "run-1.log");
    db.wait_streaming().await;
    let applier = apply(cfg);
    let writes = tokio::spawn(writes(db.url.clone(), 60, Duration::from_millis(50)));
    // Events published and applied before the kill.
    wait_for("events applied before the kill", WAIT, || async {
        (count(&db.name).await >= 100).then_some(())
    })
    .await;
    publisher.0.kill().unwrap();
    publisher.0.wait().unwrap();
    assert!(!writes.is_finished(), "the publisher died mid-load");
    let held = db.confirmed_u64().await;
    let _publisher = Process::start("run", &path, "run-2.log");
    writes.await.unwrap();
    wait_published(&db).await;
    assert!(
        db.confirmed_u64().await > held,
        "the restarted publisher resumed"
    );
    wait_group_caught_up(&db).await;
    wait_equal(&db).await;
    let (code, report) = crate::verify::verify(&path, &[]);
    assert_eq!(code, 0, "{report}");
    applier.stop().await;
}

/// A member's writes stuck in flight (its Qdrant down) when another member joins the group:
/// the partitions do not move until they are durable (the revocation waits, within
/// `DRAIN_LIMIT`; or the member, its writer full, is not polling yet), so a next owner never applies a row's DELETE while an older write of that
/// row is still on its way (it would bring the row back). The member that joins is a bare
/// consumer (an applier would wait for Qdrant before joining); once it leaves, the applier owns
/// every partition again and rows inserted while Qdrant was down, some deleted since, leave no
/// ghost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_waits_for_the_writes_in_flight_and_no_deleted_row_comes_back() {
    let db = TestDb::new("t_kafka_drain", DOCS).await;
    let mut q = PrivateQdrant::start(&db.name).await;
    let path = work_dir(&db.name).join("config.toml");
    let text = kafka_text(&db, &brokers(), false).replace(&qdrant_url(), &q.url());
    std::fs::write(&path, &text).unwrap();
    let mut cfg = parse(&text).unwrap();
    streamed_only(&mut cfg);
    let run = db.start(cfg).await;
    let log_of = |log: &str| std::fs::read_to_string(path.with_file_name(log)).unwrap_or_default();
    let lines = |what: &str| {
        log_of("applier.log")
            .lines()
            .filter(|l| l.contains(what))
            .count()
    };
    let _applier = apply_process(&path, "applier.log");
    wait_for("the applier owns the partitions", WAIT, || async {
        (lines("partitions assigned") > 0).then_some(())
    })
    .await;
    db.exec("INSERT INTO docs SELECT g, 'r', g, '{1,1,1}' FROM generate_series(1, 50) g")
        .await;
    let qc = q.client();
    wait_count_at(&qc, &db.name, 50).await;
    // Qdrant down: the applier takes the next rows and its write of them stays in flight.
    q.kill();
    db.exec("INSERT INTO docs SELECT g, 'r', g, '{1,1,1}' FROM generate_series(51, 100) g")
        .await;
    wait_published(&db).await;
    wait_for("the write in flight, failing", WAIT, || async {
        (lines("write failed; retrying") > 0).then_some(())
    })
    .await;
    db.exec("DELETE FROM docs WHERE id BETWEEN 51 AND 60").await;
    wait_published(&db).await;
    // Another member joins: the group revokes the applier's partitions, and the applier holds
    // them while its write is in flight.
    let revoked = lines("partitions revoked");
    let joined = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Leaves the group when the test ends, passed or not (the runtime waits for the thread).
    struct Leave(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Leave {
        fn drop(&mut self) {
            self.0.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let leave = Leave(joined.clone());
    let member = {
        let (brokers, group, topic, joined) = (brokers(), prefix(&db), topic(&db), joined.clone());
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = client(&brokers)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            c.subscribe(&[&topic]).unwrap();
            // Polls (to take part in the rebalance) and reads nothing it keeps.
            while joined.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = c.poll(Duration::from_millis(100));
            }
            c.unsubscribe();
        })
    };
    // The applier holds its partitions while its write is in flight: it waits in the
    // revocation (logged), or it is not polling yet because its writer holds all it can take;
    // either way nothing moves until the write is in.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        lines("partitions revoked"),
        revoked,
        "partitions given up with a write in flight:\n{}",
        log_of("applier.log")
    );
    q.restart().await;
    wait_ok(
        "the partitions given up once the write is in",
        WAIT,
        || async {
            match lines("partitions revoked") > revoked {
                true => Ok(()),
                false => Err(log_of("applier.log")),
            }
        },
    )
    .await;
    // The other member leaves; the applier takes every partition again.
    drop(leave);
    member.await.unwrap();
    wait_group_caught_up(&db).await;
    let expected: BTreeSet<String> = (1..=100)
        .filter(|id| !(51..=60).contains(id))
        .map(|id: i64| id.to_string())
        .collect();
    wait_ok("every row's point, no deleted one", WAIT, || async {
        let held: BTreeSet<String> = all_points_at(&qc, &db.name)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        match held == expected {
            true => Ok(()),
            false => Err(format!(
                "extra {:?}, missing {:?}",
                held.difference(&expected).collect::<Vec<_>>(),
                expected.difference(&held).collect::<Vec<_>>()
            )),
        }
    })
    .await;
    run.stop().await;
}

/// Key changes waiting in the topic while no applier runs: each is a delete in the old key's
/// partition (after that key's INSERT) and an insert in the new key's, so no applier order can
/// bring an old point back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_in_a_backlog_applied_by_two_appliers_leave_no_ghost() {
    let db = TestDb::new("t_kafka_rekey", DOCS).await;
    let (mut cfg, _) = kafka_config(&db, &brokers(), false);
    streamed_only(&mut cfg);
    let run = db.start(cfg.clone()).await;
    db.exec("INSERT INTO docs SELECT g, 'r' || g, g, '{1,0,0}' FROM generate_series(1, 400) g")
        .await;
    // Every key changes, a quarter of them twice; a tenth of the rows go.
    db.exec("UPDATE docs SET id = id + 1000, title = 'moved ' || id")
        .await;
    db.exec("UPDATE docs SET id = id + 1000, title = 'twice' WHERE id <= 1100")
        .await;
    db.exec("DELETE FROM docs WHERE id % 10 = 3").await;
    wait_published(&db).await;
    // 400 inserts, 500 key changes as a delete and an insert each, 40 deletes.
    let events = 400 + 2 * 500 + 40;
    assert_eq!(
        read_topic(&brokers(), &topic(&db), events).await.len(),
        events
    );
    let (a, port) = apply_with_metrics(cfg.clone());
    wait_for("the first applier applies", WAIT, || async {
        (applied(port, &topic(&db)).await > 0).then_some(())
    })
    .await;
    let b = apply(cfg);
    // Counted per delivery, the applied events may pass `events`: a rebalance redelivers.
    wait_group_caught_up(&db).await;
    wait_equal(&db).await;
    assert_eq!(count(&db.name).await, 360, "no ghost point");
    b.stop().await;
    a.stop().await;
    run.stop().await;
}

/// The same with chunked rows: a key change deletes every chunk of the old key in its own
/// partition and writes the new key's chunks, so no old chunk comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_of_chunked_rows_in_a_backlog_leave_no_ghost_chunk() {
    let db = TestDb::new(
        "t_kafka_rekey_chunks",
        "CREATE TABLE docs (id bigint PRIMARY KEY, body text, n int);",
    )
    .await;
    let text = kafka_text_for(
        &db,
        &crate::chunking::chunked(&db.name, "minilm_rekey", 16, 4),
        &brokers(),
        false,
    );
    let mut cfg = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    streamed_only(&mut cfg);
    let run = db.start(cfg.clone()).await;
    // 40 words: three chunks a row.
    db.exec(&format!(
        "INSERT INTO docs SELECT g, '{}', g FROM generate_series(1, 30) g",
        crate::chunking::words(40, 0)
    ))
    .await;
    db.exec("UPDATE docs SET id = id + 100").await;
    db.exec("UPDATE docs SET id = id + 100 WHERE id <= 110")
        .await;
    db.exec("DELETE FROM docs WHERE id % 10 = 3").await;
    wait_published(&db).await;
    // 30 inserts, 40 key changes as a delete and an insert each, 3 deletes: all in the topic.
    assert_eq!(
        read_topic(&brokers(), &topic(&db), 113).await.len(),
        30 + 2 * 40 + 3
    );
    let (a, port) = apply_with_metrics(cfg.clone());
    wait_for("the first applier applies", WAIT, || async {
        (applied(port, &topic(&db)).await > 0).then_some(())
    })
    .await;
    let b = apply(cfg);
    wait_group_caught_up(&db).await;
    let rows: BTreeSet<String> = db
        .client
        .query("SELECT id::text FROM docs", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows.len(), 27);
    let points = all_points(&db.name).await;
    let owners: BTreeSet<String> = points
        .iter()
        .map(|(_, p)| {
            p.payload["_pg2qdrant"]["key"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(owners, rows, "every chunk belongs to a row that exists");
    assert_eq!(points.len(), 27 * 3, "three chunks a row, no ghost chunk");
    b.stop().await;
    a.stop().await;
    run.stop().await;
}

/// An applier whose Qdrant refuses its key: an outage, not bad events. Nothing goes to the
/// dead-letter topic or file, readiness says so, and once the key matches again every event is
/// applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_facing_a_refused_qdrant_key_parks_nothing_and_catches_up() {
    let db = TestDb::new("t_kafka_qdrant_key", DOCS).await;
    let mut q = PrivateQdrant::start_keyed(&db.name, "key-a").await;
    let text = kafka_text(&db, &brokers(), false)
        .replace(&qdrant_url(), &q.url())
        .replace("[qdrant]\n", "[qdrant]\napi_key = \"key-a\"\n");
    let mut cfg = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    streamed_only(&mut cfg);
    let dead_letters = cfg.dead_letter.path.clone();
    let run = db.start(cfg.clone()).await;
    let (applier, port) = apply_with_metrics(cfg);
    let points = |q: &PrivateQdrant| {
        let client = q.client();
        let name = db.name.clone();
        async move {
            client
                .count(qdrant_client::qdrant::CountPointsBuilder::new(name).exact(true))
                .await
                .ok()?
                .result
                .map(|r| r.count)
        }
    };
    db.exec("INSERT INTO docs SELECT g, 't', g, '{1,0,0}' FROM generate_series(1, 50) g")
        .await;
    wait_for("50 points", WAIT, || async {
        (points(&q).await == Some(50)).then_some(())
    })
    .await;
    q.kill();
    q.api_key = Some("key-b".into());
    q.restart().await;
    db.exec("INSERT INTO docs SELECT g, 't', g, '{0,1,0}' FROM generate_series(51, 150) g")
        .await;
    wait_published(&db).await;
    let addr = format!("127.0.0.1:{port}");
    let body = wait_readyz(&addr, 503, "readyz 503 while Qdrant refuses the key").await;
    assert!(body.contains("qdrant"), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(points(&q).await, Some(50), "nothing applied meanwhile");
    assert_nothing_dead_lettered(&addr, &topic(&db)).await;
    q.kill();
    q.api_key = Some("key-a".into());
    q.restart().await;
    wait_for("150 points", WAIT, || async {
        (points(&q).await == Some(150)).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&dead_letters).unwrap_or_default(),
        ""
    );
    applier.stop().await;
    run.stop().await;
}

/// An applier whose embedding service refuses its key: an outage for the applier too. Nothing
/// goes to the dead-letter topic or file, readiness names the embedder, and every event is
/// applied once the key is accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_facing_an_embedding_service_that_refuses_its_key_parks_nothing() {
    let fake = crate::embedding::FakeOpenAi::start().await;
    let db = TestDb::new("t_kafka_embed_401", crate::embedding::NOTES).await;
    let text = kafka_text_for(
        &db,
        &fake.config("svc_kafka_401", "", &db.name),
        &brokers(),
        false,
    );
    let mut cfg = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    streamed_only(&mut cfg);
    let dead_letters = cfg.dead_letter.path.clone();
    let topic = format!("{}.public.notes", prefix(&db));
    let run = db.start(cfg.clone()).await;
    let (applier, port) = apply_with_metrics(cfg);
    db.exec("INSERT INTO notes VALUES (1, 't', 'hello', 1)")
        .await;
    wait_for("point 1", WAIT, || point(&db.name, 1)).await;
    fake.rotated
        .store(true, std::sync::atomic::Ordering::SeqCst);
    db.exec("INSERT INTO notes SELECT g, 't', 'text ' || g, g FROM generate_series(2, 30) g")
        .await;
    wait_published(&db).await;
    let addr = format!("127.0.0.1:{port}");
    let body = wait_readyz(&addr, 503, "readyz 503 while the service refuses the key").await;
    assert!(body.contains("embedder"), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&db.name).await, 1, "nothing applied meanwhile");
    assert_nothing_dead_lettered(&addr, &topic).await;
    fake.rotated
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_count(&db.name, 30).await;
    assert_eq!(
        std::fs::read_to_string(&dead_letters).unwrap_or_default(),
        ""
    );
    applier.stop().await;
    run.stop().await;
}

/// A key change of a row whose large column is stored out of line and unchanged: the event
/// carries it as unchanged TOAST, and the applier reads the row for the new point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_through_kafka_keeps_an_unchanged_toasted_column() {
    let db = TestDb::new("t_kafka_toast_rekey", DOCS).await;
    db.exec("ALTER TABLE docs ADD COLUMN big text; ALTER TABLE docs ALTER COLUMN big SET STORAGE EXTERNAL")
        .await;
    let (mut cfg, _) = kafka_config(&db, &brokers(), false);
    streamed_only(&mut cfg);
    let run = db.start(cfg.clone()).await;
    let applier = apply(cfg);
    db.exec("INSERT INTO docs SELECT 10, 'a', 1, '{1,0,0}', string_agg(md5(g::text), '') FROM generate_series(1, 200) g").await;
    let big = wait_for("point 10", WAIT, || async {
        point(&db.name, 10)
            .await
            .and_then(|p| p.payload["big"].as_str().map(str::to_owned))
    })
    .await;
    db.exec("UPDATE docs SET id = 5000 WHERE id = 10").await;
    let p = wait_for("point 5000", WAIT, || point(&db.name, 5000)).await;
    assert_eq!(
        p.payload["big"].as_str(),
        Some(big.as_str()),
        "the TOASTed column is kept"
    );
    assert_eq!(p.payload["title"], json!("a"));
    // After another update of the row in the same transaction.
    db.exec("BEGIN; UPDATE docs SET n = 7 WHERE id = 5000; UPDATE docs SET id = 6000 WHERE id = 5000; COMMIT")
        .await;
    let p = wait_for("point 6000", WAIT, || async {
        point(&db.name, 6000)
            .await
            .filter(|p| p.payload["n"] == json!(7))
    })
    .await;
    assert_eq!(
        p.payload["big"].as_str(),
        Some(big.as_str()),
        "the TOASTed column is kept"
    );
    wait_for("the old points gone", WAIT, || async {
        (point(&db.name, 10).await.is_none() && point(&db.name, 5000).await.is_none()).then_some(())
    })
    .await;
    applier.stop().await;
    run.stop().await;
}

/// `pg2qdrant status` of a publisher that does not write Qdrant never says "in sync" (it cannot
/// know how far the appliers are); an applier serves its own status: its partitions' lag, in
/// sync once it applied them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_publisher_is_never_in_sync_and_an_applier_reports_its_partitions() {
    let db = TestDb::new("t_kafka_status", DOCS).await;
    let text = kafka_text(&db, &brokers(), false);
    let with_addr = |file: &str| {
        let addr = format!("127.0.0.1:{}", free_port());
        let path = work_dir(&db.name).join(file);
        std::fs::write(
            &path,
            text.replace("addr = \"\"", &format!("addr = \"{addr}\"")),
        )
        .unwrap();
        (path, addr)
    };
    let (publisher, _) = with_addr("publisher.toml");
    let (applier, applier_addr) = with_addr("applier.toml");
    let status = |config: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
            .args(["status", "--config"])
            .arg(config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let _run = Process::start("run", &publisher, "run.log");
    db.wait_streaming().await;
    db.exec("INSERT INTO docs SELECT g, 't', g, '{1,0,0}' FROM generate_series(1, 50) g")
        .await;
    wait_published(&db).await;
    // Published and ready, with no applier running: not in sync, and it says why.
    let said = wait_for("the publisher ready", WAIT, || async {
        let (code, said) = status(&publisher);
        (said.contains("ready;") && !said.contains("NOT READY")).then_some((code, said))
    })
    .await;
    assert_eq!(said.0, Some(1), "{}", said.1);
    assert!(
        said.1.contains("NOT IN SYNC") && said.1.contains("published up to"),
        "{}",
        said.1
    );
    assert!(said.1.contains("ask their /status"), "{}", said.1);
    // An applier: in sync once it applied its partitions, which it lists.
    let _apply = Process::start("apply", &applier, "apply.log");
    let said = wait_for("the applier in sync (exit 0)", WAIT, || async {
        let (code, said) = status(&applier);
        (code == Some(0)).then_some(said)
    })
    .await;
    assert!(said.contains("pg2qdrant apply: ready; in sync"), "{said}");
    assert_eq!(count(&db.name).await, 50);
    let doc: serde_json::Value =
        serde_json::from_str(&http_get(&applier_addr, "/status").await.unwrap().1).unwrap();
    assert_eq!(doc["mode"], "apply", "{doc}");
    assert_eq!(
        doc["partitions"].as_array().map(Vec::len),
        Some(PARTITIONS as usize),
        "{doc}"
    );
    assert_eq!(
        status(&publisher).0,
        Some(1),
        "the publisher still cannot tell"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_brokers_and_each_topic() {
    let db = TestDb::new("t_kafka_check", DOCS).await;
    let (_, path) = kafka_config(&db, &brokers(), true);
    let out = cli_ok(&["check"], &path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("ok   kafka: brokers {} reachable", brokers())),
        "{text}"
    );
    assert!(
        text.contains(&format!("ok   topic {}", topic(&db))),
        "{text}"
    );
    let down = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["check", "--config"])
        .arg(&path)
        .env(
            "PG2QDRANT__KAFKA__BROKERS",
            format!("127.0.0.1:{}", free_port()),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&down.stdout);
    assert_eq!(down.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL kafka:") && l.contains("kafka.brokers")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kafka_refuses_is_dead_lettered_and_the_stream_goes_on() {
    let db = TestDb::new("t_kafka_refused", DOCS).await;
    let (mut cfg, _) = kafka_config(&db, &brokers(), true);
    streamed_only(&mut cfg);
    // librdkafka refuses messages above this size before sending them: for good.
    cfg.kafka
        .as_mut()
        .unwrap()
        .properties
        .insert("message.max.bytes".into(), "1000".into());
    let run = db.start(cfg.clone()).await;
    // One transaction, one batch: the refused event must not take the next one with it.
    db.exec(
        "INSERT INTO docs VALUES (1, repeat('x', 5000), 1, '{1,0,0}'), (2, 'small', 2, '{0,1,0}')",
    )
    .await;
    wait_published(&db).await;
    let messages = read_topic(&brokers(), &topic(&db), 1).await;
    let keys: Vec<&[u8]> = messages.iter().filter_map(|m| m.key()).collect();
    assert_eq!(
        keys,
        vec![b"2".as_slice()],
        "the small row is published, the big one is not"
    );
    let dead = std::fs::read_to_string(&cfg.dead_letter.path).unwrap();
    let line = dead
        .lines()
        .find(|l| l.contains(&format!("topic:{}", topic(&db))))
        .unwrap_or_else(|| panic!("no dead letter for the refused event:\n{dead}"));
    assert!(line.contains("\"1\""), "{line}");
    assert!(
        line.to_lowercase().contains("size") || line.contains("large"),
        "{line}"
    );
    // Qdrant has both (the direct path is not held up by Kafka's refusal).
    wait_count(&db.name, 2).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_lag_seconds_grow_while_qdrant_is_down_and_fall_after() {
    let db = TestDb::new("t_kafka_applylag", DOCS).await;
    let mut q = PrivateQdrant::start("t_kafka_applylag").await;
    let (mut cfg, _) = kafka_config(&db, &brokers(), false);
    streamed_only(&mut cfg);
    let run = db.start(cfg.clone()).await;
    let mut apply_cfg = cfg.clone();
    apply_cfg.qdrant.url = q.url();
    apply_cfg.qdrant.max_backoff_ms = 500;
    let (applier, port) = apply_with_metrics(apply_cfg);
    let addr = format!("127.0.0.1:{port}");
    let series = format!(
        "pg2qdrant_kafka_apply_lag_seconds{{group=\"{}\"}}",
        prefix(&db)
    );
    let lag = |ok: fn(f64) -> bool| {
        let (addr, series) = (addr.clone(), series.clone());
        async move {
            wait_for(&format!("{series} as expected"), WAIT, || async {
                let m = http_get(&addr, "/metrics").await?.1;
                metric(&m, &series).filter(|v| ok(*v))
            })
            .await
        }
    };
    db.exec("INSERT INTO docs SELECT g, 'a', g, '{1,0,0}' FROM generate_series(1, 10) g")
        .await;
    wait_applied(port, &topic(&db), 10).await;
    lag(|v| v < 1.0).await;

    q.kill();
    db.exec("INSERT INTO docs SELECT g, 'b', g, '{0,1,0}' FROM generate_series(11, 20) g")
        .await;
    let first = lag(|v| v >= 1.0).await;
    let grown = lag(|v| v >= 4.0).await;
    assert_eq!(
        applied(port, &topic(&db)).await,
        10,
        "nothing applied while Qdrant is down"
    );
    println!("apply lag while Qdrant was down: {first:.1} s, then {grown:.1} s");

    q.restart().await;
    wait_applied(port, &topic(&db), 20).await;
    lag(|v| v < 1.0).await;
    applier.stop().await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_through_kafka_removes_orphans_with_no_verify_repair() {
    use qdrant_client::qdrant::{PointStruct, UpsertPointsBuilder};
    let db = TestDb::new("t_kafka_sweep", DOCS).await;
    db.exec("INSERT INTO docs SELECT g, 'row ' || g, g, '{1,0,0}' FROM generate_series(1, 300) g")
        .await;
    let (cfg, path) = kafka_config(&db, &brokers(), false);
    let run = db.start(cfg.clone()).await;
    let applier = apply(cfg.clone());
    wait_count(&db.name, 300).await;
    // Points of rows deleted while no change could be seen (a lost slot, a restore): the
    // stream will never send their deletes.
    let ghosts: Vec<PointStruct> = (900_000u64..900_005)
        .map(|id| {
            let payload = json!({"title": "ghost", "_pg2qdrant": {"table": "public.docs", "lsn": 1, "seq": 0, "key": {"id": id.to_string()}}});
            PointStruct::new(
                id,
                vec![1.0, 0.0, 0.0],
                qdrant_client::Payload::try_from(payload).unwrap(),
            )
        })
        .collect();
    qdrant()
        .upsert_points(UpsertPointsBuilder::new(&db.name, ghosts).wait(true))
        .await
        .unwrap();
    assert_eq!(count(&db.name).await, 305);
    // Rows deleted while the table is copied again, through Kafka only (`direct = false`).
    cli_ok(&["resync", "--table", "docs"], &path);
    for k in 0..7 {
        db.exec(&format!(
            "DELETE FROM docs WHERE id % 7 = {k} AND id % 5 = 0"
        ))
        .await;
    }
    wait_published(&db).await;
    // Every orphan gone, every row's point right, without `verify --repair`.
    wait_equal(&db).await;
    assert_eq!(count(&db.name).await, 240);
    let (code, report) = crate::verify::verify(&path, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["orphaned"], json!(0), "{report}");
    applier.stop().await;
    run.stop().await;
}

/// Adds partitions to `topic` up to `n` (CreatePartitions), as an operator would.
async fn grow_topic(brokers: &str, topic: &str, n: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    let admin: AdminClient<_> = client(brokers).create().unwrap();
    let r = admin
        .create_partitions(&[NewPartitions::new(topic, n)], &AdminOptions::new())
        .await
        .unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_while_running_get_the_truncate_and_are_applied() {
    let db = TestDb::new("t_kafka_grow", DOCS).await;
    let kafka = PrivateKafka::start(&db.name).await;
    let path = work_dir(&db.name).join("config.toml");
    // Clients refresh topic metadata every second (new partitions are seen quickly).
    let text = kafka_text(&db, &kafka.brokers(), false)
        + "properties = { \"topic.metadata.refresh.interval.ms\" = \"1000\" }\n";
    std::fs::write(&path, &text).unwrap();
    let mut cfg = pg2qdrant::config::load(&path).unwrap();
    streamed_only(&mut cfg);
    let run = db.start(cfg.clone()).await;
    let (applier, port) = apply_with_metrics(cfg.clone());
    db.exec("INSERT INTO docs SELECT g, 'before', g, '{1,0,0}' FROM generate_series(1, 30) g")
        .await;
    wait_applied(port, &topic(&db), 30).await;
    grow_topic(&kafka.brokers(), &topic(&db), 5).await;
    // Rows keyed into the added partitions too, once the producer sees them.
    let c = connect(&db.url).await;
    let brokers = kafka.brokers();
    wait_for("rows produced into the added partitions", WAIT, || async {
        let n: i64 = c
            .query_one("SELECT coalesce(max(id), 30) FROM docs", &[])
            .await
            .unwrap()
            .get(0);
        c.batch_execute(&format!(
            "INSERT INTO docs SELECT g, 'before', g, '{{1,0,0}}' FROM generate_series({}, {}) g",
            n + 1,
            n + 10
        ))
        .await
        .unwrap();
        wait_published(&db).await;
        let (t, b) = (topic(&db), brokers.clone());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = client(&b).create().unwrap();
            let high = |p: i32| {
                consumer
                    .fetch_watermarks(&t, p, Duration::from_secs(5))
                    .map_or(0, |(_, h)| h)
            };
            (high(3) > 0 && high(4) > 0).then_some(())
        })
        .await
        .unwrap()
    })
    .await;
    // The applier's consumer sees the new count at its next metadata refresh and rejoins the
    // group, which assigns it all 5 partitions: no member needs to join.
    db.exec("TRUNCATE docs").await;
    db.exec("INSERT INTO docs SELECT g, 'after', g, '{0,1,0}' FROM generate_series(1, 20) g")
        .await;
    wait_published(&db).await;
    let all = read_topic(&brokers, &topic(&db), usize::MAX).await;
    let truncates: BTreeSet<i32> = all
        .iter()
        .filter(|m| m.key().is_none())
        .map(|m| m.partition())
        .collect();
    assert_eq!(
        truncates,
        (0..5).collect(),
        "the TRUNCATE reached the added partitions"
    );
    // The applier consumes the added partitions too: only the rows after the TRUNCATE remain.
    wait_equal(&db).await;
    assert!(
        titles(&db.name)
            .await
            .values()
            .all(|t| t == &json!("after")),
        "rows from before the TRUNCATE in an added partition survived it"
    );
    applier.stop().await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_with_appliers_writing_qdrant_is_refused_naming_the_way() {
    let db = TestDb::new("t_kafka_rebuild", DOCS).await;
    let (_, path) = kafka_config(&db, &brokers(), false);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["rebuild", "--table", "docs", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("qdrant.direct") && stderr.contains("Set qdrant.direct = true"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applier_computes_bm25_vectors_and_verify_compares_them() {
    let db = TestDb::new("t_kafka_bm25", DOCS).await;
    db.exec("INSERT INTO docs VALUES (1, 'copied ticket TCK-1', 1, '{1,0,0}')")
        .await;
    let (cfg, path) = kafka_config_with(
        &db,
        "sparse_vectors = [{ name = \"kw\", kind = \"bm25\", text = \"{title}\" }]",
    );
    let run = db.start(cfg.clone()).await;
    let applier = apply(cfg.clone());
    db.exec("INSERT INTO docs VALUES (2, 'streamed error E42', 2, '{0,1,0}')")
        .await;
    wait_collection(&db).await;
    wait_equal(&db).await;
    // The sparse vector of each point is the BM25 of its title, and verify agrees.
    for (id, title) in [(1u64, "copied ticket TCK-1"), (2, "streamed error E42")] {
        let got = qdrant()
            .get_points(
                qdrant_client::qdrant::GetPointsBuilder::new(&db.name, vec![id.into()])
                    .with_vectors(true),
            )
            .await
            .unwrap()
            .result
            .remove(0)
            .vectors
            .and_then(pg2qdrant::sink::qdrant::mapping::stored_vectors)
            .and_then(|v| v.get("kw"));
        let want = pg2qdrant::mapping::bm25::Bm25::default().document(title);
        assert_eq!(
            got,
            Some(pg2qdrant::event::Vector::Sparse(want)),
            "point {id}"
        );
    }
    let (code, report) = crate::verify::verify(&path, &[]);
    assert_eq!(code, 0, "{report}");
    applier.stop().await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applier_keeps_a_sparsevec_column_sparse_and_exact() {
    // A sparsevec travels in the event as pgvector's text form (it once travelled as the
    // payload's JSON object, which the applier could not read back: every row dead-lettered).
    let db = TestDb::new(
        "t_kafka_sparsevec",
        "CREATE EXTENSION IF NOT EXISTS vector; \
         CREATE TABLE docs (id bigint PRIMARY KEY, title text, n int, v real[], s sparsevec(100));",
    )
    .await;
    db.exec("INSERT INTO docs VALUES (1, 'copied', 1, '{1,0,0}', '{3:0.1,100:-2.5}/100')")
        .await;
    let (cfg, path) = kafka_config_with(
        &db,
        "sparse_vectors = [{ name = \"terms\", column = \"s\" }]",
    );
    let run = db.start(cfg.clone()).await;
    let applier = apply(cfg.clone());
    db.exec(
        "INSERT INTO docs VALUES (2, 'streamed', 2, '{0,1,0}', '{1:1e-30,50:0.33333334}/100'), \
         (3, 'no terms', 3, '{0,0,1}', NULL)",
    )
    .await;
    wait_collection(&db).await;
    // Every row has its point (a dead-lettered one would have none).
    wait_equal(&db).await;
    for (id, want) in [
        (1u64, (vec![2u32, 99], vec![0.1f32, -2.5])),
        (2, (vec![0, 49], vec![1e-30, 0.333_333_34])),
        (3, (vec![], vec![])),
    ] {
        assert_eq!(
            sparse_vector(&db.name, id, "terms").await,
            Some(want),
            "point {id}"
        );
    }
    let (code, report) = crate::verify::verify(&path, &[]);
    assert_eq!(code, 0, "{report}");
    applier.stop().await;
    run.stop().await;
}
