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
    let read = || async {
        client
            .collection_info(collection)
            .await
            .map_err(crate::error::Error::qdrant(format!(
                "read collection {collection}"
            )))
    };
    // A collection whose vectors all together stay under the threshold has no segment over it:
    // nothing is indexed, so "green" can be trusted at once. Otherwise give the optimizer a
    // moment to notice the new threshold before trusting "green".
    let first = read().await?;
    let green = |info: &qdrant_client::qdrant::GetCollectionInfoResponse| {
        info.result.as_ref().map(|r| r.status) == Some(CollectionStatus::Green as i32)
    };
    let under = first.result.as_ref().and_then(vector_bytes);
    if green(&first) && under.is_some_and(|bytes| bytes <= threshold * 1024) {
        tracing::info!(
            collection,
            "collection is green: its vectors are under the indexing threshold, nothing to index"
        );
        return Ok(());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let info = read().await?;
        if green(&info) {
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

/// The bytes of every dense vector of the collection's points, at 4 bytes a dimension (the
/// most a stored dimension takes); `None` when it cannot be told (no count, no parameters, or
/// multivectors, whose vectors per point are not known).
fn vector_bytes(info: &qdrant_client::qdrant::CollectionInfo) -> Option<u64> {
    use qdrant_client::qdrant::vectors_config::Config;
    let params = info
        .config
        .as_ref()?
        .params
        .as_ref()?
        .vectors_config
        .as_ref()?;
    let vectors: Vec<_> = match params.config.as_ref()? {
        Config::Params(p) => vec![p],
        Config::ParamsMap(m) => m.map.values().collect(),
    };
    if vectors.iter().any(|p| p.multivector_config.is_some()) {
        return None;
    }
    let dims: u64 = vectors.iter().map(|p| p.size).sum();
    Some(info.points_count? * dims * 4)
}
