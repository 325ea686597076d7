//! Operating the connector: heartbeat, lag and readiness while Qdrant is down, a prompt stop,
//! secrets kept out of the logs, and the dashboard's and alert rules' expressions evaluated by a
//! real Prometheus against running processes.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DOCS: &str = "CREATE TABLE docs (id bigint PRIMARY KEY, title text, n int, v real[]);";

/// The test's config file against the Qdrant at `qdrant_grpc`, serving metrics on a free port;
/// `source` lines are added to `[source]`. Returns the path and the metrics address.
fn write_config(db: &TestDb, qdrant_grpc: &str, source: &str, extra: &str) -> (PathBuf, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let text = db
        .config_text(&table("docs", &db.name, 3, ""), qdrant_grpc)
        .replace("addr = \"\"", &format!("addr = \"{addr}\""))
        .replace(
            "status_interval_ms = 200\n",
            &format!("status_interval_ms = 200\n{source}\n"),
        )
        + extra;
    let path = work_dir(&db.name).join("config.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    (path, addr)
}

async fn scrape(addr: &str) -> String {
    match http_get(addr, "/metrics").await {
        Some((200, body)) => body,
        other => panic!("GET /metrics: {other:?}"),
    }
}

/// Waits until the metric `series` satisfies `ok`, returning its value.
async fn wait_metric(addr: &str, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    wait_for(&format!("{series} as expected"), WAIT, || async {
        let m = http_get(addr, "/metrics").await?.1;
        metric(&m, series).filter(|v| ok(*v))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_the_slot_advancing_while_only_unwatched_tables_change() {
    let db = TestDb::new(
        "t_heartbeat",
        &format!("{DOCS} CREATE TABLE busy (x int, pad text);"),
    )
    .await;
    let (config, addr) = write_config(
        &db,
        &qdrant_url(),
        "heartbeat_ms = 300\nsnapshot = \"never\"",
        "",
    );
    let _run = Process::start("run", &config, "run.log");
    db.wait_streaming().await;
    // Only the unwatched table changes; the watched one stays idle throughout.
    for round in 0..3 {
        db.exec("INSERT INTO busy SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g")
            .await;
        let target = db.current_lsn_u64().await;
        wait_for(
            &format!("round {round}: the slot confirmed past the busy table's WAL"),
            WAIT,
            || async { (db.confirmed_u64().await >= target).then_some(()) },
        )
        .await;
    }
    // The heartbeat's transactions went through the stream (no watched change made any) and
    // their lag was measured.
    wait_metric(&addr, "pg2qdrant_heartbeats_total", |v| v >= 2.0).await;
    wait_metric(&addr, "pg2qdrant_transactions_total", |v| v >= 2.0).await;
    wait_metric(&addr, "pg2qdrant_commit_to_durable_seconds_count", |v| {
        v >= 2.0
    })
    .await;
    let m = scrape(&addr).await;
    assert_eq!(
        metric(&m, "pg2qdrant_changes_received_total"),
        Some(0.0),
        "no watched change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_bytes_fall_to_a_few_kilobytes_once_caught_up_on_an_idle_table() {
    // A cluster of its own: lag in bytes is the cluster's WAL position minus what we
    // acknowledged, and other tests' writes must not move it. WAL well before the slot, as on a
    // database that lived before the connector: a connector that counts from position 0 until
    // its first acknowledgement reads as that whole WAL behind.
    let pg = PrivatePostgres::start("t_lag_bytes").await;
    let client = connect(&pg.url("postgres")).await;
    client
        .batch_execute(&format!(
            "{DOCS} CREATE TABLE history (x int, pad text);
             INSERT INTO history SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;"
        ))
        .await
        .unwrap();
    let _ = qdrant().delete_collection("t_lag_bytes").await;
    let db = TestDb {
        name: "t_lag_bytes".into(),
        url: pg.url("postgres"),
        client,
    };
    // No heartbeat and an idle watched table: nothing acknowledges anything after the start, so
    // the lag shown is exactly the start's view of the acknowledged position.
    let (config, addr) = write_config(
        &db,
        &qdrant_url(),
        "heartbeat_ms = 0\nsnapshot = \"never\"",
        "",
    );
    let _run = Process::start("run", &config, "run.log");
    // The sampler's first sample, taken as the run starts (the next one comes 5 s later; by
    // then the server's keepalives may have moved the acknowledged position anyway).
    let first = wait_metric(&addr, "pg2qdrant_replication_lag_bytes", |_| true).await;
    db.wait_streaming().await;
    let wal = db.current_lsn_u64().await;
    assert!(wal > 4 << 20, "the WAL is megabytes past 0: {wal}");
    assert!(
        first <= 32_768.0,
        "lag bytes at start: {first} (WAL at {wal}): counted from position 0?"
    );
    // And it stays there while the table is idle.
    let lag = wait_metric(&addr, "pg2qdrant_replication_lag_bytes", |v| v <= 32_768.0).await;
    eprintln!("WAL {wal}: lag {first} bytes at start, {lag} now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_down_grows_lag_and_flips_readiness_then_both_recover() {
    let db = TestDb::new("t_lag", DOCS).await;
    let mut q = PrivateQdrant::start("t_lag").await;
    let (config, addr) = write_config(&db, &q.url(), "heartbeat_ms = 500", "");
    let _run = Process::start("run", &config, "run.log");
    db.wait_streaming().await;
    let insert = |from: i64| {
        format!(
            "INSERT INTO docs SELECT g, 't', g, '{{1,0,0}}' FROM generate_series({from}, {}) g",
            from + 9
        )
    };
    db.exec(&insert(1)).await;
    let client = q.client();
    let count = || async {
        client
            .count(qdrant_client::qdrant::CountPointsBuilder::new("t_lag").exact(true))
            .await
            .ok()
            .map(|r| r.result.map_or(0, |c| c.count))
    };
    wait_for("10 points", WAIT, || async {
        (count().await == Some(10)).then_some(())
    })
    .await;
    wait_for("ready", WAIT, || async {
        (http_get(&addr, "/readyz").await?.0 == 200).then_some(())
    })
    .await;

    q.kill();
    db.exec(&insert(11)).await;
    let why = wait_for("not ready, naming qdrant", WAIT, || async {
        let (status, body) = http_get(&addr, "/readyz").await?;
        (status == 503 && body.contains("qdrant")).then_some(body)
    })
    .await;
    assert!(why.starts_with("not ready"), "{why}");
    assert_eq!(
        http_get(&addr, "/healthz").await.map(|r| r.0),
        Some(200),
        "alive all the same"
    );
    let first = wait_metric(&addr, "pg2qdrant_lag_seconds", |v| v >= 1.0).await;
    let grown = wait_metric(&addr, "pg2qdrant_lag_seconds", |v| v >= first + 3.0).await;
    let peak_bytes = wait_metric(&addr, "pg2qdrant_replication_lag_bytes", |v| v > 0.0).await;
    let m = scrape(&addr).await;
    assert_eq!(metric(&m, "pg2qdrant_ready"), Some(0.0));
    assert_eq!(metric(&m, "pg2qdrant_up{component=\"qdrant\""), Some(0.0));
    assert_eq!(metric(&m, "pg2qdrant_up{component=\"stream\""), Some(1.0));
    println!("lag while Qdrant was down: {first:.1} s, then {grown:.1} s; {peak_bytes} WAL bytes");

    q.restart().await;
    wait_for("20 points", WAIT, || async {
        (count().await == Some(20)).then_some(())
    })
    .await;
    wait_for("ready again", WAIT, || async {
        (http_get(&addr, "/readyz").await?.0 == 200).then_some(())
    })
    .await;
    wait_metric(&addr, "pg2qdrant_lag_seconds", |v| v < 1.0).await;
    wait_metric(&addr, "pg2qdrant_replication_lag_bytes", |v| v < peak_bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_qdrant_down_exits_within_the_grace_and_loses_nothing() {
    let db = TestDb::new("t_stop", DOCS).await;
    let mut q = PrivateQdrant::start("t_stop").await;
    let (config, addr) = write_config(&db, &q.url(), "", "");
    let run = Process::start("run", &config, "run.log");
    db.wait_streaming().await;
    db.exec("INSERT INTO docs SELECT g, 't', g, '{1,0,0}' FROM generate_series(1, 10) g")
        .await;
    wait_metric(&addr, "pg2qdrant_changes_applied_total", |v| v >= 10.0).await;
    q.kill();
    db.exec("INSERT INTO docs SELECT g, 't', g, '{1,0,0}' FROM generate_series(11, 20) g")
        .await;
    // The writer is stuck retrying the new rows.
    wait_metric(
        &addr,
        "pg2qdrant_write_retries_total{sink=\"qdrant\"",
        |v| v >= 1.0,
    )
    .await;
    let mut run = run;
    let asked = Instant::now();
    run.terminate();
    // Orchestrators send SIGKILL 30 s after SIGTERM (Kubernetes' default grace period).
    let status = run
        .exit_within(Duration::from_secs(30), "still running 30 s after SIGTERM")
        .await;
    let took = asked.elapsed();
    println!(
        "exit {status} {:.1} s after SIGTERM with Qdrant down",
        took.as_secs_f64()
    );
    assert!(status.success(), "{status}");
    // Nothing unwritten was acknowledged: a new start writes the 10 rows.
    q.restart().await;
    let _again = Process::start("run", &config, "run2.log");
    wait_count_at(&q.client(), "t_stop", 20).await;
}

/// The process's CPU time so far, in clock ticks (utime + stime of `/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Idle clients past the process's open-files limit: the endpoint keeps answering, no core spins
/// on failed accepts, and the stream (which needs descriptors of its own) goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_open_files_limit_starve_neither_the_endpoint_nor_the_stream() {
    let db = TestDb::new("t_fd_starve", DOCS).await;
    let (config, addr) = write_config(&db, &qdrant_url(), "", "");
    let log = std::fs::File::create(config.with_file_name("run.log")).unwrap();
    let run = Process(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 256 && exec \"$0\" run --config \"$1\"")
            .arg(env!("CARGO_BIN_EXE_pg2qdrant"))
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    db.wait_streaming().await;
    db.exec("INSERT INTO docs SELECT g, 't', g, '{1,0,0}' FROM generate_series(1, 10) g")
        .await;
    wait_count(&db.name, 10).await;
    // 300 connections that never send a request, held open by this test.
    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = tokio::net::TcpStream::connect(&addr).await {
            idle.push(s);
        }
    }
    assert_eq!(idle.len(), 300);
    wait_for("/metrics answers", WAIT, || async {
        matches!(http_get(&addr, "/metrics").await, Some((200, _))).then_some(())
    })
    .await;
    // The stream goes on: new rows land and the slot (with the checkpoint) moves past them.
    db.exec("INSERT INTO docs SELECT g, 't', g, '{0,1,0}' FROM generate_series(11, 60) g")
        .await;
    let end = db.current_lsn_u64().await;
    wait_count(&db.name, 60).await;
    wait_for("the slot acknowledged the rows", WAIT, || async {
        (db.confirmed_u64().await >= end).then_some(())
    })
    .await;
    // No core spins: over 2 s the process used well under one core (a loop of failed accepts
    // takes all of it).
    let before = cpu_ticks(run.0.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(run.0.id()) - before;
    assert!(
        used < 100,
        "{used} ticks of CPU in 2 s with idle clients connected"
    );
    assert!(matches!(http_get(&addr, "/healthz").await, Some((200, _))));
    drop(idle);
    run.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_log_line_or_error_json_or_text() {
    const PG_PASSWORD: &str = "pg-S3cret-0xA1";
    const API_KEY: &str = "qd-ApiKey-0xB2";
    const SASL: &str = "sasl-Pass-0xC3";
    let db = TestDb::new("t_secrets", DOCS).await;
    // A role with a password, used by the connector's source URL.
    db.exec(&format!(
        "DO $$ BEGIN CREATE ROLE t_secrets_user LOGIN REPLICATION PASSWORD '{PG_PASSWORD}'; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         GRANT ALL ON ALL TABLES IN SCHEMA public TO t_secrets_user; \
         GRANT CREATE ON DATABASE t_secrets TO t_secrets_user; \
         ALTER TABLE docs OWNER TO t_secrets_user;"
    ))
    .await;
    let (config, _) = write_config(
        &db,
        &qdrant_url(),
        "",
        &format!(
            "[log]\nformat = \"json\"\n[kafka]\nbrokers = \"127.0.0.1:{}\"\n\
             properties = {{ \"security.protocol\" = \"sasl_plaintext\", \"sasl.mechanism\" = \"PLAIN\", \"sasl.username\" = \"u\" }}\n",
            free_port()
        ),
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "postgres://postgres@",
        &format!("postgres://t_secrets_user:{PG_PASSWORD}@"),
    );
    std::fs::write(&config, text).unwrap();
    let secrets = [
        ("PG2QDRANT__QDRANT__API_KEY", API_KEY),
        ("PG2QDRANT__KAFKA__PROPERTIES__SASL_PASSWORD", SASL),
    ];
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .envs(secrets.iter().copied().chain(extra.iter().copied()))
            .env("PG2QDRANT_LOG", "debug")
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let mut lines = Vec::new();
    // `run` fails (Qdrant refuses no key; the broker is not there): set-up retries are logged
    // with their errors. It is stopped after a few seconds.
    lines.push(run_until_retrying(&config, &secrets).await);
    lines.push(run(&["check"], &[]));
    lines.push(run(&["verify"], &[]));
    // Errors naming a bad value of a secret key, and a config error.
    lines.push(run(
        &["check"],
        &[(
            "PG2QDRANT__SOURCE__URL",
            &format!("postgres://u:{PG_PASSWORD}@127.0.0.1:1/x"),
        )],
    ));
    lines.push(run(
        &["run"],
        &[(
            "PG2QDRANT__SOURCE__URL",
            &format!("postgres://u:{PG_PASSWORD}@[::1"),
        )],
    ));
    let all = lines.join("\n");
    assert!(all.lines().count() > 10, "the runs logged: {all}");
    for (name, secret) in [
        ("password", PG_PASSWORD),
        ("api key", API_KEY),
        ("sasl", SASL),
    ] {
        assert!(
            !all.contains(secret),
            "the {name} appears in the output:\n{}",
            all.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The run's log is JSON, one object per line.
    let json_lines: Vec<&str> = lines[0].lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!json_lines.is_empty());
    for l in json_lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{l}");
    }
}

/// Runs `pg2qdrant run` until it logged a set-up retry (with its error), then SIGTERM; asserts
/// that it exits 0 within the deadline, and returns its output.
async fn run_until_retrying(config: &Path, env: &[(&str, &str)]) -> String {
    let log = config.with_file_name("run-secrets.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["run", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env("PG2QDRANT_LOG", "debug")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let mut p = Process(child);
    let output = || {
        std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
    };
    wait_for("a set-up retry in the log", WAIT, || async {
        output().contains("failed; retrying").then_some(())
    })
    .await;
    p.terminate();
    let status = p
        .exit_within(WAIT, "the run did not exit after SIGTERM")
        .await;
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        output()
    );
    output()
}

/// Every `pg2qdrant_*` name the dashboard and the alert rules use is in the metrics catalogue
/// (histograms with their `_bucket`/`_count`/`_sum` series): a renamed metric fails here.
#[test]
fn every_metric_the_dashboard_and_the_alert_rules_name_is_in_the_catalogue() {
    let catalogue = include_str!("../src/metrics/mod.rs");
    let known: std::collections::BTreeSet<&str> = catalogue
        .split('"')
        .filter(|s| s.starts_with("pg2qdrant_"))
        .collect();
    assert!(known.len() > 40, "{known:?}");
    let mut used = Vec::new();
    for (file, expressions) in expressions() {
        for e in expressions {
            for name in metric_names(&e) {
                used.push(name.clone());
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| known.contains(b))
                    .unwrap_or(&name);
                assert!(
                    known.contains(base),
                    "{file}: {name} is not in src/metrics/mod.rs ({e})"
                );
            }
        }
    }
    assert!(used.len() > 30, "{used:?}");
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("pg2qdrant_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The dashboard's panel expressions (Grafana variables replaced by what Prometheus takes) and
/// the alert rules' expressions, by file.
fn expressions() -> Vec<(&'static str, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("dashboards/pg2qdrant.json")).unwrap(),
    )
    .unwrap();
    let panels: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$job", ".+")
                .replace("$__rate_interval", "30s")
        })
        .collect();
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    let mut alerts = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(l) = lines.next() {
        let Some(e) = l.trim().strip_prefix("expr:") else {
            continue;
        };
        let mut e = e.trim().to_owned();
        if e == ">-" {
            e.clear();
            while let Some(next) = lines.next_if(|n| n.starts_with("          ")) {
                e.push_str(next.trim());
                e.push(' ');
            }
        }
        alerts.push(e.trim().to_owned());
    }
    vec![
        ("dashboards/pg2qdrant.json", panels),
        ("deploy/prometheus/alerts.yml", alerts),
    ]
}

/// Prometheus (Debian's package) scrapes a connector that publishes to Kafka and embeds text,
/// and an applier, with the repo's scrape config and rules: every panel expression returns series
/// while changes flow, and every rule evaluates without error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_dashboard_panel_and_alert_rule() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let db = TestDb::new(
        "t_prom",
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text); \
         INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;",
    )
    .await;
    let p = format!("t_prom_{}", std::process::id());
    let table = format!(
        "[[tables]]\ntable = \"notes\"\ncollection = \"t_prom\"\n\
         vector = {{ embed = \"minilm\", text = \"{{body}}\", size = 384, distance = \"Cosine\" }}\n\
         [[embedders]]\nname = \"minilm\"\npath = \"{}\"\nthreads = 1\n\
         [kafka]\nbrokers = \"{}\"\ntopic_template = \"{p}.{{schema}}.{{table}}\"\npartitions = 2\n\
         group_id = \"{p}\"\ndlq_topic = \"{p}.dlq\"\n",
        env("PG2QDRANT_TEST_MODEL"),
        env("PG2QDRANT_TEST_KAFKA")
    );
    let run_addr = format!("127.0.0.1:{}", free_port());
    let apply_addr = format!("127.0.0.1:{}", free_port());
    let dir = work_dir("t_prom");
    std::fs::create_dir_all(&dir).unwrap();
    let base = db.config_text(&table, &qdrant_url()).replace(
        "status_interval_ms = 200\n",
        "status_interval_ms = 200\nheartbeat_ms = 1000\n",
    );
    let run_cfg = dir.join("run.toml");
    std::fs::write(
        &run_cfg,
        base.replace("addr = \"\"", &format!("addr = \"{run_addr}\"")),
    )
    .unwrap();
    let apply_cfg = dir.join("apply.toml");
    std::fs::write(
        &apply_cfg,
        base.replace("addr = \"\"", &format!("addr = \"{apply_addr}\""))
            .replace("deadletter.jsonl", "apply-deadletter.jsonl"),
    )
    .unwrap();
    let _run = Process::start("run", &run_cfg, "run.log");
    wait_count("t_prom", 50).await;
    let _apply = Process::start("apply", &apply_cfg, "apply.log");
    // Its report feeds the verify gauges (drift or not: writes may be in flight).
    std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["verify", "--config"])
        .arg(&run_cfg)
        .output()
        .unwrap();

    // The repo's scrape config, pointed at loopback and scraping every second.
    let prom_port = free_port();
    let scrape = std::fs::read_to_string(root.join("deploy/prometheus/prometheus.yml"))
        .unwrap()
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("pg2qdrant:9187", &run_addr)
        .replace("pg2qdrant-apply:9187", &apply_addr)
        .replace(
            "/etc/prometheus/alerts.yml",
            &root
                .join("deploy/prometheus/alerts.yml")
                .display()
                .to_string(),
        );
    assert!(scrape.contains(&run_addr) && scrape.contains(&apply_addr));
    let prom_cfg = dir.join("prometheus.yml");
    std::fs::write(&prom_cfg, scrape).unwrap();
    for args in [
        vec!["check", "config", prom_cfg.to_str().unwrap()],
        vec![
            "check",
            "rules",
            root.join("deploy/prometheus/alerts.yml").to_str().unwrap(),
        ],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _prom = Process(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
            .spawn()
            .expect("prometheus (scripts/services.sh installs Debian's package)"),
    );
    let prom = format!("127.0.0.1:{prom_port}");
    wait_for("prometheus ready", WAIT, || async {
        (http_get(&prom, "/-/ready").await?.0 == 200).then_some(())
    })
    .await;

    // Changes flow meanwhile: inserts, updates and deletes.
    let writer = {
        let url = db.url.clone();
        tokio::spawn(async move {
            let c = connect(&url).await;
            for i in 0..120i64 {
                let id = 1000 + i;
                c.batch_execute(&format!(
                    "INSERT INTO notes VALUES ({id}, 'fresh note {id}'); \
                     UPDATE notes SET body = body || ' (edited)' WHERE id = {}; \
                     DELETE FROM notes WHERE id = {};",
                    i % 50 + 1,
                    id - 1
                ))
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let panels = expressions().remove(0).1;
    let mut empty = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        empty.clear();
        for e in &panels {
            match query(&prom, e).await {
                Ok(0) => empty.push(e.clone()),
                Ok(_) => {}
                Err(err) => panic!("dashboard expression does not evaluate: {e}: {err}"),
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        empty.is_empty(),
        "panel expressions without series while changes flow:\n{}",
        empty.join("\n")
    );
    println!("{} panel expressions return series", panels.len());

    // Every rule was evaluated, without error.
    let rules = wait_for("every rule evaluated", Duration::from_secs(60), || async {
        let (status, body) = http_get(&prom, "/api/v1/rules").await?;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let rules: Vec<serde_json::Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules
            .iter()
            .all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
            .then_some(rules)
    })
    .await;
    assert_eq!(rules.len(), 9, "every rule of alerts.yml is loaded");
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {} : {}", r["name"], r["lastError"]);
    }
    for e in expressions().remove(1).1 {
        query(&prom, &e)
            .await
            .unwrap_or_else(|err| panic!("alert expression does not evaluate: {e}: {err}"));
    }
    // Healthy and flowing: no alert fires.
    let (_, alerts) = http_get(&prom, "/api/v1/alerts").await.unwrap();
    assert!(!alerts.contains("\"state\":\"firing\""), "{alerts}");
    writer.abort();
}

/// Evaluates `expr` now through Prometheus's HTTP API: the number of series, or the error.
async fn query(prom: &str, expr: &str) -> Result<usize, String> {
    let mut q = String::new();
    for b in expr.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            q.push(b as char);
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    let (status, body) = http_get(prom, &format!("/api/v1/query?query={q}"))
        .await
        .ok_or("prometheus does not answer")?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 || v["status"] != "success" {
        return Err(body);
    }
    Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
}

/// docker-compose.yml cannot run here (no Docker engine): what can go wrong silently is checked
/// by reading. The image's config with the Dockerfile's and each pg2qdrant service's overrides
/// loads and validates; Prometheus scrapes those services on the port the image serves metrics
/// on; Grafana is provisioned with the dashboard and a Prometheus data source.
#[test]
fn the_compose_stack_configures_pg2qdrant_prometheus_and_grafana_consistently() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let compose = read("docker-compose.yml");
    let dockerfile = read("Dockerfile");
    let image_config = read("config/chat_history.toml");
    assert!(dockerfile.contains("COPY config/chat_history.toml /etc/pg2qdrant/chat_history.toml"));
    assert!(
        dockerfile.contains("USER pg2qdrant"),
        "the runtime image is not root"
    );
    // ENV lines of the Dockerfile's last stage: `KEY=value` pairs.
    let image_env: Vec<(String, String)> = dockerfile
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| k.starts_with("PG2QDRANT__"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(image_env
        .iter()
        .any(|(k, _)| k == "PG2QDRANT__METRICS__ADDR"));
    // `environment:` maps of compose: `KEY: value` lines.
    let service_env: Vec<(String, String)> = compose
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.starts_with("PG2QDRANT__"))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    assert!(service_env.len() >= 4, "{service_env:?}");
    let cfg =
        pg2qdrant::config::with_env(&image_config, image_env.iter().chain(&service_env).cloned())
            .unwrap_or_else(|e| panic!("compose overrides: {e}"));
    cfg.validate().unwrap();
    assert_eq!(cfg.metrics.addr, "0.0.0.0:9187");
    assert!(cfg.kafka.is_some() && !cfg.qdrant.direct);
    for command in [
        "[\"run\", \"--config\", \"/etc/pg2qdrant/chat_history.toml\"]",
        "[\"apply\", \"--config\", \"/etc/pg2qdrant/chat_history.toml\"]",
    ] {
        assert!(compose.contains(command), "{command}");
    }
    let scrape = read("deploy/prometheus/prometheus.yml");
    for service in ["pg2qdrant", "pg2qdrant-apply"] {
        assert!(
            compose.contains(&format!("\n  {service}:\n")),
            "service {service}"
        );
        assert!(
            scrape.contains(&format!("\"{service}:9187\"")),
            "target {service}:9187"
        );
    }
    assert!(compose.contains("./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml"));
    assert!(scrape.contains("/etc/prometheus/alerts.yml"));
    assert!(compose.contains("./dashboards:/var/lib/grafana/dashboards"));
    assert!(read("deploy/grafana/provisioning/dashboards/pg2qdrant.yml")
        .contains("/var/lib/grafana/dashboards"));
    assert!(
        read("deploy/grafana/provisioning/datasources/prometheus.yml")
            .contains("http://prometheus:9090")
    );
    assert!(compose.contains("wal_level=logical"));
    assert!(compose.contains("./sql/chat_schema.sql:/docker-entrypoint-initdb.d/"));
}

/// Rows whose vector column was wrong for the collection are parked; the mapping is fixed (the
/// vector now comes from the right column) and `dead-letter replay` applies exactly the rows that
/// map now, leaves the one that still does not (with today's reason), and `list` no longer shows
/// what was replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_replay_applies_the_rows_whose_cause_was_fixed() {
    let db = TestDb::new(
        "t_replay",
        "CREATE TABLE docs (id bigint PRIMARY KEY, title text, v real[], v3 real[]);",
    )
    .await;
    let wrong = table("docs", "t_replay", 3, "");
    let mut cfg = db.config(&wrong);
    cfg.source.snapshot = pg2qdrant::config::SnapshotMode::Never;
    let dl = cfg.dead_letter.path.clone();
    let run = db.start(cfg.clone()).await;
    db.exec(
        "INSERT INTO docs VALUES (1, 'short', '{1,2}', '{1,0,0}'), (2, 'good', '{0,1,0}', '{0,1,0}'), \
         (3, 'short both', '{1,2}', '{1,2}'), (4, 'short', '{3,4}', '{0,0,1}')",
    )
    .await;
    wait_count("t_replay", 1).await;
    wait_for("three dead letters", WAIT, || async {
        let n = std::fs::read_to_string(&dl)
            .unwrap_or_default()
            .lines()
            .count();
        (n == 3).then_some(())
    })
    .await;
    run.stop().await;

    // The fix: the vector comes from v3.
    let fixed = db.config_text(
        &wrong.replace("column = \"v\"", "column = \"v3\""),
        &qdrant_url(),
    );
    let path = work_dir(&db.name).join("fixed.toml");
    std::fs::write(&path, &fixed).unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
            .args(args)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, listed) = cli(&["dead-letter", "list"]);
    assert_eq!(code, Some(1), "{listed}");
    assert!(listed.contains("3 × public.docs: "), "{listed}");
    // Which rows: their keys, under their table and reason.
    assert!(
        listed.contains(r#"keys: {"id":"1"}, {"id":"3"}, {"id":"4"}"#),
        "{listed}"
    );

    let (code, out) = cli(&["dead-letter", "replay"]);
    assert_eq!(code, Some(1), "one row still fails: {out}");
    assert!(
        out.contains("public.docs: 2 replayed, 1 still failing"),
        "{out}"
    );
    assert!(out.contains("{\"id\":\"3\"}"), "{out}");
    let p1 = point("t_replay", 1).await.expect("row 1 applied");
    assert_eq!(p1.vector, Some(vec![1.0, 0.0, 0.0]));
    assert_eq!(p1.payload["title"], serde_json::json!("short"));
    assert_eq!(
        point("t_replay", 4).await.expect("row 4 applied").vector,
        Some(vec![0.0, 0.0, 1.0])
    );
    assert!(point("t_replay", 3).await.is_none());
    assert_eq!(count("t_replay").await, 3);

    // What was replayed is gone from the list (the file itself is only appended to).
    let (code, listed) = cli(&["dead-letter", "list"]);
    assert_eq!(code, Some(1), "{listed}");
    assert!(listed.contains("1 × public.docs: "), "{listed}");
    assert_eq!(std::fs::read_to_string(&dl).unwrap().lines().count(), 3);

    // Row 3 fixed in PostgreSQL while the connector is stopped: the next replay marks it too.
    db.exec("UPDATE docs SET v3 = '{0,1,1}' WHERE id = 3").await;
    let (code, out) = cli(&["dead-letter", "replay", "--table", "docs"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        point("t_replay", 3).await.expect("row 3 applied").vector,
        Some(vec![0.0, 1.0, 1.0])
    );
    let (code, listed) = cli(&["dead-letter", "list"]);
    assert_eq!(code, Some(0), "{listed}");
}
