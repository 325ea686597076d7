//! Vectors computed from text by the local embedder, streamed and copied.

use crate::harness::*;
use pg2qdrant::embed::LocalEmbedder;
use serde_json::json;

pub const NOTES: &str = "CREATE TABLE notes (id bigint PRIMARY KEY, title text, body text, n int);";

pub fn embedder_toml() -> String {
    format!(
        "[[embedders]]\nname = \"minilm\"\npath = \"{}\"\nthreads = 2\n",
        env("PG2QDRANT_TEST_MODEL")
    )
}

/// The config of `db` with its notes table embedded by minilm into `collection`.
fn notes_config(db: &TestDb, collection: &str) -> pg2qdrant::config::Config {
    db.config(&format!(
        "{}{}",
        notes_table(collection, 384),
        embedder_toml()
    ))
}

fn notes_table(collection: &str, size: u64) -> String {
    format!(
        "[[tables]]\ntable = \"notes\"\ncollection = \"{collection}\"\n\
         vector = {{ embed = \"minilm\", text = \"{{title}}\\n{{body}}\", size = {size}, distance = \"Cosine\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_columns_are_embedded_when_copied_and_when_streamed() {
    let db = TestDb::new(
        "t_embed_text",
        &format!("{NOTES} INSERT INTO notes VALUES (1, 'Password reset', 'How do I reset my password?', 1);"),
    )
    .await;
    let cfg = notes_config(&db, "t_embed_text");
    let run = db.start(cfg).await;
    db.exec(
        "INSERT INTO notes VALUES (2, 'Lunch', 'Can you recommend a good pizza place nearby?', 2)",
    )
    .await;
    wait_count("t_embed_text", 2).await;
    let model = LocalEmbedder::load(std::path::Path::new(&env("PG2QDRANT_TEST_MODEL")), 2).unwrap();
    let want = |text: &str| model.embed(&[text]).unwrap().vectors.remove(0);
    for (id, text) in [
        (1, "Password reset\nHow do I reset my password?"),
        (2, "Lunch\nCan you recommend a good pizza place nearby?"),
    ] {
        let p = point("t_embed_text", id).await.expect("point");
        let c = cosine(p.vector.as_ref().expect("a vector"), &want(text));
        assert!(c > 0.9999, "point {id}: cosine {c} to its text's embedding");
        assert_eq!(
            p.payload["_pg2qdrant"]["embedded"]["vector"]["model"],
            json!(model.identity())
        );
        assert_eq!(p.payload["title"], json!(text.split('\n').next().unwrap()));
    }
    // A changed text gets a new vector.
    db.exec("UPDATE notes SET body = 'I forgot my login credentials and need to change them.' WHERE id = 1")
        .await;
    let new = want("Password reset\nI forgot my login credentials and need to change them.");
    let p = wait_for("the new vector", WAIT, || async {
        point("t_embed_text", 1)
            .await
            .filter(|p| p.vector.as_ref().is_some_and(|v| cosine(v, &new) > 0.9999))
    })
    .await;
    assert_eq!(
        p.payload["body"],
        json!("I forgot my login credentials and need to change them.")
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_size_that_differs_from_the_model_is_refused_naming_the_field() {
    let db = TestDb::new("t_embed_size", NOTES).await;
    let cfg = db.config(&format!(
        "{}{}",
        notes_table("t_embed_size", 3),
        embedder_toml()
    ));
    let err = pg2qdrant::run(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tables[0].vector.size") && err.contains("384"),
        "{err}"
    );
}

/// `name{embedder="<embedder>"} value` from /metrics, 0 when absent.
pub async fn counter(port: u16, name: &str, embedder: &str) -> f64 {
    let body = crate::chat::http_get(port, "/metrics").await;
    body.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("embedder=\"{embedder}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_text_is_never_embedded_again() {
    let db = TestDb::new("t_embed_unchanged", NOTES).await;
    let port = free_port();
    // Its own embedder name: the metrics of every test in this process share one registry.
    let mut cfg = db.config(&format!(
        "{}{}",
        notes_table("t_embed_unchanged", 384).replace("\"minilm\"", "\"minilm_unchanged\""),
        embedder_toml().replace("\"minilm\"", "\"minilm_unchanged\"")
    ));
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    let run = db.start(cfg).await;
    let embedded = || counter(port, "pg2qdrant_embeddings_total", "minilm_unchanged");
    let wait_n = |id: u64, n: i64| async move {
        wait_for(&format!("n = {n} on {id}"), WAIT, || async {
            point("t_embed_unchanged", id)
                .await
                .filter(|p| p.payload["n"] == json!(n))
        })
        .await
    };
    // Row 1's body is long enough to be stored out of line (TOAST); row 2's is inline.
    db.exec(
        "INSERT INTO notes SELECT 1, 'Long', string_agg(md5(i::text), ' '), 1 FROM generate_series(1, 300) i; \
         INSERT INTO notes VALUES (2, 'Short', 'A short body.', 1)",
    )
    .await;
    wait_count("t_embed_unchanged", 2).await;
    assert_eq!(embedded().await, 2.0);
    // Another column of row 1 changes: its body comes as an unchanged TOAST value, so there is
    // no text at all; the vector stays.
    db.exec("UPDATE notes SET n = 2 WHERE id = 1").await;
    wait_n(1, 2).await;
    // Another column of row 2 changes: its text comes whole, hashes the same, is not embedded.
    db.exec("UPDATE notes SET n = 3 WHERE id = 2").await;
    let p = wait_n(2, 3).await;
    assert_eq!(embedded().await, 2.0, "no embedding for unchanged text");
    assert!(counter(port, "pg2qdrant_embed_unchanged_total", "minilm_unchanged").await >= 1.0);
    assert!(p.vector.is_some(), "the stored vector was kept");
    // The text changes: one embedding.
    db.exec("UPDATE notes SET body = 'Another body now.' WHERE id = 2")
        .await;
    wait_for("the new body", WAIT, || async {
        point("t_embed_unchanged", 2)
            .await
            .filter(|p| p.payload["body"] == json!("Another body now."))
    })
    .await;
    assert_eq!(embedded().await, 3.0);
    assert_eq!(
        counter(port, "pg2qdrant_embed_truncated_total", "minilm_unchanged").await,
        1.0,
        "the long body was cut at 256 word pieces"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toast_merge_keeps_the_record_of_the_text_it_did_not_embed() {
    let db = TestDb::new("t_embed_toast_record", NOTES).await;
    let run = db.start(notes_config(&db, "t_embed_toast_record")).await;
    // The body is stored out of line (TOAST), so an update of another column sends it as an
    // unchanged value: the change is a merge, and its text is not embedded again.
    db.exec(
        "INSERT INTO notes SELECT 1, 'Long', string_agg(md5(i::text), ' '), 1 FROM generate_series(1, 300) i",
    )
    .await;
    wait_count("t_embed_toast_record", 1).await;
    let meta = |p: &Stored| p.payload["_pg2qdrant"].clone();
    let before = meta(&point("t_embed_toast_record", 1).await.expect("point 1"));
    assert!(
        before["embedded"]
            .as_object()
            .is_some_and(|e| !e.is_empty()),
        "the insert records what the vector was embedded from: {before}"
    );
    db.exec("UPDATE notes SET n = 2 WHERE id = 1").await;
    // The merge is written in parts: wait for its field and its position both.
    let after = wait_for("n = 2 and a new position on 1", WAIT, || async {
        point("t_embed_toast_record", 1)
            .await
            .filter(|p| p.payload["n"] == json!(2) && meta(p)["lsn"] != before["lsn"])
    })
    .await;
    // The merge kept the record of the vector it left alone, so a later change or `verify`
    // still sees the stored vector as the one its text gives.
    assert_eq!(before["embedded"], meta(&after)["embedded"]);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_vector_embedded_by_another_model_and_repair_embeds_it_again() {
    let db = TestDb::new(
        "t_embed_verify",
        &format!("{NOTES} INSERT INTO notes VALUES (1, 'a', 'first', 1), (2, 'b', 'second', 2);"),
    )
    .await;
    let dir = work_dir("t_embed_verify");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        db.config_text(
            &format!("{}{}", notes_table("t_embed_verify", 384), embedder_toml()),
            &qdrant_url(),
        ),
    )
    .unwrap();
    let run = db.start(pg2qdrant::config::load(&config).unwrap()).await;
    wait_count("t_embed_verify", 2).await;
    let verify = |repair: bool| {
        let extra: &[&str] = if repair { &["--repair"] } else { &[] };
        crate::verify::verify(&config, extra)
    };
    assert_eq!(verify(false).0, 0, "in sync after streaming");
    // Point 2 says an older model built its vector (payload and vector otherwise untouched).
    claim_another_model("t_embed_verify", 2).await;
    let (code, report) = verify(false);
    assert_eq!((code, report["stale"].clone()), (1, json!(1)), "{report}");
    let (code, report) = verify(true);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["repaired"], json!(1));
    let p = point("t_embed_verify", 2).await.unwrap();
    assert_ne!(
        p.payload["_pg2qdrant"]["embedded"]["vector"]["hash"],
        json!("0")
    );
    run.stop().await;
}

/// A small OpenAI-compatible `/v1/embeddings` server: 4-d vectors `[chars, 1, 0, 0.5]`; the first
/// request holding "busy" gets 429 with Retry-After: 1, the first holding "slow" is answered after
/// 3 s, one holding "pause" after 0.5 s, one holding "outage" gets 503 while `down` is set, the first holding "throttle" gets 429 too, any request holding "refuse" gets 400, and one
/// without `Authorization: Bearer secret` 401. It counts the requests for each text.
pub struct FakeOpenAi {
    pub port: u16,
    /// While set, a request holding "outage" gets 503.
    pub down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// While set, every request gets 401 (the service's key was rotated).
    pub rotated: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The most inputs one request held, and the most requests in flight at once.
    largest: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    throttled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    requested: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl FakeOpenAi {
    /// An `[[embedders]]` entry `name` of kind openai on this service (4-d vectors), with
    /// `extra` keys, and, when `collection` is not empty, the notes table embedding its body
    /// into `collection` with it.
    pub fn config(&self, name: &str, extra: &str, collection: &str) -> String {
        let mut toml = format!(
            "[[embedders]]\nname = \"{name}\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:{}/v1\"\n\
             model = \"fake\"\napi_key_env = \"PG2QDRANT_TEST_FAKE_OPENAI_KEY\"\ndimensions = 4\n{extra}",
            self.port
        );
        if !collection.is_empty() {
            toml.push_str(&format!(
                "[[tables]]\ntable = \"notes\"\ncollection = \"{collection}\"\n\
                 vector = {{ embed = \"{name}\", text = \"{{body}}\", size = 4, distance = \"Dot\" }}\n"
            ));
        }
        toml
    }

    /// Starts it; the API key embedders read (`api_key_env`) is `PG2QDRANT_TEST_FAKE_OPENAI_KEY`.
    pub async fn start() -> Self {
        // Read by the embedder at start; a name no other test uses.
        std::env::set_var("PG2QDRANT_TEST_FAKE_OPENAI_KEY", "secret");
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let throttled = std::sync::Arc::new(AtomicUsize::new(0));
        let seen = throttled.clone();
        let slowed = std::sync::Arc::new(AtomicUsize::new(0));
        let throttle = std::sync::Arc::new(AtomicUsize::new(0));
        let requested =
            std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let counts = requested.clone();
        let largest = std::sync::Arc::new(AtomicUsize::new(0));
        let most_in_flight = std::sync::Arc::new(AtomicUsize::new(0));
        let in_flight = std::sync::Arc::new(AtomicUsize::new(0));
        let (l, m) = (largest.clone(), most_in_flight.clone());
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let is_down = down.clone();
        let rotated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let is_rotated = rotated.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let slowed = slowed.clone();
                let throttle = throttle.clone();
                let counts = counts.clone();
                let (largest, most, in_flight) = (l.clone(), m.clone(), in_flight.clone());
                let is_down = is_down.clone();
                let is_rotated = is_rotated.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, body) = loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(i) = text.find("\r\n\r\n") {
                            let head = text[..i].to_ascii_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            if buf.len() >= i + 4 + len {
                                break (
                                    head,
                                    String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).to_string(),
                                );
                            }
                        }
                    };
                    let req: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let inputs: Vec<String> = req["input"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    for t in &inputs {
                        *counts.lock().unwrap().entry(t.clone()).or_insert(0) += 1;
                    }
                    largest.fetch_max(inputs.len(), Ordering::SeqCst);
                    if inputs.iter().any(|t| t.contains("pause")) {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                    if inputs.iter().any(|t| t.contains("slow"))
                        && slowed.fetch_add(1, Ordering::SeqCst) == 0
                    {
                        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                    }
                    let (status, extra, answer) = if !head.contains("authorization: bearer secret")
                        || is_rotated.load(Ordering::SeqCst)
                    {
                        ("401 Unauthorized", "", json!({"error": "no key"}))
                    } else if (inputs.iter().any(|t| t.contains("busy"))
                        && seen.fetch_add(1, Ordering::SeqCst) == 0)
                        || (inputs.iter().any(|t| t.contains("throttle"))
                            && throttle.fetch_add(1, Ordering::SeqCst) == 0)
                    {
                        (
                            "429 Too Many Requests",
                            "Retry-After: 1\r\n",
                            json!({"error": "slow down"}),
                        )
                    } else if is_down.load(Ordering::SeqCst)
                        && inputs.iter().any(|t| t.contains("outage"))
                    {
                        ("503 Service Unavailable", "", json!({"error": "down"}))
                    } else if inputs.iter().any(|t| t.contains("refuse")) {
                        ("400 Bad Request", "", json!({"error": "input refused"}))
                    } else {
                        let data: Vec<_> = inputs
                            .iter()
                            .enumerate()
                            .map(|(i, t)| json!({"index": i, "embedding": [t.chars().count() as f32, 1.0, 0.0, 0.5]}))
                            .collect();
                        ("200 OK", "", json!({"data": data}))
                    };
                    let body = answer.to_string();
                    let resp = format!(
                        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Self {
            port,
            down,
            rotated,
            largest,
            most_in_flight,
            throttled,
            requested,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_service_embeds_retries_429_and_timeouts_and_dead_letters_a_refused_input(
) {
    let fake = FakeOpenAi::start().await;
    let db = TestDb::new("t_embed_http", NOTES).await;
    let cfg = db.config(&fake.config("svc", "timeout_ms = 500\nbatch_size = 1\n", "t_embed_http"));
    let dead_letters = cfg.dead_letter.path.clone();
    let run = db.start(cfg).await;
    db.exec("INSERT INTO notes VALUES (1, 't', 'hello', 1)")
        .await;
    let p = wait_for("point 1", WAIT, || point("t_embed_http", 1)).await;
    assert_eq!(p.vector, Some(vec![5.0, 1.0, 0.0, 0.5]));
    // Throttled once: retried after Retry-After, nothing lost.
    db.exec("INSERT INTO notes VALUES (2, 't', 'busy day', 2)")
        .await;
    let p = wait_for("point 2", WAIT, || point("t_embed_http", 2)).await;
    assert_eq!(p.vector, Some(vec![8.0, 1.0, 0.0, 0.5]));
    assert!(fake.throttled.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    // A request that times out is retried.
    db.exec("INSERT INTO notes VALUES (5, 't', 'slow', 5)")
        .await;
    let p = wait_for("point 5", WAIT, || point("t_embed_http", 5)).await;
    assert_eq!(p.vector, Some(vec![4.0, 1.0, 0.0, 0.5]));
    // One input refused: dead-lettered with the reason; the other row of its transaction lands.
    db.exec("BEGIN; INSERT INTO notes VALUES (3, 't', 'refuse me', 3); INSERT INTO notes VALUES (4, 't', 'fine', 4); COMMIT")
        .await;
    wait_for("point 4", WAIT, || point("t_embed_http", 4)).await;
    let dl = wait_for("the dead letter", WAIT, || async {
        std::fs::read_to_string(&dead_letters)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await;
    assert!(dl.contains("400") && dl.contains("input refused"), "{dl}");
    assert!(point("t_embed_http", 3).await.is_none());
    // Two texts in one batch, one request each (batch_size = 1): the second is throttled; the
    // retry does not pay again for the first.
    db.exec("BEGIN; INSERT INTO notes VALUES (6, 't', 'early bird', 6); INSERT INTO notes VALUES (7, 't', 'throttle me', 7); COMMIT")
        .await;
    wait_for("point 7", WAIT, || point("t_embed_http", 7)).await;
    assert!(point("t_embed_http", 6).await.is_some());
    let requested = fake.requested.lock().unwrap().clone();
    assert_eq!(requested.get("early bird"), Some(&1), "{requested:?}");
    assert_eq!(requested.get("throttle me"), Some(&2), "{requested:?}");
    wait_count("t_embed_http", 6).await;
    run.stop().await;
}

/// An embedding service refusing the key refuses every text alike: an outage (readiness down,
/// nothing parked, the slot holds), and the rows land once it accepts the key again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_service_refusing_the_key_parks_nothing_and_catches_up() {
    let fake = FakeOpenAi::start().await;
    let db = TestDb::new("t_embed_401", NOTES).await;
    let mut cfg = db.config(&fake.config("svc_401", "", "t_embed_401"));
    let port = free_port();
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    let dead_letters = cfg.dead_letter.path.clone();
    let run = db.start(cfg).await;
    db.exec("INSERT INTO notes VALUES (1, 't', 'hello', 1)")
        .await;
    wait_for("point 1", WAIT, || point("t_embed_401", 1)).await;
    fake.rotated
        .store(true, std::sync::atomic::Ordering::SeqCst);
    db.exec("INSERT INTO notes SELECT g, 't', 'text ' || g, g FROM generate_series(2, 40) g")
        .await;
    let end = db.insert_lsn_u64().await;
    let addr = format!("127.0.0.1:{port}");
    let body = wait_readyz(&addr, 503, "readyz 503 while the service refuses the key").await;
    assert!(body.contains("embedder"), "{body}");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(db.confirmed_u64().await < end, "the slot holds");
    assert_eq!(count("t_embed_401").await, 1);
    let parked = std::fs::read_to_string(&dead_letters).unwrap_or_default();
    assert!(parked.is_empty(), "nothing parked for an outage: {parked}");
    fake.rotated
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_count("t_embed_401", 40).await;
    wait_readyz(&addr, 200, "ready again").await;
    assert_eq!(
        std::fs::read_to_string(&dead_letters).unwrap_or_default(),
        ""
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_requests_keep_to_the_token_budget_and_the_concurrency_limit() {
    let fake = FakeOpenAi::start().await;
    // Rows that exist before the start: the copy embeds them (no stream copy of the same rows
    // racing it).
    let db = TestDb::new(
        "t_embed_budget",
        &format!(
            "{NOTES} INSERT INTO notes SELECT g, 't', 'pause ' || g, g FROM generate_series(1, 24) g;"
        ),
    )
    .await;
    // Two words a text, six words a request: three texts a call, three calls at most at once.
    let cfg = db.config(&fake.config(
        "svc_budget",
        "batch_size = 100\nmax_batch_tokens = 6\nconcurrency = 3\n",
        "t_embed_budget",
    ));
    let port = free_port();
    let mut cfg = cfg;
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    let run = db.start(cfg).await;
    let waiting = || async move {
        let body = crate::chat::http_get(port, "/metrics").await;
        body.lines()
            .find(|l| l.starts_with("pg2qdrant_embed_waiting{embedder=\"svc_budget\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    // Each call is held 0.5 s: the rows show as waiting for their vectors meanwhile.
    let seen = wait_for("rows waiting for an embedding", WAIT, || async {
        waiting().await.filter(|n| *n > 0.0)
    })
    .await;
    assert!(seen <= 24.0, "{seen}");
    wait_count("t_embed_budget", 24).await;
    wait_for("nothing waiting", WAIT, || async {
        (waiting().await == Some(0.0)).then_some(())
    })
    .await;
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(fake.largest.load(SeqCst), 3, "6 tokens of 2-word texts");
    let most = fake.most_in_flight.load(SeqCst);
    assert!((2..=3).contains(&most), "{most} requests in flight at once");
    let requested = fake.requested.lock().unwrap().clone();
    assert!(requested.values().all(|n| *n == 1), "{requested:?}");
    let body = crate::chat::http_get(port, "/metrics").await;
    assert!(
        body.contains("pg2qdrant_embed_latency_seconds_bucket{embedder=\"svc_budget\",le=\"0.5\"}")
            && body.contains("pg2qdrant_embed_batch_size_bucket{embedder=\"svc_budget\""),
        "embedding figures are histograms"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_embedder_never_loses_the_row_nor_acknowledges_past_it() {
    let fake = FakeOpenAi::start().await;
    let db = TestDb::new("t_embed_down", NOTES).await;
    let cfg = db.config(&fake.config("svc_down", "", "t_embed_down"));
    let run = db.start(cfg).await;
    db.exec("INSERT INTO notes VALUES (1, 't', 'before', 1)")
        .await;
    wait_for("point 1", WAIT, || point("t_embed_down", 1)).await;
    fake.down.store(true, std::sync::atomic::Ordering::SeqCst);
    db.exec("INSERT INTO notes VALUES (2, 't', 'outage', 2)")
        .await;
    // Past the row's commit record (the write position may lag: the test cluster does not
    // wait for WAL flushes at commit).
    let committed: i64 = db
        .client
        .query_one("SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint", &[])
        .await
        .unwrap()
        .get(0);
    let committed = committed as u64;
    wait_for("the service asked again and again", WAIT, || async {
        (fake
            .requested
            .lock()
            .unwrap()
            .get("outage")
            .copied()
            .unwrap_or(0)
            >= 3)
            .then_some(())
    })
    .await;
    assert!(point("t_embed_down", 2).await.is_none());
    let confirmed = db.confirmed_u64().await;
    assert!(
        confirmed < committed,
        "the slot is not acknowledged past the row while its embedding fails: {confirmed:x} >= {committed:x}"
    );
    fake.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let p = wait_for("point 2 once the service is back", WAIT, || {
        point("t_embed_down", 2)
    })
    .await;
    assert_eq!(p.vector, Some(vec![6.0, 1.0, 0.0, 0.5]));
    wait_for("the slot acknowledged past it", WAIT, || async {
        (db.confirmed_u64().await >= committed).then_some(())
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_embedded_by_another_model_are_refused_at_start() {
    let db = TestDb::new(
        "t_embed_mixed",
        &format!("{NOTES} INSERT INTO notes VALUES (1, 'a', 'first', 1), (2, 'b', 'second', 2);"),
    )
    .await;
    let cfg = notes_config(&db, "t_embed_mixed");
    let run = db.start(cfg.clone()).await;
    wait_count("t_embed_mixed", 2).await;
    run.stop().await;
    // Point 2 was built by another model (as after a model change in the config).
    claim_another_model("t_embed_mixed", 2).await;
    let err = pg2qdrant::run(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tables[0] public.notes: 1 points") && err.contains("another model"),
        "{err}"
    );
}

/// Makes point `id` of `collection` record that another model built its vector (as after a model
/// change in the config), leaving its payload and vector otherwise as they are.
async fn claim_another_model(collection: &str, id: u64) {
    qdrant()
        .set_payload(
            qdrant_client::qdrant::SetPayloadPointsBuilder::new(
                collection,
                qdrant_client::Payload::try_from(json!({"model": "local:old:0", "hash": "0"}))
                    .unwrap(),
            )
            .key("_pg2qdrant.embedded.vector")
            .points_selector(qdrant_client::qdrant::PointsIdsList {
                ids: vec![id.into()],
            })
            .wait(true),
        )
        .await
        .unwrap();
}

/// `pg2qdrant embed --config <config with the embedders and one table> --embedder <name> texts`:
/// its stdout lines parsed as vectors (`cli_ok` asserts it succeeded).
fn embed_command(name: &str, embedders: &str, texts: &[&str]) -> Vec<Vec<f32>> {
    let config = work_dir(name).join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"postgres://u@127.0.0.1:1/x\"\nslot = \"s\"\npublication = \"p\"\n{embedders}"
        ),
    )
    .unwrap();
    // The openai embedder's key comes from this process's environment (`FakeOpenAi::start`).
    let args: Vec<&str> = std::iter::once("embed")
        .chain(texts.iter().copied())
        .collect();
    let out = cli_ok(&args, &config);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_command_computes_with_an_openai_embedder() {
    let fake = FakeOpenAi::start().await;
    let vectors = embed_command(
        "t_embed_cmd_openai",
        &fake.config("svc", "", "t_embed_cmd_openai"),
        &["hello", "four"],
    );
    // The service's vectors, in order: [chars, 1, 0, 0.5].
    assert_eq!(
        vectors,
        vec![vec![5.0, 1.0, 0.0, 0.5], vec![4.0, 1.0, 0.0, 0.5]]
    );
    assert_eq!(fake.requested.lock().unwrap().get("hello"), Some(&1));
}

#[test]
fn embed_command_computes_with_a_local_model_as_the_connector_does() {
    let embedders = format!(
        "{}[[tables]]\ntable = \"notes\"\ncollection = \"t_embed_cmd_local\"\n\
         vector = {{ embed = \"minilm\", text = \"{{body}}\", size = 384, distance = \"Cosine\" }}\n",
        embedder_toml()
    );
    let vectors = embed_command("t_embed_cmd_local", &embedders, &["A man is eating food."]);
    let model = LocalEmbedder::load(std::path::Path::new(&env("PG2QDRANT_TEST_MODEL")), 2).unwrap();
    let want = model.embed(&["A man is eating food."]).unwrap().vectors;
    assert_eq!(vectors.len(), 1);
    assert_eq!(vectors[0].len(), 384);
    let dot: f32 = vectors[0].iter().zip(&want[0]).map(|(a, b)| a * b).sum();
    assert!(dot > 0.9999, "cosine {dot}");
}
