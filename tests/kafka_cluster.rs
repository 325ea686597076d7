//! Kafka as users run it: a 3-broker cluster losing a broker under load, and SASL/SCRAM over
//! TLS end to end (publisher, appliers, dead-letter topic). Private brokers of each test's own.

use crate::harness::*;
use crate::kafka::{
    apply, apply_process, brokers, client, kafka_text, kafka_text_for, prefix, read_topic,
    streamed_only, topic, wait_collection, wait_equal, wait_published, DOCS,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_of_three_sigkilled_under_load_loses_nothing_and_keeps_key_order() {
    let db = TestDb::new("t_kafka_cluster", DOCS).await;
    let mut kafka = PrivateKafka::start_cluster(&db.name, 3).await;
    let path = work_dir(&db.name).join("config.toml");
    // Every topic on all three brokers; a write counts once two have it (the brokers'
    // min.insync.replicas). A dead member's session ends after 6 s.
    let text = kafka_text(&db, &kafka.brokers(), false)
        + "replication_factor = 3\nproperties = { \"session.timeout.ms\" = \"6000\" }\n";
    std::fs::write(&path, &text).unwrap();
    let mut cfg = pg2qdrant::config::load(&path).unwrap();
    streamed_only(&mut cfg);
    let run = db.start(cfg).await;
    let mut a = apply_process(&path, "applier-a.log");
    let mut b = apply_process(&path, "applier-b.log");
    let load = tokio::spawn(crate::kafka::writes(
        db.url.clone(),
        150,
        Duration::from_millis(50),
    ));
    wait_for("changes being applied", WAIT, || async {
        (count(&db.name).await >= 100).then_some(())
    })
    .await;
    // The first broker: the one every client bootstraps from, and a leader of some partitions.
    assert!(!load.is_finished(), "the broker dies mid-load");
    kafka.kill_node(0);
    load.await.unwrap();
    wait_published(&db).await;
    wait_equal(&db).await;
    let rows = crate::kafka::rows(&db).await;
    assert!(rows > 300, "{rows} rows");
    let (code, report) = crate::verify::verify(&path, &[]);
    assert_eq!(code, 0, "{report}");
    // The broker comes back and catches up; the stream goes on through it.
    kafka.restart_node(0).await;
    db.exec("UPDATE docs SET title = 'after' WHERE id <= 100")
        .await;
    wait_published(&db).await;
    wait_equal(&db).await;
    for (name, applier) in [("a", &mut a), ("b", &mut b)] {
        assert!(
            applier.0.try_wait().unwrap().is_none(),
            "applier {name} ran through the loss"
        );
    }
    run.stop().await;
}

/// A PKCS#12 keystore of the test CA's server certificate (CN localhost, 127.0.0.1), for the
/// broker's TLS listener: (path, password).
fn keystore(dir: &std::path::Path) -> (std::path::PathBuf, &'static str) {
    let tls = std::path::PathBuf::from(env("PG2QDRANT_TEST_TLS"));
    let path = dir.join("broker.p12");
    std::fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:keystore-pass", "-in"])
        .arg(tls.join("server.crt"))
        .arg("-inkey")
        .arg(tls.join("server.key"))
        .arg("-out")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (path, "keystore-pass")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_over_tls_publishes_applies_and_dead_letters_and_a_wrong_password_is_named() {
    let db = TestDb::new("t_kafka_sasl", DOCS).await;
    let dir = work_dir(&db.name);
    let (store, store_pass) = keystore(&dir);
    let sasl = free_port();
    let kafka = PrivateKafka::start_with(
        &db.name,
        1,
        vec![
            format!("listeners=PLAINTEXT://127.0.0.1:{{port}},CONTROLLER://127.0.0.1:{{controller}},SASL_SSL://127.0.0.1:{sasl}"),
            format!("advertised.listeners=PLAINTEXT://127.0.0.1:{{port}},SASL_SSL://127.0.0.1:{sasl}"),
            "sasl.enabled.mechanisms=SCRAM-SHA-512".into(),
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
            "ssl.keystore.type=PKCS12".into(),
            format!("ssl.keystore.location={}", store.display()),
            format!("ssl.keystore.password={store_pass}"),
        ],
        Some("SCRAM-SHA-512=[name=pg2qdrant,password=right-secret]".into()),
    )
    .await;
    let ca = std::path::PathBuf::from(env("PG2QDRANT_TEST_TLS")).join("ca.crt");
    // The connector and its appliers reach the broker only through SASL_SSL; the password
    // comes from the environment, as docs/kafka.md says.
    let config = |password: &str| {
        kafka_text(&db, &format!("localhost:{sasl}"), false)
            + &format!(
                "properties = {{ \"security.protocol\" = \"sasl_ssl\", \"sasl.mechanism\" = \"SCRAM-SHA-512\", \
                 \"sasl.username\" = \"pg2qdrant\", \"sasl.password\" = \"{password}\", \"ssl.ca.location\" = \"{}\" }}\n",
                ca.display()
            )
    };
    let path = dir.join("config.toml");
    std::fs::write(&path, config("right-secret")).unwrap();
    let mut cfg = pg2qdrant::config::load(&path).unwrap();
    streamed_only(&mut cfg);
    let run = db.start(cfg).await;
    let _applier = apply_process(&path, "applier.log");
    db.exec("INSERT INTO docs SELECT g, 't', g, '{1,0,0}' FROM generate_series(1, 300) g")
        .await;
    db.exec("UPDATE docs SET title = 'u' WHERE id % 3 = 0; DELETE FROM docs WHERE id % 10 = 0")
        .await;
    wait_published(&db).await;
    wait_equal(&db).await;
    // Garbage on the topic (written through the plain listener): the applier parks it on the
    // dead-letter topic, which it writes through SASL_SSL too.
    let plain = kafka.brokers();
    let producer: FutureProducer = client(&plain).create().unwrap();
    producer
        .send(
            FutureRecord::to(&topic(&db))
                .key("x")
                .payload(&b"\xffnot an event"[..]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let dlq = read_topic(&plain, &format!("{}.dlq", prefix(&db)), 1).await;
    assert_eq!(dlq.len(), 1);
    run.stop().await;
    // A wrong password: `check` and `run` name the credentials and the settings to fix.
    let wrong = work_dir(&format!("{}/wrong", db.name));
    let (code, report) = check_cli(&wrong, &config("wrong-secret"));
    assert_ne!(code, Some(0), "{report}");
    assert!(
        report.lines().any(|l| l.starts_with("FAIL kafka:")
            && l.contains("refused the client's credentials")
            && l.contains("sasl.password")),
        "check names Kafka's refusal and the fix:\n{report}"
    );
    let mut run = Process::start("run", &wrong.join("config.toml"), "run.log");
    let status = run
        .exit_within(WAIT, "run with a wrong password did not stop")
        .await;
    let log = std::fs::read_to_string(wrong.join("run.log")).unwrap();
    assert_eq!(status.code(), Some(2), "a config error: {log}");
    assert!(
        log.contains("refused the client's credentials") && log.contains("sasl.password"),
        "{log}"
    );
}

/// A table added to a running deployment, as an operator does it: the table goes into the config
/// of the publisher and of the appliers, and each is restarted. The publisher creates the new
/// table's topic and copies the table through it; the applier applies it; the first table's
/// changes go on through the restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_added_to_publisher_and_applier_gets_its_topic_copied_and_applied() {
    let db = TestDb::new(
        "t_kafka_add_table",
        &format!("{DOCS} CREATE TABLE notes (id bigint PRIMARY KEY, title text, n int, v real[]);"),
    )
    .await;
    db.exec("INSERT INTO notes SELECT g, 'note ' || g, g, '{0,0,1}' FROM generate_series(1, 50) g")
        .await;
    let notes = format!("{}_notes", db.name);
    let docs_only = table("docs", &db.name, 3, "");
    let both = docs_only.clone() + &table("notes", &notes, 3, "");
    let config = |tables: &str| {
        let mut cfg =
            pg2qdrant::config::parse(&kafka_text_for(&db, tables, &brokers(), false)).unwrap();
        streamed_only(&mut cfg);
        cfg
    };
    let run = db.start(config(&docs_only)).await;
    let applier = apply(config(&docs_only));
    wait_collection(&db).await;
    db.exec("INSERT INTO docs SELECT g, 'd', g, '{1,0,0}' FROM generate_series(1, 100) g")
        .await;
    wait_equal(&db).await;
    // The operator adds `notes`: publisher first, then the applier.
    run.stop().await;
    let mut with_notes = config(&both);
    // With the default `snapshot = "initial"`, a table new to the config is copied at its first
    // start (docs, never copied, is copied too: its points are written again, fenced).
    with_notes.source.snapshot = pg2qdrant::config::SnapshotMode::Initial;
    let run = db.start(with_notes.clone()).await;
    db.exec("INSERT INTO docs SELECT g, 'd', g, '{1,0,0}' FROM generate_series(101, 150) g; UPDATE notes SET title = 'edited' WHERE id <= 5")
        .await;
    applier.stop().await;
    let applier = apply(with_notes);
    wait_equal(&db).await;
    wait_for("every note applied from its new topic", WAIT, || async {
        if !qdrant().collection_exists(&notes).await.ok()? {
            return None;
        }
        let points = all_points(&notes).await;
        let edited = points
            .iter()
            .filter(|(_, p)| p.payload["title"] == serde_json::json!("edited"))
            .count();
        (points.len() == 50 && edited == 5).then_some(())
    })
    .await;
    applier.stop().await;
    run.stop().await;
}
