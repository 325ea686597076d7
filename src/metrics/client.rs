//! Asking a running connector's endpoint (`metrics.addr`) from the command line: `pg2qdrant
//! wait`, `pg2qdrant status`. One GET per connection, HTTP/1.0 (the body is never chunked).

use crate::config::MetricsConfig;
use crate::error::Error;
use crate::lsn::Lsn;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where to reach the endpoint `metrics.addr` listens on (a wildcard address is reached on
/// loopback).
pub fn reach(cfg: &MetricsConfig) -> Result<String, Error> {
    let addr = cfg.addr.trim();
    if addr.is_empty() {
        return Err(Error::config(
            "metrics.addr",
            "is empty, so no connector serves an endpoint to ask: set it (e.g. \"127.0.0.1:9187\") in the running connector's config and here".into(),
        ));
    }
    Ok(addr
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:"))
}

/// GET `target` from the connector serving `cfg`'s endpoint, waiting at most `timeout` for the
/// whole answer: its status code and body.
pub async fn get(
    cfg: &MetricsConfig,
    target: &str,
    timeout: Duration,
) -> Result<(u16, String), Error> {
    let addr = reach(cfg)?;
    let none_running = |e: std::io::Error| {
        Error::prerequisite(
            format!("no connector answers on {addr} (metrics.addr): {e}"),
            "start it (`pg2qdrant run --config ...`), or give the config of the running one",
        )
    };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(format!("GET {target} HTTP/1.0\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            none_running(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            ))
        })?
        .map_err(none_running)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::prerequisite(
                format!("{addr} answered something that is not HTTP"),
                "check metrics.addr: it should be the connector's metrics address",
            )
        })?;
    let body = out.split_once("\r\n\r\n").map_or("", |b| b.1).to_owned();
    Ok((status, body))
}

/// How `pg2qdrant wait` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// Everything committed up to the LSN is durable; the durable position.
    Reached(Lsn),
    /// The timeout passed first; the durable position then.
    TimedOut(Lsn),
}

/// Asks the running connector to answer once everything committed up to `lsn` is durable.
pub async fn wait(cfg: &MetricsConfig, lsn: Lsn, timeout: Duration) -> Result<Waited, Error> {
    let target = format!("/wait?lsn={lsn}&timeout_ms={}", timeout.as_millis());
    // The server answers within `timeout`; the margin covers the exchange itself.
    let (status, body) = get(cfg, &target, timeout + Duration::from_secs(5)).await?;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let durable = || {
        json["durable_lsn"]
            .as_str()
            .and_then(|d| crate::lsn::parse_lsn(d).ok())
            .unwrap_or(Lsn(0))
    };
    match status {
        200 => Ok(Waited::Reached(durable())),
        504 => Ok(Waited::TimedOut(durable())),
        _ => Err(Error::prerequisite(
            format!(
                "the connector answered {status}: {}",
                json["error"].as_str().unwrap_or(body.trim())
            ),
            "read-your-writes is served by `pg2qdrant run` with qdrant.direct = true",
        )),
    }
}

/// The running connector's sync status (`/status`).
pub async fn status(cfg: &MetricsConfig) -> Result<super::status::Status, Error> {
    let (code, body) = get(cfg, "/status", Duration::from_secs(30)).await?;
    if code != 200 {
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        return Err(Error::prerequisite(
            format!(
                "the connector answered {code}: {}",
                json["error"].as_str().unwrap_or(body.trim())
            ),
            "sync status is served by a started `pg2qdrant run`",
        ));
    }
    serde_json::from_str(&body).map_err(|e| {
        Error::prerequisite(
            format!("the connector's /status is not a status document: {e}"),
            "run `pg2qdrant status` of the same version as the connector",
        )
    })
}
