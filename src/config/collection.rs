//! `[tables.collection_config]`: how pg2qdrant creates a table's collection (vectors, HNSW,
//! shards and replicas, storage, payload indexes, alias).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexType {
    Keyword,
    Integer,
    Float,
    Bool,
    Datetime,
    Uuid,
    Text,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadIndexConfig {
    pub field: String,
    #[serde(rename = "type")]
    pub kind: IndexType,
    /// Qdrant's multitenancy index (keyword or uuid fields): points of one value are stored
    /// together, so searches filtered to one tenant (e.g. one `session_id`) read only its data.
    #[serde(default)]
    pub is_tenant: bool,
}

/// `sharding = { key = "<column>" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShardingConfig {
    /// The column whose value (as text) names the row's shard key, e.g. `session_id`.
    pub key: String,
}

/// How to create the collection when it is missing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Create the collection when it does not exist.
    #[serde(default = "super::yes")]
    pub create: bool,
    #[serde(default)]
    pub hnsw_m: Option<u64>,
    #[serde(default)]
    pub hnsw_ef_construct: Option<u64>,
    /// Kilobytes of vectors below which search scans instead of using HNSW.
    #[serde(default)]
    pub full_scan_threshold: Option<u64>,
    #[serde(default)]
    pub on_disk_payload: bool,
    /// Vectors kept on disk (memory-mapped) instead of in RAM (each vector of the collection).
    #[serde(default)]
    pub on_disk: bool,
    /// Shards of the collection (Qdrant's default: 1). Qdrant applies one shard's writes one at
    /// a time, so `qdrant.parallel` writes spread only over several shards.
    #[serde(default)]
    pub shard_number: Option<u32>,
    /// Copies of each shard in a distributed cluster (Qdrant's default: 1).
    #[serde(default)]
    pub replication_factor: Option<u32>,
    /// Copies that must confirm a write before it counts (at most `replication_factor`).
    #[serde(default)]
    pub write_consistency_factor: Option<u32>,
    /// Qdrant's custom sharding: each row's point lives in the shard key named by a column's
    /// value (created on first use; `shard_number` shards per key). Absent: Qdrant places
    /// points by id.
    #[serde(default)]
    pub sharding: Option<ShardingConfig>,
    #[serde(default)]
    pub payload_indexes: Vec<PayloadIndexConfig>,
    /// Reach the collection through a Qdrant alias of this name: when it is created, the
    /// collection is `<name>_<UTC time>` and the alias points at it. `pg2qdrant rebuild` needs
    /// it (a new collection is built and the alias switched).
    #[serde(default)]
    pub alias: bool,
}

impl Default for CollectionConfig {
    fn default() -> Self {
        Self {
            alias: false,
            create: true,
            hnsw_m: None,
            hnsw_ef_construct: None,
            full_scan_threshold: None,
            on_disk_payload: false,
            on_disk: false,
            shard_number: None,
            replication_factor: None,
            write_consistency_factor: None,
            sharding: None,
            payload_indexes: Vec::new(),
        }
    }
}
