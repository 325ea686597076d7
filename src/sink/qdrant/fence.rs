//! Position fences: a write never replaces a point that holds a later position.
//!
//! Each point stores the position of the change that wrote it in `_pg2qdrant.lsn` (commit LSN)
//! and `_pg2qdrant.seq` (ordinal within that transaction). A point is *older* than `(L, s)` when
//!
//! ```text
//!   lsn < L  ∨  (lsn = L ∧ seq < s)  ∨  lsn is empty (written by someone else)
//! ```
//!
//! Upserts carry one `update_filter` for the whole request, so the filter is the disjunction of
//! `has_id(x) ∧ older(pos_x)` over the request's points: an existing point passes only its own
//! clause; an absent point is inserted regardless. Deletes and merges select points with the
//! same filter. Range bounds are f64 in Qdrant: exact for LSNs below 2^53 (8 PiB of WAL).

use crate::config::META_FIELD;
use crate::lsn::Position;
use qdrant_client::qdrant::{Condition, Filter, PointId, Range};

fn lsn_field() -> String {
    format!("{META_FIELD}.lsn")
}

fn seq_field() -> String {
    format!("{META_FIELD}.seq")
}

/// `stored position < pos`, or no stored position.
pub fn older_than(pos: Position) -> Condition {
    Filter::should([
        Condition::range(
            lsn_field(),
            Range {
                lt: Some(pos.commit_lsn as f64),
                ..Default::default()
            },
        ),
        Filter::must([
            Condition::matches(lsn_field(), pos.commit_lsn as i64),
            Condition::range(
                seq_field(),
                Range {
                    lt: Some(pos.seq as f64),
                    ..Default::default()
                },
            ),
        ])
        .into(),
        Condition::is_empty(lsn_field()),
    ])
    .into()
}

/// Points placed in another shard key than `key` (custom sharding, see `shards`): the stored
/// `_pg2qdrant.shard` differs, or is absent (a point someone else wrote).
pub fn elsewhere(key: &str) -> Condition {
    Filter::must_not([Condition::matches(
        format!("{META_FIELD}.{}", crate::mapping::shard::FIELD),
        key.to_owned(),
    )])
    .into()
}

/// Points among `points` whose stored position is older than their own new position.
pub fn per_point(points: impl IntoIterator<Item = (PointId, Position)>) -> Filter {
    Filter::should(
        points
            .into_iter()
            .map(|(id, pos)| Filter::must([Condition::has_id([id]), older_than(pos)]).into()),
    )
}

/// Point `id` if its stored position is exactly `pos`: the rest of a TOAST merge, after the
/// merge's metadata moved the point there (see `operations`).
pub fn at(id: PointId, pos: Position) -> Filter {
    Filter::must([
        Condition::has_id([id]),
        Condition::matches(lsn_field(), pos.commit_lsn as i64),
        Condition::matches(seq_field(), pos.seq as i64),
    ])
}

/// Every point of `table` older than `pos` (TRUNCATE).
pub fn table_older_than(table: &str, pos: Position) -> Filter {
    Filter::must([
        Condition::matches(format!("{META_FIELD}.table"), table.to_owned()),
        older_than(pos),
    ])
}

/// The points of one row of `table` (`key`: its key columns as stored in `_pg2qdrant.key`):
/// its chunk points, in a chunked table.
pub fn row_points(table: &str, key: &serde_json::Value) -> Vec<Condition> {
    let mut must = vec![Condition::matches(
        format!("{META_FIELD}.table"),
        table.to_owned(),
    )];
    if let Some(columns) = key.as_object() {
        for (column, value) in columns {
            must.push(Condition::matches(
                format!("{META_FIELD}.key.{column}"),
                value.as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    must
}

/// The chunk points of one row (`key`: its key columns as stored in `_pg2qdrant.key`) from
/// chunk `from` on, but for the points `keep`, older than `pos` (see `mapping::chunk`).
pub fn row_chunks_older_than(
    table: &str,
    key: &serde_json::Value,
    from: usize,
    keep: &[crate::event::PointKey],
    pos: Position,
) -> Filter {
    let mut must = row_points(table, key);
    if from > 0 {
        must.push(Condition::range(
            crate::mapping::chunk::FIELDS[0],
            Range {
                gte: Some(from as f64),
                ..Default::default()
            },
        ));
    }
    must.push(older_than(pos));
    let mut filter = Filter::must(must);
    if !keep.is_empty() {
        filter.must_not = vec![Condition::has_id(keep.iter().map(super::mapping::point_id))];
    }
    filter
}
