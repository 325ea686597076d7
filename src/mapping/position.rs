//! Where a point's write stands in the stream, stored in the point itself: the connector's
//! metadata object (`_pg2qdrant`: table, commit LSN, ordinal, commit time), which the sink's
//! fences compare before replacing or deleting a point.

use crate::config::META_FIELD;
use crate::event::{Op, TableName};
use crate::lsn::{Lsn, Position};
use serde_json::{json, Value};

/// Moves ops produced with provisional positions (copied rows) to consecutive real positions
/// from `first` in one transaction: the position and the metadata fields that carry it. The
/// transaction's commit LSN and time are formatted once for all of them.
pub fn set_positions(ops: &mut [Op], first: Position, commit_time_micros: i64) {
    let shared = meta(&TableName::default(), first, commit_time_micros);
    for (i, op) in ops.iter_mut().enumerate() {
        let position = Position {
            commit_lsn: first.commit_lsn,
            seq: first.seq + i as u64,
        };
        match op {
            Op::Upsert { doc, .. } | Op::Merge { doc, .. } => {
                doc.position = position;
                if let Some(Value::Object(m)) = doc.payload.get_mut(META_FIELD) {
                    m.insert("lsn".to_owned(), Value::from(position.commit_lsn));
                    m.insert("seq".to_owned(), Value::from(position.seq));
                    m.insert("commit_lsn".to_owned(), shared["commit_lsn"].clone());
                    m.insert("commit_time".to_owned(), shared["commit_time"].clone());
                }
            }
            Op::Delete { position: p, .. }
            | Op::DeleteChunks { position: p, .. }
            | Op::Truncate { position: p, .. } => *p = position,
        }
    }
}

/// PostgreSQL epoch (2000-01-01) in unix microseconds.
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// The connector's metadata object stored in every point under [`META_FIELD`].
pub fn meta(table: &TableName, position: Position, commit_time_micros: i64) -> Value {
    let unix_micros = commit_time_micros.saturating_add(PG_EPOCH_UNIX_MICROS);
    let commit_time = chrono::DateTime::from_timestamp_micros(unix_micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default();
    json!({
        "table": table.to_string(),
        "lsn": position.commit_lsn,
        "seq": position.seq,
        "commit_lsn": Lsn(position.commit_lsn).to_string(),
        "commit_time": commit_time,
    })
}
