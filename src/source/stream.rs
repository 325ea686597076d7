//! Opening the replication stream.
//!
//! # When feedback is sent, and what it may say
//!
//! ```text
//!   server ── XLogData/Begin/Commit/KeepAlive ──▶ pgwire worker ──▶ our loop
//!   server ◀── standby status (write=flush=apply = durable LSN) ── worker ◀── update_applied_lsn
//! ```
//!
//! The worker sends standby status on its own schedule (every `status_interval_ms`, and at once
//! when a keepalive asks for a reply) carrying the last LSN we handed to `update_applied_lsn`. We
//! hand it only LSNs the writer made durable (a transaction's end LSN after all its changes and all
//! earlier ones are in Qdrant, or an idle keepalive's `wal_end` with nothing in flight), so the
//! slot's `confirmed_flush_lsn` never passes what a restart can recover. The stream starts at the
//! checkpoint (the server moves a start below the slot's confirmed LSN forward to it), and the
//! initial applied position is that same LSN, so a reconnect never reports less than before.
//!
//! pgwire-replication speaks protocol version 1: a transaction arrives only after it committed,
//! whole, between Begin and Commit events.

use crate::config::{SourceConfig, TlsMode};
use crate::error::Error;
use crate::lsn::Lsn;
use pgwire_replication::{ReplicationClient, ReplicationConfig, TlsConfig};
use std::time::Duration;

/// Builds the transport config from `[source]` (the URL is parsed, never logged).
/// `binary`: ask pgoutput for binary values (see `source::format`).
pub fn replication_config(
    cfg: &SourceConfig,
    start: Lsn,
    binary: bool,
) -> Result<ReplicationConfig, Error> {
    let pg: tokio_postgres::Config = cfg.url.parse().map_err(Error::pg("parse source.url"))?;
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "127.0.0.1".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let user = pg.get_user().unwrap_or("postgres").to_owned();
    let password = pg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let database = pg.get_dbname().unwrap_or(&user).to_owned();
    let tls = match cfg.tls {
        TlsMode::Disable => TlsConfig::disabled(),
        TlsMode::Require => TlsConfig::require(),
        TlsMode::VerifyCa => TlsConfig::verify_ca(cfg.ca_file.clone()),
        TlsMode::VerifyFull => TlsConfig::verify_full(cfg.ca_file.clone()),
    };
    Ok(ReplicationConfig::new(
        host,
        user,
        password,
        database,
        cfg.slot.clone(),
        cfg.publication.clone(),
    )
    .with_port(port)
    .with_tls(tls)
    .with_start_lsn(start)
    .with_status_interval(Duration::from_millis(cfg.status_interval_ms))
    .with_wakeup_interval(Duration::from_secs(10))
    .with_application_name("pg2qdrant")
    .with_binary(binary))
}

pub async fn connect(
    cfg: &SourceConfig,
    start: Lsn,
    binary: bool,
) -> Result<ReplicationClient, Error> {
    let rc = replication_config(cfg, start, binary)?;
    ReplicationClient::connect(rc)
        .await
        .map_err(Error::replication("start replication"))
}
