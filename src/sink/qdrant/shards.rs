//! Writes into a collection with Qdrant's custom sharding
//! (`collection_config.sharding = { key = "<column>" }`).
//!
//! # Why every write names shard keys
//!
//! In a custom-sharded collection Qdrant refuses a write that names no shard key ("Shard key not
//! specified"), refuses one that names a key it does not have ("Shard key not found"), and keeps
//! points of one id in different keys apart: the same id may exist in two keys at once, and a
//! read without a selector returns only one of them. So the sink:
//!
//! - writes each upserted point into the key its row names (`_pg2qdrant.shard`, from the mapping;
//!   see `mapping::shard`), creating keys on first use (an "already exists" answer means another
//!   writer created it first: fine);
//! - after the upserts of a run, deletes the same ids from every *other* key: one `DeletePoints`
//!   across all keys selecting `has_id ∧ _pg2qdrant.shard ≠ k` (and, for fenced upserts, the
//!   point's own `older` fence). A row whose column changed thereby moves; a replay of an older
//!   change never removes a newer point, because the fence still holds;
//! - sends deletes, truncates, sweeps and chunk trims to every key (a DELETE carries only the
//!   row's key columns, not the column that placed it).
//!
//! The list of keys is read again for every write segment (one cheap request), not cached: other
//! processes (appliers sharing a topic, `verify --repair`) create keys too, and a delete sent to a
//! stale list would miss the points in keys it does not know. A key deleted meanwhile makes the
//! request fail transiently; the retry reads the list again. With no key yet there is no point,
//! and a delete is skipped.
//!
//! A TOAST merge cannot move a point (it lacks the row's unchanged columns), so the Qdrant destination
//! rewrites merges of sharded tables from the whole row read from PostgreSQL, like chunked
//! tables' (`pipeline::to_qdrant`, `pipeline::toast`).
//!
//! Whether a collection is custom-sharded is read from Qdrant once per collection (its
//! `sharding_method`), so an existing collection is written as it is, whatever the config says
//! (`check` and the start-up comparison report a difference).

use crate::error::Error;
use crate::event::Op;
use qdrant_client::qdrant::shard_key::Key;
use qdrant_client::qdrant::{
    CreateShardKey, CreateShardKeyRequest, ListShardKeysRequest, ShardKey, ShardKeySelector,
    ShardingMethod,
};
use qdrant_client::Qdrant;
use std::collections::HashMap;
use std::sync::RwLock;

/// The shard keys of one custom-sharded collection, as read for one write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keys(pub Vec<ShardKey>);

impl Keys {
    /// Every key: for writes that may meet the point in any of them. `None` when there is no
    /// key (and so no point).
    pub fn all(&self) -> Option<ShardKeySelector> {
        (!self.0.is_empty()).then(|| ShardKeySelector {
            shard_keys: self.0.clone(),
            fallback: None,
        })
    }

    /// One key: where an upsert places its points.
    pub fn one(key: &str) -> ShardKeySelector {
        ShardKeySelector {
            shard_keys: vec![keyword(key)],
            fallback: None,
        }
    }

    fn has(&self, key: &str) -> bool {
        self.0
            .iter()
            .any(|k| matches!(&k.key, Some(Key::Keyword(s)) if s == key))
    }
}

fn keyword(key: &str) -> ShardKey {
    ShardKey {
        key: Some(Key::Keyword(key.to_owned())),
    }
}

/// Which collections are custom-sharded (read once each), and their keys (read per write).
#[derive(Default)]
pub struct Sharding {
    custom: RwLock<HashMap<String, bool>>,
}

impl Sharding {
    /// `None` for a collection Qdrant shards by id; else its keys, after creating the keys the
    /// upserts among `ops` need. Fails definitely on an upsert whose document names no key.
    pub async fn prepare(
        &self,
        client: &Qdrant,
        collection: &str,
        ops: &[&Op],
    ) -> Result<Option<Keys>, Error> {
        if !self.is_custom(client, collection).await? {
            return Ok(None);
        }
        let listed = client
            .list_shard_keys(ListShardKeysRequest {
                collection_name: collection.to_owned(),
            })
            .await
            .map_err(Error::qdrant(format!("list shard keys of {collection}")))?;
        let mut keys = Keys(
            listed
                .shard_keys
                .into_iter()
                .filter_map(|d| d.key)
                .collect(),
        );
        for op in ops {
            let Op::Upsert { doc, .. } = op else { continue };
            let Some(key) = crate::mapping::shard::of(doc) else {
                return Err(Error::prerequisite(
                    format!("collection {collection} is custom-sharded, and a row written to it names no shard key (point {})", doc.key),
                    "set collection_config.sharding = { key = \"<column>\" } on every table written to it (or recreate the collection without custom sharding)",
                ));
            };
            if !keys.has(key) {
                create(client, collection, key).await?;
                keys.0.push(keyword(key));
            }
        }
        Ok(Some(keys))
    }

    async fn is_custom(&self, client: &Qdrant, collection: &str) -> Result<bool, Error> {
        if let Some(custom) = self.custom.read().expect("sharding lock").get(collection) {
            return Ok(*custom);
        }
        let info = client
            .collection_info(collection)
            .await
            .map_err(Error::qdrant(format!("read collection {collection}")))?;
        let custom = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.params)
            .and_then(|p| p.sharding_method)
            == Some(ShardingMethod::Custom as i32);
        self.custom
            .write()
            .expect("sharding lock")
            .insert(collection.to_owned(), custom);
        Ok(custom)
    }
}

/// Creates shard key `key` in `collection` with the collection's shards per key and replicas.
async fn create(client: &Qdrant, collection: &str, key: &str) -> Result<(), Error> {
    let created = client
        .create_shard_key(CreateShardKeyRequest {
            collection_name: collection.to_owned(),
            request: Some(CreateShardKey {
                shard_key: Some(keyword(key)),
                ..Default::default()
            }),
            timeout: None,
        })
        .await;
    match created {
        Ok(_) => {
            tracing::info!(collection, shard_key = key, "created shard key");
            Ok(())
        }
        // Another writer created it first.
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) => Err(Error::qdrant(format!(
            "create shard key {key:?} in {collection}"
        ))(e)),
    }
}
