//! The rebuild switch (see `rebuild` for the design): once a rebuild's copy is durable, the
//! alias moves to the new collection in one Qdrant operation, the old collection is retired (no
//! more shadow writes) and dropped, and the rebuild is forgotten. Failures are retried on the
//! next round; a start after a switch whose state was not cleared switches again (idempotent).

use crate::checkpoint::state::Rebuild;
use crate::error::Error;
use crate::mapping::Mappings;
use crate::sink::qdrant::{collections, QdrantSink};
use crate::snapshot::Coordinator;
use qdrant_client::Qdrant;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(1);

/// Switches each rebuild whose copy is durable: alias → new collection, old one retired and
/// dropped, rebuild forgotten. Failures are retried on the next round.
pub async fn supervise(
    coordinator: Arc<Coordinator>,
    mappings: Arc<Mappings>,
    sink: Arc<QdrantSink>,
    client: Qdrant,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        for (alias, r) in coordinator.rebuilds_ready() {
            let switched = switch(&alias, &r, &mappings, &sink, &client).await;
            if let Err(e) = switched.and_then(|()| coordinator.rebuild_finished(&alias)) {
                tracing::warn!(alias = %alias, error = %e, "switching the rebuilt collection failed; retrying");
            }
        }
    }
}

async fn switch(
    alias: &str,
    r: &Rebuild,
    mappings: &Mappings,
    sink: &QdrantSink,
    client: &Qdrant,
) -> Result<(), Error> {
    collections::point_alias(client, alias, &r.target).await?;
    tracing::info!(alias, collection = %r.target, "rebuild done: the alias points at the new collection");
    for m in mappings
        .values()
        .filter(|m| r.tables.contains(&m.table.to_string()))
    {
        if m.retire_shadow().is_some() {
            tracing::debug!(table = %m.table, "old collection no longer written");
        }
    }
    sink.retire(&r.old);
    let exists = client
        .collection_exists(&r.old)
        .await
        .map_err(Error::qdrant(format!("look up collection {}", r.old)))?;
    if exists && r.old != r.target {
        client
            .delete_collection(&r.old)
            .await
            .map_err(Error::qdrant(format!("drop collection {}", r.old)))?;
        tracing::info!(collection = %r.old, "dropped the replaced collection");
    }
    Ok(())
}
