//! TLS to PostgreSQL (every connection, with SCRAM-SHA-256) and to Qdrant (with an API key),
//! against the test cluster's throw-away certificate authority (`scripts/services.sh make_tls`).

use crate::harness::*;
use std::path::PathBuf;

const DOCS: &str = "CREATE TABLE docs (id bigint PRIMARY KEY, title text, n int, v real[]); \
                    INSERT INTO docs SELECT g, 'copied', g, '{1,0,0}' FROM generate_series(1, 5) g;";
const PASSWORD: &str = "tls-user-Pw-1";

fn tls_dir() -> PathBuf {
    PathBuf::from(env("PG2QDRANT_TEST_TLS"))
}

/// `tls_user` (TLS and SCRAM only, see `start_postgres`) owns the test's table.
async fn tls_user(db: &TestDb) {
    // One role for the cluster; tests running at once create it one at a time.
    db.exec(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock(7411); \
         DO $$ BEGIN CREATE ROLE tls_user LOGIN REPLICATION PASSWORD '{PASSWORD}'; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; COMMIT; \
         GRANT CREATE ON DATABASE {} TO tls_user; ALTER TABLE docs OWNER TO tls_user;",
        db.name
    ))
    .await;
}

/// The test's config text as tls_user at `host`, with `tls` and `ca`.
fn tls_config(db: &TestDb, host: &str, tls: &str, ca: &str) -> String {
    let port = pg_base().rsplit(':').next().unwrap().to_owned();
    db.config_text(&table("docs", &db.name, 3, ""), &qdrant_url())
        .replace(
            &format!("url = \"{}\"", db.url),
            &format!(
                "url = \"postgres://tls_user:{PASSWORD}@{host}:{port}/{}\"\ntls = \"{tls}\"\nca_file = \"{}\"",
                db.name,
                tls_dir().join(ca).display()
            ),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_scram_copies_streams_and_verifies_over_tls_only() {
    let db = TestDb::new("t_tls", DOCS).await;
    tls_user(&db).await;
    let text = tls_config(&db, "localhost", "verify-full", "ca.crt");
    let cfg = pg2qdrant::config::parse(&text).unwrap();
    cfg.validate().unwrap();
    let run = db.start(cfg.clone()).await;
    wait_count("t_tls", 5).await;
    db.exec("INSERT INTO docs SELECT g, 'streamed', g, '{0,1,0}' FROM generate_series(6, 10) g")
        .await;
    wait_count("t_tls", 10).await;
    // The replication stream and the ordinary connections (set-up, copy, sampler, heartbeat)
    // are all encrypted; the server refuses tls_user without TLS anyway (pg_hba).
    let row = db
        .client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl), \
                    count(*) FILTER (WHERE a.backend_type = 'walsender') \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.usename = 'tls_user' AND a.datname = $1",
            &[&db.name],
        )
        .await
        .unwrap();
    let (all, encrypted, walsenders): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert!(
        all >= 2 && walsenders == 1,
        "{all} connections, {walsenders} walsenders"
    );
    assert_eq!(encrypted, all, "every connection of tls_user is encrypted");
    // verify opens its own connection the same way.
    let reports = pg2qdrant::verify::run(&cfg, None, false).await.unwrap();
    assert_eq!((reports[0].rows, reports[0].drift()), (10, 0));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_an_ip_host_under_verify_full_fails_naming_what_to_fix() {
    let db = TestDb::new("t_tls_bad", DOCS).await;
    tls_user(&db).await;
    let dir = work_dir(&db.name);
    std::fs::create_dir_all(&dir).unwrap();
    let check = |text: String| check_cli(&dir, &text);
    // A CA that did not sign the server's certificate.
    let (code, out) = check(tls_config(&db, "localhost", "verify-full", "other-ca.crt"));
    assert_eq!(code, Some(1), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("FAIL postgres"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("certificate") && line.contains("source.ca_file"),
        "{line}"
    );
    // verify-ca with the same wrong CA fails the same way; with the right one it passes even
    // though 127.0.0.1 is not checked against the name.
    let (code, out) = check(tls_config(&db, "localhost", "verify-ca", "other-ca.crt"));
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = check(tls_config(&db, "127.0.0.1", "verify-ca", "ca.crt"));
    assert!(out.contains("ok   postgres: reachable"), "{out}");
    assert!(code.is_some());
    // An IP address under verify-full: refused before connecting, with the fix.
    let (code, out) = check(tls_config(&db, "127.0.0.1", "verify-full", "ca.crt"));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("source.tls") && out.contains("DNS name") && out.contains("verify-ca"),
        "{out}"
    );
    // No TLS at all: the server refuses tls_user, and says why.
    let (code, out) = check(tls_config(&db, "localhost", "disable", "ca.crt"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no encryption"), "{out}");
}

/// Qdrant with TLS (the same CA's certificate) and an API key: the connector writes through
/// https with the key; without the key Qdrant refuses and `check` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_over_tls_with_an_api_key() {
    const KEY: &str = "qdrant-test-key";
    let db = TestDb::new("t_tls_qdrant", DOCS).await;
    let dir = work_dir(&db.name).join("qdrant");
    std::fs::create_dir_all(&dir).unwrap();
    let (http, grpc) = (free_port(), free_port());
    let log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let _qdrant = Process(
        std::process::Command::new(env("PG2QDRANT_TEST_QDRANT_BIN"))
            .arg("--disable-telemetry")
            .current_dir(&dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
            .env("QDRANT__SERVICE__ENABLE_TLS", "true")
            .env("QDRANT__SERVICE__API_KEY", KEY)
            .env("QDRANT__TLS__CERT", tls_dir().join("server.crt"))
            .env("QDRANT__TLS__KEY", tls_dir().join("server.key"))
            .env("QDRANT__STORAGE__STORAGE_PATH", dir.join("storage"))
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.join("snapshots"))
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let url = format!("https://localhost:{grpc}");
    let path = work_dir(&db.name).join("config.toml");
    std::fs::write(
        &path,
        db.config_text(&table("docs", "t_tls_qdrant", 3, ""), &url),
    )
    .unwrap();
    // The CA comes from SSL_CERT_FILE (the system's roots otherwise).
    let cli = |args: &[&str], key: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"));
        c.args(args).arg("--config").arg(&path);
        c.env("SSL_CERT_FILE", tls_dir().join("ca.crt"));
        if let Some(k) = key {
            c.env("PG2QDRANT__QDRANT__API_KEY", k);
        }
        c
    };
    let checked = wait_for("qdrant over TLS answers check", WAIT, || async {
        let out = cli(&["check"], Some(KEY)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("ok   qdrant: reachable").then_some(text)
    })
    .await;
    assert!(checked.contains("ok   postgres"), "{checked}");
    let out = cli(&["check"], Some("wrong-key")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        !text.contains("wrong-key"),
        "the key is not printed: {text}"
    );
    let run = {
        let log = std::fs::File::create(path.with_file_name("run.log")).unwrap();
        Process(
            cli(&["run"], Some(KEY))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    db.wait_streaming().await;
    db.exec("INSERT INTO docs SELECT g, 'streamed', g, '{0,1,0}' FROM generate_series(6, 10) g")
        .await;
    // verify reads every point back over TLS with the key.
    wait_for("every row in Qdrant, verified over TLS", WAIT, || async {
        let out = cli(&["verify", "--json"], Some(KEY)).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v[0]["rows"] == 10 && v[0]["points"] == 10 && out.status.success()).then_some(())
    })
    .await;
    run.terminate();
}
