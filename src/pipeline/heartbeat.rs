//! The heartbeat: every `source.heartbeat_ms`, a transactional logical message
//! (`pg_logical_emit_message(true, 'pg2qdrant.heartbeat', '')`) goes into the WAL.
//!
//! Why: a slot only advances on what its stream delivers. When the watched tables are idle and
//! other tables are busy, pgoutput sends nothing for those other tables, so the acknowledged
//! position would only move on the server's keepalives, and lag in seconds would have no recent
//! commit to measure. The heartbeat's transaction is decoded like any other (the replication loop
//! ignores the message itself): its commit is acknowledged once everything before it is durable,
//! and its commit time feeds `pg2qdrant_commit_to_durable_seconds`. Debezium's
//! `heartbeat.action.query` and supabase/etl's keepalives solve the same problem.
//!
//! A failed heartbeat is logged and counted nowhere else: the sampler reports PostgreSQL down.

use crate::config::SourceConfig;
use crate::metrics::names;
use crate::source::catalog::Catalog;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The heartbeat message's prefix.
pub const PREFIX: &str = "pg2qdrant.heartbeat";

pub async fn run(source: SourceConfig, shutdown: CancellationToken) {
    if source.heartbeat_ms == 0 {
        return;
    }
    let every = Duration::from_millis(source.heartbeat_ms);
    let mut catalog: Option<Catalog> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if catalog.is_none() {
            catalog = Catalog::connect(&source).await.ok();
        }
        let Some(c) = &catalog else { continue };
        match c.heartbeat(PREFIX).await {
            Ok(()) => metrics::counter!(names::HEARTBEATS).increment(1),
            Err(e) => {
                tracing::warn!(error = %e, hint = e.hint().unwrap_or(""), "heartbeat failed");
                catalog = None;
            }
        }
    }
}
