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
//! It runs on the sampler's connection and schedule; a failed heartbeat is logged and the
//! sampler reports PostgreSQL down.

use crate::metrics::names;
use crate::source::catalog::Catalog;

/// The heartbeat message's prefix.
pub const PREFIX: &str = "pg2qdrant.heartbeat";

/// Writes one heartbeat on the sampler's connection (`pipeline::sampler` runs the schedule).
pub async fn beat(catalog: &Catalog) -> Result<(), crate::Error> {
    catalog.heartbeat(PREFIX).await?;
    metrics::counter!(names::HEARTBEATS).increment(1);
    Ok(())
}
