//! The Qdrant sink: fenced, idempotent writes over gRPC.

mod batch;
pub mod collections;
mod encode;
pub mod fence;
pub mod mapping;
mod operations;
mod shards;
mod sink;

pub use sink::QdrantSink;

use crate::config::QdrantConfig;
use crate::error::Error;
use qdrant_client::Qdrant;
use std::time::Duration;

/// A client for `[qdrant]`. Never logs the API key.
pub fn client(cfg: &QdrantConfig) -> Result<Qdrant, Error> {
    let mut b = Qdrant::from_url(&cfg.url)
        .timeout(Duration::from_millis(cfg.timeout_ms))
        .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(5_000)))
        .skip_compatibility_check();
    if let Some(key) = &cfg.api_key {
        b = b.api_key(key.clone());
    }
    b.build()
        .map_err(Error::qdrant("build client (check qdrant.url)"))
}
