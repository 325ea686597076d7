//! [`QdrantSink`]: ops → ordered, fenced `UpdateBatch` requests with `wait = true`.
//!
//! # Where a fence is needed
//!
//! At start the sink reads the newest position stored in each collection (`M`, one ordered
//! scroll over the `_pg2qdrant.lsn` payload index). A change from the stream whose commit LSN is
//! above `M` cannot meet a newer point: every point held at start is at or below `M`, and
//! everything this process writes afterwards comes from the one stream, written in commit order
//! per point (batches in flight never share a point). So such upserts and deletes are written
//! without the position pre-read and without a filter. What stays fenced: changes at or below
//! `M` (the replay after a restart: the checkpoint may lag what was applied), TOAST merges,
//! truncates and sweeps, and copied rows (always: a copy may meet points of another writer of
//! positions, such as `verify --repair`). Several tables into one collection share the one
//! stream and its order, so the rule holds per collection. It assumes this connector is the
//! only writer of `_pg2qdrant` positions into its collections (points without one are foreign
//! and may be overwritten anyway); a collection whose `M` could not be read is fenced entirely.
//!
//! How ops become Qdrant operations is `operations`; custom-sharded collections, `shards`.
//!
//! Qdrant does not apply a batch atomically; every operation is idempotent and fenced, so a
//! repeated or replayed request converges to the same state.

use super::mapping;
use super::operations::{free, operations, Fencing, Stored};
use crate::config::META_FIELD;
use crate::error::Error;
use crate::event::{Op, PointKey};
use crate::sink::Sink;
use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
use qdrant_client::qdrant::{
    Direction, FieldType, GetPointsBuilder, OrderByBuilder, PayloadIncludeSelector,
    ScrollPointsBuilder,
};
use qdrant_client::Qdrant;
use std::collections::HashMap;
use std::sync::RwLock;

pub struct QdrantSink {
    client: Qdrant,
    /// Batch writes (no copy of the request; see `batch`).
    writer: super::batch::BatchWriter,
    /// Per collection, the newest commit LSN stored at start: stream changes above it need no
    /// fence (see the module doc). Absent: everything is fenced.
    newest: RwLock<HashMap<String, u64>>,
    /// Collections replaced by a rebuild: ops for them are no longer written.
    retired: RwLock<std::collections::HashSet<String>>,
    /// Custom-sharded collections and their shard keys (see `shards`).
    sharding: super::shards::Sharding,
    /// Whether this sink is the one writer of stream positions into its collections (`run`),
    /// so a point absent at the pre-read of a fenced upsert can only appear by a write fenced
    /// below the stream (see `operations::Fencing`). False for appliers and repairs.
    sole_writer: bool,
}

impl QdrantSink {
    pub fn new(client: Qdrant) -> Result<Self, Error> {
        Ok(Self {
            writer: super::batch::BatchWriter::new(&client)?,
            client,
            newest: RwLock::new(HashMap::new()),
            retired: RwLock::default(),
            sharding: Default::default(),
            sole_writer: false,
        })
    }

    /// This sink is the only writer of stream positions into its collections (`run`: one
    /// stream, one writer; repairs write below the stream's positions).
    pub fn sole_writer(mut self) -> Self {
        self.sole_writer = true;
        self
    }

    /// Reads the newest position stored in `collection` (indexing `_pg2qdrant.lsn` first, which
    /// ordering needs) and lets later stream changes above it skip the fence. Returns it.
    pub async fn learn_newest(&self, collection: &str) -> Result<u64, Error> {
        let field = format!("{META_FIELD}.lsn");
        super::collections::create_index(&self.client, collection, &field, FieldType::Integer)
            .await?;
        let page = self
            .client
            .scroll(
                ScrollPointsBuilder::new(collection)
                    .order_by(OrderByBuilder::new(&field).direction(Direction::Desc as i32))
                    .limit(1)
                    .with_payload(SelectorOptions::Include(PayloadIncludeSelector {
                        fields: vec![field.clone()],
                    }))
                    .with_vectors(false),
            )
            .await
            .map_err(Error::qdrant(format!(
                "read the newest position in {collection}"
            )))?;
        let newest = page
            .result
            .first()
            .and_then(|p| {
                let payload =
                    serde_json::Value::from(qdrant_client::Payload::from(p.payload.clone()));
                mapping::stored_position(&payload).map(|pos| pos.commit_lsn)
            })
            .unwrap_or(0);
        self.newest
            .write()
            .expect("newest lock")
            .insert(collection.to_owned(), newest);
        Ok(newest)
    }

    /// Points of `table` in `collection` whose vector `vector` (its `_pg2qdrant.embedded` record
    /// name) was embedded by a model other than `identity` (an exact count).
    pub async fn embedded_by_other_models(
        &self,
        collection: &str,
        table: &str,
        vector: &str,
        identity: &str,
    ) -> Result<u64, Error> {
        use qdrant_client::qdrant::{Condition, CountPointsBuilder, Filter};
        let field = format!("{META_FIELD}.embedded.{vector}.model");
        let filter = Filter {
            must: vec![Condition::matches(
                format!("{META_FIELD}.table"),
                table.to_owned(),
            )],
            must_not: vec![
                Condition::matches(field.clone(), identity.to_owned()),
                Condition::is_empty(field),
            ],
            ..Default::default()
        };
        let counted = self
            .client
            .count(
                CountPointsBuilder::new(collection)
                    .filter(filter)
                    .exact(true),
            )
            .await
            .map_err(Error::qdrant(format!(
                "count points of other models in {collection}"
            )))?;
        Ok(counted.result.map_or(0, |r| r.count))
    }

    /// Ops for `collection` are skipped from now on, and a write to it that fails counts as
    /// done: a rebuild switched its alias away and drops it.
    pub fn retire(&self, collection: &str) {
        self.retired
            .write()
            .expect("retired lock")
            .insert(collection.to_owned());
    }

    fn is_retired(&self, collection: &str) -> bool {
        self.retired
            .read()
            .expect("retired lock")
            .contains(collection)
    }

    fn unfenced_above(&self, collection: &str) -> Option<u64> {
        self.newest
            .read()
            .expect("newest lock")
            .get(collection)
            .copied()
    }

    pub fn client(&self) -> &Qdrant {
        &self.client
    }
}

impl QdrantSink {
    /// Reads `_pg2qdrant.{lsn,seq}` of every point a fenced upsert in `ops` targets (one
    /// request; none when every upsert is free).
    async fn stored_positions(
        &self,
        collection: &str,
        ops: &[&Op],
        above: Option<u64>,
    ) -> Result<Stored, Error> {
        let keys: Vec<&PointKey> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Upsert { doc, copied, .. } if !free(doc.position, *copied, above) => {
                    Some(&doc.key)
                }
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            return Ok(Stored::new());
        }
        let by_id: HashMap<_, _> = keys
            .iter()
            .map(|k| (mapping::point_id(k), (*k).clone()))
            .collect();
        let found = self
            .client
            .get_points(
                GetPointsBuilder::new(collection, by_id.keys().cloned().collect::<Vec<_>>())
                    .with_payload(SelectorOptions::Include(PayloadIncludeSelector {
                        fields: vec![META_FIELD.to_owned()],
                    }))
                    .with_vectors(false),
            )
            .await
            .map_err(Error::qdrant(format!(
                "read stored positions in {collection}"
            )))?;
        Ok(found
            .result
            .into_iter()
            .filter_map(|p| {
                let key = by_id.get(p.id.as_ref()?)?.clone();
                let payload = serde_json::Value::from(qdrant_client::Payload::from(p.payload));
                Some((key, mapping::stored_position(&payload)))
            })
            .collect())
    }
}

impl Sink for QdrantSink {
    async fn write(&self, ops: &[Op]) -> Result<crate::sink::Skipped, Error> {
        let mut skipped = crate::sink::Skipped::new();
        let mut i = 0;
        while i < ops.len() {
            let collection = ops[i].collection().clone();
            let mut segment = Vec::new();
            while let Some(o) = ops.get(i).filter(|o| *o.collection() == collection) {
                segment.push(o);
                i += 1;
            }
            if self.is_retired(&collection) {
                continue;
            }
            let above = self.unfenced_above(&collection);
            let written = async {
                let keys = self
                    .sharding
                    .prepare(&self.client, &collection, &segment)
                    .await?;
                let stored = self.stored_positions(&collection, &segment, above).await?;
                let fencing = Fencing {
                    stored: &stored,
                    above,
                    sole_writer: self.sole_writer,
                };
                let operations = operations(&segment, &fencing, keys.as_ref());
                let superseded = fencing.superseded(&segment);
                if !operations.is_empty() {
                    self.writer
                        .write(&collection, &operations)
                        .await
                        .map_err(Error::qdrant(format!(
                            "write {} ops to collection {collection}",
                            segment.len()
                        )))?;
                }
                Ok::<_, Error>(superseded)
            };
            match written.await {
                // Dropped meanwhile by the rebuild that retired it.
                Err(_) if self.is_retired(&collection) => {}
                Ok(0) => {}
                Ok(n) => skipped.push((collection, n)),
                Err(e) => return Err(e),
            }
        }
        Ok(skipped)
    }

    async fn embedded(
        &self,
        collection: &str,
        keys: &[PointKey],
    ) -> Result<HashMap<PointKey, (serde_json::Value, crate::event::Vectors)>, Error> {
        let by_id: HashMap<_, _> = keys.iter().map(|k| (mapping::point_id(k), k)).collect();
        let field = format!("{META_FIELD}.embedded");
        let found = self
            .client
            .get_points(
                GetPointsBuilder::new(collection, by_id.keys().cloned().collect::<Vec<_>>())
                    .with_payload(SelectorOptions::Include(PayloadIncludeSelector {
                        fields: vec![field],
                    }))
                    .with_vectors(true),
            )
            .await
            .map_err(Error::qdrant(format!(
                "read embedded vectors in {collection}"
            )))?;
        Ok(found
            .result
            .into_iter()
            .filter_map(|p| {
                let key = (*by_id.get(p.id.as_ref()?)?).clone();
                let payload = serde_json::Value::from(qdrant_client::Payload::from(p.payload));
                let record = payload.get(META_FIELD)?.get("embedded")?.clone();
                Some((key, (record, mapping::stored_vectors(p.vectors?)?)))
            })
            .collect())
    }

    async fn missing(&self, collection: &str, keys: &[PointKey]) -> Result<Vec<PointKey>, Error> {
        let ids: Vec<_> = keys.iter().map(mapping::point_id).collect();
        let found = self
            .client
            .get_points(
                GetPointsBuilder::new(collection, ids)
                    .with_payload(false)
                    .with_vectors(false),
            )
            .await
            .map_err(Error::qdrant(format!("read points of {collection}")))?;
        let present: Vec<_> = found.result.into_iter().filter_map(|p| p.id).collect();
        Ok(keys
            .iter()
            .filter(|k| !present.contains(&mapping::point_id(k)))
            .cloned()
            .collect())
    }
}
