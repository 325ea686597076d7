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
//! Consecutive ops of one collection go into one request, in order:
//! - a run of upserts → one `Upsert` with `update_filter` = per-point fence (last op per id wins
//!   within the run: it holds the latest position). The stored positions are read first (one
//!   request): points already newer are left out, and points that do not exist need no fence
//!   clause, which keeps the filter small for inserts (the common case);
//! - a run of deletes → one `DeletePoints` selecting by the per-point fence;
//! - a merge → `UpdateVectors` (if a vector changed) then `SetPayload`, both fenced, so the
//!   position in the payload moves only after the vectors were written;
//! - a truncate → `DeletePoints` of every point of that table older than the truncate;
//! - a row's chunks past its count → `DeletePoints` selecting them by table, key and
//!   `chunk_index`, fenced (see `mapping::chunk`).
//!
//! Qdrant does not apply a batch atomically; every operation is idempotent and fenced, so a
//! repeated or replayed request converges to the same state.

use super::{fence, mapping};
use crate::config::META_FIELD;
use crate::error::Error;
use crate::event::{Op, PointKey};
use crate::lsn::Position;
use crate::sink::Sink;
use qdrant_client::qdrant::points_update_operation::{
    DeletePoints, Operation, PointStructList, SetPayload, UpdateVectors,
};
use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
use qdrant_client::qdrant::{
    CreateFieldIndexCollectionBuilder, Direction, FieldType, GetPointsBuilder, OrderByBuilder,
    PayloadIncludeSelector, PointsUpdateOperation, ScrollPointsBuilder,
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
}

impl QdrantSink {
    pub fn new(client: Qdrant) -> Result<Self, Error> {
        Ok(Self {
            writer: super::batch::BatchWriter::new(&client)?,
            client,
            newest: RwLock::new(HashMap::new()),
            retired: RwLock::default(),
        })
    }

    /// Reads the newest position stored in `collection` (indexing `_pg2qdrant.lsn` first, which
    /// ordering needs) and lets later stream changes above it skip the fence. Returns it.
    pub async fn learn_newest(&self, collection: &str) -> Result<u64, Error> {
        let field = format!("{META_FIELD}.lsn");
        self.client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(collection, &field, FieldType::Integer)
                    .wait(true),
            )
            .await
            .map_err(Error::qdrant(format!("index {field} in {collection}")))?;
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

fn op(operation: Operation) -> PointsUpdateOperation {
    PointsUpdateOperation {
        operation: Some(operation),
    }
}

fn delete_where(filter: qdrant_client::qdrant::Filter) -> PointsUpdateOperation {
    op(Operation::DeletePoints(DeletePoints {
        points: Some(filter.into()),
        shard_key_selector: None,
    }))
}

/// Stored positions of the points an upsert may touch, read just before the write: `None` for a
/// point that exists without a position. Points not in the map did not exist.
pub type Stored = HashMap<PointKey, Option<Position>>;

/// Upserts [`operations`] leaves out because the stored point already holds their position or
/// a later one (what the fence would skip).
fn superseded(ops: &[&Op], stored: &Stored, above: Option<u64>) -> u64 {
    ops.iter()
        .filter(|o| match o {
            Op::Upsert { doc, copied, .. } => {
                !free(doc.position, *copied, above)
                    && matches!(stored.get(&doc.key), Some(Some(p)) if *p >= doc.position)
            }
            _ => false,
        })
        .count() as u64
}

/// Whether an op of the stream with this position may be written without a fence: above the
/// collection's newest stored commit LSN at start (`above`), and not a copied row.
fn free(position: Position, copied: bool, above: Option<u64>) -> bool {
    !copied && above.is_some_and(|m| position.commit_lsn > m)
}

/// Translates ops of one collection into its ordered operation list. `stored` lets upserts of
/// points that did not exist skip the per-point fence clause (the fence is for existing points;
/// a point that appears meanwhile still matches `has_id` of the absent list and is replaced).
/// Ops that are [`free`] under `above` are written without a fence (see the module doc).
pub fn operations(ops: &[&Op], stored: &Stored, above: Option<u64>) -> Vec<PointsUpdateOperation> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        match ops[i] {
            Op::Upsert { .. } => {
                // Last op per id wins inside the run (it has the highest position).
                let mut latest: HashMap<&PointKey, usize> = HashMap::new();
                let start = i;
                while let Some(Op::Upsert { doc, .. }) = ops.get(i) {
                    latest.insert(&doc.key, i);
                    i += 1;
                }
                let mut keep: Vec<usize> = latest.into_values().collect();
                keep.sort_unstable();
                debug_assert!(start < i);
                let (free_docs, docs): (Vec<_>, Vec<_>) = keep
                    .iter()
                    .map(|&j| match ops[j] {
                        Op::Upsert { doc, copied, .. } => (doc, *copied),
                        _ => unreachable!("run holds upserts only"),
                    })
                    .partition(|(d, copied)| free(d.position, *copied, above));
                if !free_docs.is_empty() {
                    out.push(op(Operation::Upsert(PointStructList {
                        points: free_docs.iter().map(|(d, _)| mapping::point(d)).collect(),
                        shard_key_selector: None,
                        update_filter: None,
                        update_mode: None,
                    })));
                }
                let docs: Vec<_> = docs.into_iter().map(|(d, _)| d).collect();
                // Stored newer: the fence would skip it anyway; leave it out of the request.
                let docs: Vec<_> = docs
                    .into_iter()
                    .filter(|d| !matches!(stored.get(&d.key), Some(Some(p)) if *p >= d.position))
                    .collect();
                if docs.is_empty() {
                    continue;
                }
                let (existing, absent): (
                    Vec<&crate::event::Document>,
                    Vec<&crate::event::Document>,
                ) = docs
                    .iter()
                    .copied()
                    .partition(|d| stored.contains_key(&d.key));
                let mut filter = fence::per_point(
                    existing
                        .iter()
                        .map(|d| (mapping::point_id(&d.key), d.position)),
                );
                if !absent.is_empty() {
                    filter.should.push(qdrant_client::qdrant::Condition::has_id(
                        absent.iter().map(|d| mapping::point_id(&d.key)),
                    ));
                }
                out.push(op(Operation::Upsert(PointStructList {
                    points: docs.iter().map(|d| mapping::point(d)).collect(),
                    shard_key_selector: None,
                    update_filter: Some(filter),
                    update_mode: None,
                })));
            }
            Op::Delete { .. } => {
                let mut targets: Vec<(qdrant_client::qdrant::PointId, Position)> = Vec::new();
                let mut free_ids = Vec::new();
                while let Some(Op::Delete { key, position, .. }) = ops.get(i) {
                    if free(*position, false, above) {
                        free_ids.push(mapping::point_id(key));
                    } else {
                        targets.push((mapping::point_id(key), *position));
                    }
                    i += 1;
                }
                if !free_ids.is_empty() {
                    out.push(op(Operation::DeletePoints(DeletePoints {
                        points: Some(free_ids.into()),
                        shard_key_selector: None,
                    })));
                }
                if !targets.is_empty() {
                    out.push(delete_where(fence::per_point(targets)));
                }
            }
            Op::Merge { doc, .. } => {
                let own = || fence::per_point([(mapping::point_id(&doc.key), doc.position)]);
                if let Some(pv) = mapping::point_vectors(doc) {
                    out.push(op(Operation::UpdateVectors(UpdateVectors {
                        points: vec![pv],
                        shard_key_selector: None,
                        update_filter: Some(own()),
                    })));
                }
                out.push(op(Operation::SetPayload(SetPayload {
                    payload: mapping::payload(doc).into(),
                    points_selector: Some(own().into()),
                    shard_key_selector: None,
                    key: None,
                })));
                i += 1;
            }
            Op::DeleteChunks {
                table,
                key,
                from,
                position,
                ..
            } => {
                out.push(delete_where(fence::row_chunks_older_than(
                    &table.to_string(),
                    key,
                    *from,
                    *position,
                )));
                i += 1;
            }
            Op::Truncate {
                table, position, ..
            } => {
                out.push(delete_where(fence::table_older_than(
                    &table.to_string(),
                    *position,
                )));
                i += 1;
            }
        }
    }
    out
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
                let stored = self.stored_positions(&collection, &segment, above).await?;
                let operations = operations(&segment, &stored, above);
                let superseded = superseded(&segment, &stored, above);
                if !operations.is_empty() {
                    self.writer
                        .write(&collection, operations)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Document;
    use qdrant_client::qdrant::condition::ConditionOneOf;
    use std::sync::Arc;

    fn upsert(id: u64, lsn: u64, seq: u64) -> Op {
        Op::Upsert {
            copied: false,
            collection: Arc::from("c"),
            doc: Document {
                key: PointKey::Num(id),
                payload: Default::default(),
                vectors: None,
                embed: Vec::new(),
                anchor: None,
                position: Position {
                    commit_lsn: lsn,
                    seq,
                },
            },
        }
    }

    fn upsert_of(op: &PointsUpdateOperation) -> &PointStructList {
        match &op.operation {
            Some(Operation::Upsert(list)) => list,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absent_points_need_no_fence_clause_existing_ones_get_their_own() {
        let ops = [upsert(1, 10, 0), upsert(2, 10, 1)];
        let refs: Vec<&Op> = ops.iter().collect();
        let stored: Stored = [(
            PointKey::Num(2),
            Some(Position {
                commit_lsn: 5,
                seq: 0,
            }),
        )]
        .into_iter()
        .collect();
        let out = operations(&refs, &stored, None);
        let filter = upsert_of(&out[0]).update_filter.clone().unwrap();
        assert_eq!(
            filter.should.len(),
            2,
            "one clause for point 2, one has_id for absent point 1"
        );
        let kinds: Vec<_> = filter
            .should
            .iter()
            .map(|c| matches!(c.condition_one_of, Some(ConditionOneOf::HasId(_))))
            .collect();
        assert_eq!(kinds, [false, true]);
    }

    #[test]
    fn points_stored_newer_are_left_out_and_last_op_per_id_wins() {
        let ops = [upsert(1, 10, 0), upsert(1, 10, 3), upsert(2, 10, 1)];
        let refs: Vec<&Op> = ops.iter().collect();
        let stored: Stored = [(
            PointKey::Num(2),
            Some(Position {
                commit_lsn: 20,
                seq: 0,
            }),
        )]
        .into_iter()
        .collect();
        let out = operations(&refs, &stored, None);
        let list = upsert_of(&out[0]);
        assert_eq!(list.points.len(), 1);
        assert_eq!(
            list.points[0].id,
            Some(mapping::point_id(&PointKey::Num(1)))
        );
        let everything_stale = operations(&refs[2..], &stored, None);
        assert!(everything_stale.is_empty());
    }

    #[test]
    fn stream_changes_above_the_newest_stored_position_go_unfenced_copies_never() {
        let mut copied = upsert(3, 30, 0);
        if let Op::Upsert { copied: c, .. } = &mut copied {
            *c = true;
        }
        let ops = [upsert(1, 30, 0), upsert(2, 10, 0), copied];
        let refs: Vec<&Op> = ops.iter().collect();
        let out = operations(&refs, &Stored::new(), Some(20));
        assert_eq!(out.len(), 2, "{out:?}");
        let free = upsert_of(&out[0]);
        assert!(free.update_filter.is_none());
        assert_eq!(free.points.len(), 1, "only the stream change above 20");
        let fenced = upsert_of(&out[1]);
        assert!(fenced.update_filter.is_some());
        assert_eq!(
            fenced.points.len(),
            2,
            "the replayed change and the copied row"
        );
        // Unknown newest position: everything fenced.
        let out = operations(&refs, &Stored::new(), None);
        assert_eq!(out.len(), 1);
        assert!(upsert_of(&out[0]).update_filter.is_some());
    }

    #[test]
    fn deletes_above_the_newest_stored_position_select_by_id() {
        let del = |id: u64, lsn: u64| Op::Delete {
            collection: Arc::from("c"),
            key: PointKey::Num(id),
            position: Position {
                commit_lsn: lsn,
                seq: 0,
            },
        };
        let ops = [del(1, 30), del(2, 10)];
        let refs: Vec<&Op> = ops.iter().collect();
        let out = operations(&refs, &Stored::new(), Some(20));
        let selectors: Vec<_> = out
            .iter()
            .map(|o| match &o.operation {
                Some(Operation::DeletePoints(d)) => {
                    d.points.clone().unwrap().points_selector_one_of
                }
                other => panic!("{other:?}"),
            })
            .collect();
        use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
        assert!(matches!(selectors[0], Some(PointsSelectorOneOf::Points(_))));
        assert!(matches!(selectors[1], Some(PointsSelectorOneOf::Filter(_))));
    }
}
