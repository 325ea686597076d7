//! Closing a bulk load: once no copy writes into a collection whose indexing was deferred for
//! its first copy, restore its `indexing_threshold`, wait until Qdrant reports it green (the
//! index is built), then forget it. Until then `initial_only` does not exit.

use super::Coordinator;
use crate::sink::qdrant::collections;
use qdrant_client::qdrant::CollectionStatus;
use qdrant_client::Qdrant;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often a collection whose restore failed is tried again (a finished copy wakes it at once).
const EVERY: Duration = Duration::from_secs(1);

pub async fn supervise(coordinator: Arc<Coordinator>, client: Qdrant, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = coordinator.copied() => {}
            _ = tokio::time::sleep(EVERY) => {}
        }
        for (collection, threshold) in coordinator.bulk_ready() {
            let restored = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = restore(&client, &collection, threshold) => r,
            };
            let result = restored.and_then(|()| coordinator.bulk_restored(&collection));
            if let Err(e) = result {
                tracing::warn!(collection = %collection, error = %e, "restoring indexing after the bulk load failed; retrying");
            }
        }
    }
}

async fn restore(
    client: &Qdrant,
    collection: &str,
    threshold: u64,
) -> Result<(), crate::error::Error> {
    collections::set_indexing_threshold(client, collection, threshold).await?;
    tracing::info!(
        collection,
        threshold_kb = threshold,
        "bulk load done: vector indexing restored; waiting for the collection to be green"
    );
    let started = Instant::now();
    let mut told = Instant::now();
    // Give the optimizer a moment to notice the new threshold before trusting "green".
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let info =
            client
                .collection_info(collection)
                .await
                .map_err(crate::error::Error::qdrant(format!(
                    "read collection {collection}"
                )))?;
        if info.result.map(|r| r.status) == Some(CollectionStatus::Green as i32) {
            tracing::info!(
                collection,
                seconds = started.elapsed().as_secs(),
                "collection is green: indexed"
            );
            return Ok(());
        }
        if told.elapsed() > Duration::from_secs(30) {
            told = Instant::now();
            tracing::info!(
                collection,
                seconds = started.elapsed().as_secs(),
                "still indexing after the bulk load"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
