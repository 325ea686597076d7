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
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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

/// Connections whose request has not arrived yet, at most: past it no connection is accepted
/// until one of them sent its request or timed out (the others wait in the kernel's backlog,
/// holding none of our descriptors). So idle or slow clients hold at most this many
/// descriptors, and the process keeps its descriptors for PostgreSQL, Qdrant and its files.
const MAX_READING: usize = 64;
/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client may take to take its answer (one that never reads gives up its connection).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// `/status` documents assembled at once at most (each reads the dead-letter file).
static STATUS_BUILDS: Semaphore = Semaphore::const_new(2);
/// Backoff after a failed accept (descriptors exhausted): from the first step to the cap.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Binds `addr` (port 0 picks a free one) and returns the bound address and the server, which
/// serves until `shutdown` (the caller owns it: spawn it where it is joined). A connection is one
/// request; a `/wait` holds its connection until answered, or until its client goes away.
///
/// What it cannot be starved by: idle connections (a read timeout, and at most [`MAX_READING`]
/// of them taken from the backlog at once), running out of descriptors (a failed accept backs off
/// instead of spinning), and `/wait` clients that left (their waiter slot is freed when the
/// connection closes).
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
        let mut upkeep = tokio::time::interval(Duration::from_secs(5));
        let reading = Arc::new(Semaphore::new(MAX_READING));
        let mut backoff = ACCEPT_BACKOFF.0;
        loop {
            // A place to read a request in, before a connection is taken from the backlog.
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = reading.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = upkeep.tick() => handle.run_upkeep(),
                accepted = listener.accept() => {
                    let sock = match accepted {
                        Ok((sock, _)) => sock,
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "metrics endpoint: accept failed");
                            tokio::select! {
                                _ = shutdown.cancelled() => break,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                            continue;
                        }
                    };
                    backoff = ACCEPT_BACKOFF.0;
                    let (handle, endpoints) = (handle.clone(), endpoints.clone());
                    tokio::spawn(connection(sock, permit, handle, endpoints));
                }
            }
        }
    };
    Ok((local, server))
}

/// One connection: its request (within [`READ_TIMEOUT`], holding `reading` meanwhile), then its
/// answer; a client that closes its side first gets none, and whatever its request waited for
/// is dropped.
async fn connection(
    mut sock: tokio::net::TcpStream,
    reading: tokio::sync::OwnedSemaphorePermit,
    handle: PrometheusHandle,
    endpoints: Endpoints,
) {
    let mut buf = [0u8; 1024];
    let n = match tokio::time::timeout(READ_TIMEOUT, sock.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return,
    };
    drop(reading);
    let req = String::from_utf8_lossy(&buf[..n]);
    let target = req.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, body) = {
        let (mut rd, _) = sock.split();
        let mut rest = [0u8; 64];
        tokio::select! {
            answer = respond(target, &handle, &endpoints) => answer,
            // A read that ends is a client that went away (a request has no body here).
            _ = async {
                while matches!(rd.read(&mut rest).await, Ok(n) if n > 0) {}
            } => return,
        }
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A client that went away, or does not read: nothing more to tell it.
    let _ = tokio::time::timeout(WRITE_TIMEOUT, sock.write_all(resp.as_bytes())).await;
}

const TEXT: &str = "text/plain; version=0.0.4";
const JSON: &str = "application/json";

/// The status line, content type and body for a request target (path and query).
async fn respond(target: &str, handle: &PrometheusHandle, endpoints: &Endpoints) -> Response {
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
        "/wait" => wait_for(query, endpoints).await,
        "/status" => status_of(endpoints).await,
        _ => ("404 Not Found", TEXT, "not found\n".to_owned()),
    }
}

type Response = (&'static str, &'static str, String);

/// `/wait?lsn=…&timeout_ms=…`: answers once `lsn` is durable, or the timeout passed.
async fn wait_for(query: &str, endpoints: &Endpoints) -> Response {
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

/// `/status`: the sync status document (`run` and `apply` only).
async fn status_of(endpoints: &Endpoints) -> Response {
    match &endpoints.status {
        None => (
            "501 Not Implemented",
            JSON,
            error_json("sync status is served by `pg2qdrant run` and `pg2qdrant apply`"),
        ),
        Some(slot) => match slot.get() {
            Some(_) => {
                // It reads files (the dead-letter file, the last verify): not on the runtime,
                // and a few at a time.
                let _build = STATUS_BUILDS.acquire().await.expect("never closed");
                let slot = slot.clone();
                let doc =
                    tokio::task::spawn_blocking(move || slot.get().map(|source| source.status()))
                        .await;
                match doc {
                    Ok(Some(doc)) => (
                        "200 OK",
                        JSON,
                        serde_json::to_string(&doc).expect("status serializes") + "\n",
                    ),
                    _ => (
                        "503 Service Unavailable",
                        JSON,
                        error_json("the status could not be assembled; see the log"),
                    ),
                }
            }
            None => {
                let why = match endpoints.health.ready() {
                    Ok(()) => "starting".to_owned(),
                    Err(down) => format!("starting: {}", down.join("; ")),
                };
                ("503 Service Unavailable", JSON, error_json(&why))
            }
        },
    }
}

/// `{"error": "..."}` (the message escaped as a JSON string).
fn error_json(message: &str) -> String {
    format!("{}\n", serde_json::json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::Lsn;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// A `/wait` whose client went away gives its waiter slot back at once, not at its timeout:
    /// with one slot, the next waiter is served (504 on its own short timeout), not refused (503).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_whose_client_left_frees_its_slot() {
        let (_durable, rx) = tokio::sync::watch::channel(Lsn(0));
        let shutdown = CancellationToken::new();
        let (addr, server) = serve(
            "127.0.0.1:0",
            install(),
            Endpoints {
                health: crate::metrics::health::Health::new(&[]),
                waiters: Waiters::new(rx, 1),
                status: None,
            },
            shutdown.clone(),
        )
        .await
        .unwrap();
        let served = tokio::spawn(server);
        let long_wait = async || {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /wait?lsn=1/0&timeout_ms=600000 HTTP/1.0\r\n\r\n")
                .await
                .unwrap();
            c
        };
        // The long waiter holds the slot once a second waiter is refused (503). A probe that
        // got the slot first (504) may have had the long waiter refused meanwhile: then that
        // one has its answer already and is sent again.
        let mut gone = long_wait().await;
        loop {
            let answer = get(addr, "/wait?lsn=1/0&timeout_ms=10").await;
            if answer.starts_with("HTTP/1.1 503") {
                break;
            }
            assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
            let mut byte = [0u8; 1];
            let answered =
                tokio::time::timeout(Duration::from_millis(50), gone.read(&mut byte)).await;
            if answered.is_ok() {
                gone = long_wait().await;
            }
        }
        drop(gone);
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let answer = get(addr, "/wait?lsn=1/0&timeout_ms=10").await;
                if answer.starts_with("HTTP/1.1 504") {
                    return answer;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the slot is freed when its client leaves, long before its 600 s timeout");
        assert!(answer.contains("durable_lsn"), "{answer}");
        shutdown.cancel();
        served.await.unwrap();
    }
}
