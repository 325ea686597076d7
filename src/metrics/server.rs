//! `/metrics` (Prometheus text), `/healthz` and `/readyz` on `[metrics] addr`. A deliberately
//! tiny HTTP/1.1 responder: three GET routes do not justify an HTTP framework's build time.
//!
//! - `/healthz`: 200 while the process serves requests (liveness).
//! - `/readyz`: 200 `ready` when every component of the mode is up (see `health`), else 503
//!   with one line per component that is not, and why.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
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

/// Binds `addr` (port 0 picks a free one) and returns the bound address and the server, which
/// serves until `shutdown` (the caller owns it: spawn it where it is joined).
pub async fn serve(
    addr: &str,
    handle: PrometheusHandle,
    health: std::sync::Arc<crate::metrics::health::Health>,
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
                    let handle = handle.clone();
                    let health = health.clone();
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let n = sock.read(&mut buf).await.unwrap_or(0);
                        let req = String::from_utf8_lossy(&buf[..n]);
                        let path = req.split_whitespace().nth(1).unwrap_or("/");
                        let (status, body) = match path {
                            "/metrics" => ("200 OK", handle.render()),
                            "/healthz" => ("200 OK", "ok\n".to_owned()),
                            "/readyz" => match health.ready() {
                                Ok(()) => ("200 OK", "ready\n".to_owned()),
                                Err(down) => (
                                    "503 Service Unavailable",
                                    format!("not ready\n{}\n", down.join("\n")),
                                ),
                            },
                            _ => ("404 Not Found", "not found\n".to_owned()),
                        };
                        let resp = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
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
