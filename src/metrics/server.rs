//! `/metrics` (Prometheus text), `/healthz`, `/readyz` and `/wait` on `[metrics] addr`. A
//! deliberately tiny HTTP/1.1 responder: a few GET routes do not justify an HTTP framework's
//! build time.
//!
//! - `/healthz`: 200 while the process serves requests (liveness).
//! - `/readyz`: 200 `ready` when every component of the mode is up (see `health`), else 503
//!   with one line per component that is not, and why.
//! - `/wait?lsn=X/Y&timeout_ms=N`: read-your-writes (see `wait`): 200 once everything committed
//!   up to `X/Y` is durable in every sink, 504 on timeout, 400 on a malformed query, 503 past
//!   `metrics.max_waiters` or while stopping, 501 where it is not served; the body is JSON with
//!   the durable LSN.
//! - `/status`: the sync status document (JSON, see `status`), 503 while starting.

use super::health::Health;
use super::status::StatusSlot;
use super::wait::{self, Answer, Waiters};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process (tests run several pipelines in one process).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            use super::names;
            const LATENCY: &[f64] = &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            const LAG: &[f64] = &[
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
            ];
            const SIZES: &[f64] = &[1.0, 8.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];
            // Real histograms (buckets), not summaries: they aggregate across instances.
            let handle = [
                (names::BATCH_SIZE, SIZES),
                (names::WRITE_LATENCY, LATENCY),
                (names::EMBED_LATENCY, LATENCY),
                (names::KAFKA_DELIVERY_LATENCY, LATENCY),
                (names::EMBED_BATCH, SIZES),
                (names::COMMIT_TO_DURABLE, LAG),
            ]
            .into_iter()
            .try_fold(PrometheusBuilder::new(), |b, (name, buckets)| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(name.to_owned()),
                    buckets,
                )
            })
            .expect("static bucket lists are non-empty")
            .install_recorder()
            .expect("the metrics recorder is installed once");
            super::describe();
            handle
        })
        .clone()
}

/// What the endpoint serves besides `/metrics`.
#[derive(Clone)]
pub struct Endpoints {
    /// `/readyz`.
    pub health: Arc<Health>,
    /// `/wait` (see `wait`).
    pub waiters: Waiters,
    /// `/status` (see `status`): `None` where it is not served (`apply`).
    pub status: Option<StatusSlot>,
}

/// Binds `addr` (port 0 picks a free one) and returns the bound address and the server, which
/// serves until `shutdown` (the caller owns it: spawn it where it is joined). A connection is one
/// request; a `/wait` holds its connection until answered.
pub async fn serve(
    addr: &str,
    handle: PrometheusHandle,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> std::io::Result<(
    std::net::SocketAddr,
    impl std::future::Future<Output = ()> + Send,
)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = async move {
        let mut upkeep = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = upkeep.tick() => handle.run_upkeep(),
                accepted = listener.accept() => {
                    let Ok((mut sock, _)) = accepted else { continue };
                    let (handle, endpoints) = (handle.clone(), endpoints.clone());
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let n = sock.read(&mut buf).await.unwrap_or(0);
                        let req = String::from_utf8_lossy(&buf[..n]);
                        let target = req.split_whitespace().nth(1).unwrap_or("/");
                        let (status, kind, body) = respond(target, &handle, &endpoints).await;
                        let resp = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        // A client that went away: nothing to tell it.
                        let _ = sock.write_all(resp.as_bytes()).await;
                    });
                }
            }
        }
    };
    Ok((local, server))
}

const TEXT: &str = "text/plain; version=0.0.4";
const JSON: &str = "application/json";

/// The status line, content type and body for a request target (path and query).
async fn respond(
    target: &str,
    handle: &PrometheusHandle,
    endpoints: &Endpoints,
) -> (&'static str, &'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/metrics" => ("200 OK", TEXT, handle.render()),
        "/healthz" => ("200 OK", TEXT, "ok\n".to_owned()),
        "/readyz" => match endpoints.health.ready() {
            Ok(()) => ("200 OK", TEXT, "ready\n".to_owned()),
            Err(down) => (
                "503 Service Unavailable",
                TEXT,
                format!("not ready\n{}\n", down.join("\n")),
            ),
        },
        "/wait" => {
            let (lsn, timeout) = match wait::parse_query(query) {
                Ok(q) => q,
                Err(e) => return ("400 Bad Request", JSON, error_json(&e)),
            };
            let durable = |status, d: crate::lsn::Lsn| {
                (
                    status,
                    JSON,
                    format!("{{\"lsn\":\"{lsn}\",\"durable_lsn\":\"{d}\"}}\n"),
                )
            };
            match endpoints.waiters.wait(lsn, timeout).await {
                Answer::Reached(d) => durable("200 OK", d),
                Answer::TimedOut(d) => durable("504 Gateway Timeout", d),
                Answer::Stopping(d) => durable("503 Service Unavailable", d),
                Answer::Full(max) => (
                    "503 Service Unavailable",
                    JSON,
                    error_json(&format!(
                        "{max} waiters already wait (metrics.max_waiters): retry shortly"
                    )),
                ),
                Answer::NotServed(why) => ("501 Not Implemented", JSON, error_json(why)),
            }
        }
        "/status" => match &endpoints.status {
            None => (
                "501 Not Implemented",
                JSON,
                error_json("sync status is served by `pg2qdrant run`"),
            ),
            Some(slot) => match slot.get() {
                Some(source) => {
                    let doc = source.status();
                    (
                        "200 OK",
                        JSON,
                        serde_json::to_string(&doc).expect("status serializes") + "\n",
                    )
                }
                None => {
                    let why = match endpoints.health.ready() {
                        Ok(()) => "starting".to_owned(),
                        Err(down) => format!("starting: {}", down.join("; ")),
                    };
                    ("503 Service Unavailable", JSON, error_json(&why))
                }
            },
        },
        _ => ("404 Not Found", TEXT, "not found\n".to_owned()),
    }
}

/// `{"error": "..."}` (the message escaped as a JSON string).
fn error_json(message: &str) -> String {
    format!("{}\n", serde_json::json!({ "error": message }))
}
