//! [`QdrantSink`]: ops → ordered, fenced `UpdateBatch` requests with `wait = true`.
//!
//! Consecutive ops of one collection go into one request, in order:
//! - a run of upserts → one `Upsert` with `update_filter` = per-point fence (last op per id wins
//!   within the run: it holds the latest position). The stored positions are read first (one
//!   request): points already newer are left out, and points that do not exist need no fence
//!   clause, which keeps the filter small for inserts (the common case);
//! - a run of deletes → one `DeletePoints` selecting by the per-point fence;
//! - a merge → `UpdateVectors` (if a vector changed) then `SetPayload`, both fenced, so the
//!   position in the payload moves only after the vectors were written;
//! - a truncate → `DeletePoints` of every point of that table older than the truncate.
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
    GetPointsBuilder, PayloadIncludeSelector, PointsUpdateOperation, UpdateBatchPointsBuilder,
};
use qdrant_client::Qdrant;
use std::collections::HashMap;

pub struct QdrantSink {
    client: Qdrant,
}

impl QdrantSink {
    pub fn new(client: Qdrant) -> Self {
        Self { client }
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

/// Translates ops of one collection into its ordered operation list. `stored` lets upserts of
/// points that did not exist skip the per-point fence clause (the fence is for existing points;
/// a point that appears meanwhile still matches `has_id` of the absent list and is replaced).
pub fn operations(ops: &[&Op], stored: &Stored) -> Vec<PointsUpdateOperation> {
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
                let docs: Vec<_> = keep
                    .iter()
                    .map(|&j| match ops[j] {
                        Op::Upsert { doc, .. } => doc,
                        _ => unreachable!("run holds upserts only"),
                    })
                    .collect();
                debug_assert!(start < i);
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
                while let Some(Op::Delete { key, position, .. }) = ops.get(i) {
                    targets.push((mapping::point_id(key), *position));
                    i += 1;
                }
                out.push(delete_where(fence::per_point(targets)));
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
    /// Reads `_pg2qdrant.{lsn,seq}` of every point an upsert in `ops` targets (one request).
    async fn stored_positions(&self, collection: &str, ops: &[&Op]) -> Result<Stored, Error> {
        let keys: Vec<&PointKey> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Upsert { doc, .. } => Some(&doc.key),
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
                let meta = serde_json::Value::from(qdrant_client::Payload::from(p.payload));
                let pos = meta.get(META_FIELD).and_then(|m| {
                    Some(Position {
                        commit_lsn: m.get("lsn")?.as_u64()?,
                        seq: m.get("seq")?.as_u64()?,
                    })
                });
                Some((key, pos))
            })
            .collect())
    }
}

impl Sink for QdrantSink {
    async fn write(&self, ops: &[Op]) -> Result<(), Error> {
        let mut i = 0;
        while i < ops.len() {
            let collection = ops[i].collection().clone();
            let mut segment = Vec::new();
            while let Some(o) = ops.get(i).filter(|o| *o.collection() == collection) {
                segment.push(o);
                i += 1;
            }
            let stored = self.stored_positions(&collection, &segment).await?;
            let operations = operations(&segment, &stored);
            if operations.is_empty() {
                continue;
            }
            self.client
                .update_points_batch(
                    UpdateBatchPointsBuilder::new(collection.as_ref(), operations).wait(true),
                )
                .await
                .map_err(Error::qdrant(format!(
                    "write {} ops to collection {collection}",
                    segment.len()
                )))?;
        }
        Ok(())
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
            collection: Arc::from("c"),
            doc: Document {
                key: PointKey::Num(id),
                payload: Default::default(),
                vectors: None,
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
        let out = operations(&refs, &stored);
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
        let out = operations(&refs, &stored);
        let list = upsert_of(&out[0]);
        assert_eq!(list.points.len(), 1);
        assert_eq!(
            list.points[0].id,
            Some(mapping::point_id(&PointKey::Num(1)))
        );
        let everything_stale = operations(&refs[2..], &stored);
        assert!(everything_stale.is_empty());
    }
}
