//! Ops of one collection → its ordered list of Qdrant update operations (pure: no I/O).
//!
//! Consecutive ops go into one request, in order:
//! - a run of upserts → one `Upsert` with `update_filter` = per-point fence (last op per id wins
//!   within the run: it holds the latest position). The stored positions are read first (one
//!   request, `sink`): points already newer are left out of the request. Every point keeps its
//!   fence clause, also one the read found absent (Qdrant inserts a missing point whatever the
//!   filter, and checks the clause only against a point that exists when the write applies),
//!   except where the writer is the sole writer of stream positions ([`Fencing`]);
//! - a run of deletes → one `DeletePoints` selecting by the per-point fence;
//! - a merge → `SetPayload` of its metadata (into `_pg2qdrant`, fenced: it moves the position),
//!   then `UpdateVectors` (if a vector changed), `SetPayload` of the records of the vectors it
//!   embedded (into `_pg2qdrant.embedded`, keeping the others) and of the row's fields, each
//!   only where the point is still at the merge's position (`fence::at`);
//! - a truncate → `DeletePoints` of every point of that table older than the truncate;
//! - a row's chunks past its count → `DeletePoints` selecting them by table, key and
//!   `chunk_index`, fenced (see `mapping::chunk`).
//!
//! Ops that are [`free`] (stream changes above the newest position stored at start, see `sink`)
//! go without a fence. In a custom-sharded collection (`keys` given, see `shards`) upserts are
//! split by shard key, each run of upserts is followed by the delete of its ids from every other
//! key (fenced like the upsert), and every other operation names all keys.

use super::encode::Update;
use super::shards::Keys;
use super::{fence, mapping};
use crate::config::META_FIELD;
use crate::event::{Document, Meta, Op, PointKey};
use crate::lsn::Position;
use qdrant_client::qdrant::points_update_operation::{
    DeletePoints, Operation, SetPayload, UpdateVectors,
};
use qdrant_client::qdrant::{Condition, Filter, PointsUpdateOperation, ShardKeySelector};
use std::collections::{BTreeMap, HashMap};

fn op(operation: Operation) -> Update<'static> {
    Update::Other(PointsUpdateOperation {
        operation: Some(operation),
    })
}

fn delete_where(filter: Filter, shard_key_selector: Option<ShardKeySelector>) -> Update<'static> {
    op(Operation::DeletePoints(DeletePoints {
        points: Some(filter.into()),
        shard_key_selector,
    }))
}

/// Stored positions of the points an upsert may touch, read just before the write: `None` for a
/// point that exists without a position. Points not in the map did not exist.
pub type Stored = HashMap<PointKey, Option<Position>>;

/// Whether an op of the stream with this position may be written without a fence: above the
/// collection's newest stored commit LSN at start (`above`), and not a copied row.
pub fn free(position: Position, copied: bool, above: Option<u64>) -> bool {
    !copied && above.is_some_and(|m| position.commit_lsn > m)
}

/// What the fences of one write go by.
pub struct Fencing<'a> {
    /// The stored positions of the points the write's fenced upserts target, read just before.
    pub stored: &'a Stored,
    /// The newest commit LSN stored at start: stream changes above it go unfenced ([`free`]).
    pub above: Option<u64>,
    /// Whether the writer is the only writer of stream positions into the collection (`run`).
    /// Then a point the read found absent can appear before the write only by another process's
    /// write of a state the stream also carries (a repair or a replay, at its read's position):
    /// if this older change replaces it, the stream goes on to write every later change of that
    /// row itself, so the point converges (a verify in between may see it behind), and one
    /// `has_id` clause for all absent points is enough. Otherwise (appliers of one group
    /// across a rebalance, repairs) each point keeps its own clause: Qdrant inserts a missing
    /// point whatever the filter and tests the clause only against a point that exists when
    /// the write applies, so a newer point that appeared meanwhile is never replaced. The own
    /// clauses cost Qdrant about 45 µs per inserted row (a copy into an empty collection, in
    /// the bench of 2026-12-07), hence the shortcut where it is safe.
    pub sole_writer: bool,
}

impl Fencing<'_> {
    /// Whether the stored point already holds `doc`'s change or a later one (what the fence
    /// would skip anyway: [`operations`] leaves it out of the request).
    fn holds(&self, doc: &Document) -> bool {
        matches!(self.stored.get(&doc.key), Some(Some(p)) if *p >= doc.position)
    }

    /// Upserts [`operations`] leaves out because their point already holds their change.
    pub fn superseded(&self, ops: &[&Op]) -> u64 {
        ops.iter()
            .filter(|o| match o {
                Op::Upsert { doc, copied, .. } => {
                    !free(doc.position, *copied, self.above) && self.holds(doc)
                }
                _ => false,
            })
            .count() as u64
    }
}

/// Translates ops of one collection into its ordered operation list. `fencing.stored` leaves
/// out upserts whose point already holds their position or a later one. Ops that are [`free`]
/// are written without a fence (see the module doc). `keys`: the shard keys of a
/// custom-sharded collection (`None`: sharded by id).
pub fn operations<'d>(ops: &[&'d Op], fencing: &Fencing, keys: Option<&Keys>) -> Vec<Update<'d>> {
    let target = Target {
        fencing,
        everywhere: match keys {
            None => Some(None),
            Some(k) => k.all().map(Some),
        },
        sharded: keys.is_some(),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        let run = |same: fn(&Op) -> bool| ops[i..].iter().take_while(|o| same(o)).count();
        match ops[i] {
            Op::Upsert { .. } => {
                let n = run(|o| matches!(o, Op::Upsert { .. }));
                target.upserts(&ops[i..i + n], &mut out);
                i += n;
            }
            Op::Delete { .. } => {
                let n = run(|o| matches!(o, Op::Delete { .. }));
                target.deletes(&ops[i..i + n], &mut out);
                i += n;
            }
            Op::Merge { doc, .. } => {
                target.merge(doc, &mut out);
                i += 1;
            }
            Op::DeleteChunks {
                table,
                key,
                from,
                keep,
                position,
                ..
            } => {
                let filter =
                    fence::row_chunks_older_than(&table.to_string(), key, *from, keep, *position);
                target.delete_everywhere(filter, &mut out);
                i += 1;
            }
            Op::Truncate {
                table, position, ..
            } => {
                target.delete_everywhere(
                    fence::table_older_than(&table.to_string(), *position),
                    &mut out,
                );
                i += 1;
            }
        }
    }
    out
}

/// What the ops of one [`operations`] call are written against.
struct Target<'a> {
    fencing: &'a Fencing<'a>,
    /// Where an op that may meet its point in any shard key goes: `Some(None)` unsharded;
    /// `None` sharded without any key yet (no point exists: the op is skipped).
    everywhere: Option<Option<ShardKeySelector>>,
    sharded: bool,
}

impl Target<'_> {
    /// A run of upserts: the last op per id wins (it has the highest position); free ones go
    /// unfenced, the others each with their own clause; in a custom-sharded collection, then
    /// one delete of these ids from every other shard key.
    fn upserts<'d>(&self, run: &[&'d Op], out: &mut Vec<Update<'d>>) {
        let mut latest: HashMap<&PointKey, usize> = HashMap::new();
        for (j, o) in run.iter().enumerate() {
            if let Op::Upsert { doc, .. } = o {
                latest.insert(&doc.key, j);
            }
        }
        let mut keep: Vec<usize> = latest.into_values().collect();
        keep.sort_unstable();
        let (free_docs, docs): (Vec<_>, Vec<_>) = keep
            .iter()
            .map(|&j| match run[j] {
                Op::Upsert { doc, copied, .. } => (doc, *copied),
                _ => unreachable!("run holds upserts only"),
            })
            .partition(|(d, copied)| free(d.position, *copied, self.fencing.above));
        // Clauses of the delete that removes these ids from other shard keys.
        let mut moved: Vec<Condition> = Vec::new();
        for (key, group) in by_shard(free_docs.into_iter().map(|(d, _)| d), self.sharded) {
            if let Some(k) = key {
                moved.push(
                    Filter::must([
                        Condition::has_id(group.iter().map(|d| mapping::point_id(&d.key))),
                        fence::elsewhere(k),
                    ])
                    .into(),
                );
            }
            out.push(upsert(&group, key, None));
        }
        // Stored newer: the fence would skip it anyway; leave it out of the request.
        let docs = docs
            .into_iter()
            .map(|(d, _)| d)
            .filter(|d| !self.fencing.holds(d));
        for (key, group) in by_shard(docs, self.sharded) {
            // A point the read found absent gets its own clause too unless this is the sole
            // writer (see `Fencing::sole_writer`).
            let (own, absent): (Vec<&Document>, Vec<&Document>) =
                group.iter().copied().partition(|d| {
                    !self.fencing.sole_writer || self.fencing.stored.contains_key(&d.key)
                });
            let mut filter =
                fence::per_point(own.iter().map(|d| (mapping::point_id(&d.key), d.position)));
            if !absent.is_empty() {
                filter.should.push(Condition::has_id(
                    absent.iter().map(|d| mapping::point_id(&d.key)),
                ));
            }
            if let Some(k) = key {
                moved.extend(group.iter().map(|d| {
                    Filter::must([
                        Condition::has_id([mapping::point_id(&d.key)]),
                        fence::older_than(d.position),
                        fence::elsewhere(k),
                    ])
                    .into()
                }));
            }
            out.push(upsert(&group, key, Some(filter)));
        }
        if !moved.is_empty() {
            self.delete_everywhere(Filter::should(moved), out);
        }
    }

    /// A run of deletes: free ones by id, the others fenced.
    fn deletes(&self, run: &[&Op], out: &mut Vec<Update>) {
        let Some(selector) = self.everywhere.clone() else {
            return;
        };
        let mut targets: Vec<(qdrant_client::qdrant::PointId, Position)> = Vec::new();
        let mut free_ids = Vec::new();
        for o in run {
            let Op::Delete { key, position, .. } = o else {
                unreachable!("run holds deletes only")
            };
            if free(*position, false, self.fencing.above) {
                free_ids.push(mapping::point_id(key));
            } else {
                targets.push((mapping::point_id(key), *position));
            }
        }
        if !free_ids.is_empty() {
            out.push(op(Operation::DeletePoints(DeletePoints {
                points: Some(free_ids.into()),
                shard_key_selector: selector.clone(),
            })));
        }
        if !targets.is_empty() {
            out.push(delete_where(fence::per_point(targets), selector));
        }
    }

    /// A TOAST merge. Its metadata goes first, fenced like every write: it moves the point to
    /// the merge's position. Its vectors (when one changed), the records of the vectors it
    /// embedded and its fields follow, each only where the point is still at exactly that
    /// position ([`fence::at`]). So another writer's write can never land between them and
    /// leave a point at the merge's position with older content: an older write is refused
    /// once the position moved, and a newer one that lands first makes the rest select nothing.
    /// A retried request finds the metadata in place and writes the rest again.
    fn merge(&self, doc: &Document, out: &mut Vec<Update>) {
        let Some(selector) = self.everywhere.clone() else {
            return;
        };
        let id = mapping::point_id(&doc.key);
        let parts = mapping::merge_payload(doc);
        let set = |payload: qdrant_client::Payload, key: Option<String>, fence: Filter| {
            op(Operation::SetPayload(SetPayload {
                payload: payload.into(),
                points_selector: Some(fence.into()),
                shard_key_selector: selector.clone(),
                key,
            }))
        };
        let rest = match parts.meta {
            Some(meta) => {
                let own = fence::per_point([(id.clone(), doc.position)]);
                out.push(set(meta, Some(META_FIELD.to_owned()), own));
                fence::at(id, doc.position)
            }
            // A document without metadata (tests, benches) moves no position: all fenced alike.
            None => fence::per_point([(id, doc.position)]),
        };
        if let Some(pv) = mapping::point_vectors(doc) {
            out.push(op(Operation::UpdateVectors(UpdateVectors {
                points: vec![pv],
                shard_key_selector: selector.clone(),
                update_filter: Some(rest.clone()),
            })));
        }
        if let Some(records) = parts.embedded {
            let key = format!("{META_FIELD}.{}", Meta::EMBEDDED);
            out.push(set(records, Some(key), rest.clone()));
        }
        if !doc.payload.is_empty() {
            out.push(set(parts.fields, None, rest));
        }
    }

    /// A delete by `filter` in every shard key (none without any key yet).
    fn delete_everywhere(&self, filter: Filter, out: &mut Vec<Update>) {
        if let Some(selector) = self.everywhere.clone() {
            out.push(delete_where(filter, selector));
        }
    }
}

/// Documents grouped by the shard key their row names (one group, key `None`, when the
/// collection is not custom-sharded), each group in its input order.
fn by_shard<'d>(
    docs: impl Iterator<Item = &'d Document>,
    sharded: bool,
) -> BTreeMap<Option<&'d str>, Vec<&'d Document>> {
    let mut groups: BTreeMap<Option<&str>, Vec<&Document>> = BTreeMap::new();
    for d in docs {
        let key = if sharded {
            crate::mapping::shard::of(d)
        } else {
            None
        };
        groups.entry(key).or_default().push(d);
    }
    groups
}

/// One `Upsert` of `docs` into shard key `key` (`None`: placed by id), encoded from them.
fn upsert<'d>(
    docs: &[&'d Document],
    key: Option<&str>,
    update_filter: Option<Filter>,
) -> Update<'d> {
    Update::Upsert {
        docs: docs.to_vec(),
        shard_key_selector: key.map(Keys::one),
        update_filter,
    }
}

#[cfg(test)]
mod tests;
