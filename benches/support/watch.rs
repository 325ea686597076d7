//! Waiting for a collection's point count, timed from the first point on, with the tool's CPU
//! per row from then on; the polling runs on a [`cpu::WATCH`] thread of its own.
#![allow(dead_code)]

use crate::cpu;
use std::time::{Duration, Instant};

/// A phase that ends when every point is in its collection: timed from the first point on (the
/// start before it — set-up, connections, a group join — is reported apart), with this
/// process's CPU per row from the first point on, the bench's watching left out.
pub struct Timed {
    /// Seconds from the start of the wait to the first point.
    pub first_s: f64,
    /// Seconds for all rows at the rate after the first point.
    pub secs: f64,
    /// pg2qdrant's CPU µs per row after the first point.
    pub steady_us: f64,
    /// CPU seconds of the watching thread (left out of the phase's [`cpu::Totals`]).
    pub watching: f64,
}

/// Points in `collection`, from Qdrant's REST API on a plain connection of the calling thread
/// (so its cost stays on the [`cpu::WATCH`] thread of [`until_every_point`]).
pub fn count_http(http: &str, collection: &str) -> u64 {
    let path = format!("/collections/{collection}/points/count");
    rest(http, "POST", &path, r#"{"exact":true}"#)
        .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
        .and_then(|v| v["result"]["count"].as_u64())
        .unwrap_or(0)
}

/// One call to Qdrant's REST API on a plain connection of the calling thread: the reply's body
/// (`None` when the connection failed).
pub fn rest(http: &str, method: &str, path: &str, body: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = http.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    Some(
        reply
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned(),
    )
}

/// [`until_every_point_by`] with pg2qdrant running in this process.
pub async fn until_every_point(http: &str, collection: &str, rows: i64, name: &str) -> Timed {
    until_every_point_by(http, collection, rows, name, cpu::own).await
}

/// Waits until `collection` holds `rows` points; `ours` reads pg2qdrant's CPU seconds so far
/// (this process's, or the applier processes').
pub async fn until_every_point_by(
    http: &str,
    collection: &str,
    rows: i64,
    name: &str,
    ours: impl Fn() -> f64 + Send + 'static,
) -> Timed {
    until_count(http, collection, 0, rows, name, ours).await
}

/// Waits until `collection` holds `from + rows` points, timed from the first point past
/// `from`; `ours` reads the tool's CPU seconds so far.
pub async fn until_count(
    http: &str,
    collection: &str,
    from: u64,
    rows: i64,
    name: &str,
    ours: impl Fn() -> f64 + Send + 'static,
) -> Timed {
    let (http, collection) = (http.to_owned(), collection.to_owned());
    // On a `WATCH` thread: its polling is not pg2qdrant's CPU.
    let watch = std::thread::Builder::new()
        .name(cpu::WATCH.into())
        .spawn(move || {
            let t = Instant::now();
            let mine = cpu::this_thread();
            // (when, points then, pg2qdrant's CPU then)
            let mut first: Option<(Instant, u64, f64)> = None;
            let (mut seen, mut moved) = (0, Instant::now());
            loop {
                let n = count_http(&http, &collection).saturating_sub(from);
                if n > 0 && first.is_none() {
                    first = Some((Instant::now(), n, ours()));
                }
                if n >= rows as u64 {
                    break;
                }
                // A tool that stopped (or never started) must not hang the bench.
                if n != seen {
                    (seen, moved) = (n, Instant::now());
                }
                assert!(
                    moved.elapsed() < Duration::from_secs(300),
                    "{collection}: no new point for 300 s ({n} of {rows})"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let (t0, n0, cpu0) = first.expect("points arrived");
            let rest = (rows as u64 - n0).max(1) as f64;
            let cpu = ours() - cpu0;
            (
                t0 - t,
                t0.elapsed(),
                Timed {
                    first_s: (t0 - t).as_secs_f64(),
                    secs: t0.elapsed().as_secs_f64() * rows as f64 / rest,
                    steady_us: cpu * 1e6 / rest,
                    watching: cpu::this_thread() - mine,
                },
            )
        })
        .unwrap();
    let timed = tokio::task::spawn_blocking(move || watch.join().unwrap())
        .await
        .unwrap();
    let (before, after, timed) = timed;
    eprintln!(
        "{name}: first point after {:.1} s, then {:.1} s at {:.1} µs of the tool's CPU per row",
        before.as_secs_f64(),
        after.as_secs_f64(),
        timed.steady_us
    );
    timed
}
