//! Where a point's write stands in the stream, stored in the point itself: the connector's
//! metadata object (`_pg2qdrant`: table, commit LSN, ordinal, commit time), which the sink's
//! fences compare before replacing or deleting a point.

use crate::config::META_FIELD;
use crate::event::{Op, TableName};
use crate::lsn::{Lsn, Position};
use serde_json::{Map, Value};

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
                    // In place: the fields are there already (`meta`), no key is made again.
                    let mut set = |field: &str, value: Value| match m.get_mut(field) {
                        Some(v) => *v = value,
                        None => {
                            m.insert(field.to_owned(), value);
                        }
                    };
                    set("lsn", Value::from(position.commit_lsn));
                    set("seq", Value::from(position.seq));
                    set("commit_lsn", shared["commit_lsn"].clone());
                    set("commit_time", shared["commit_time"].clone());
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
    let (commit_lsn, commit_time) = commit_texts(position.commit_lsn, commit_time_micros);
    // `schema.name`, as `TableName`'s Display writes it, without the formatter.
    let mut name = String::with_capacity(table.schema.len() + 1 + table.name.len());
    name.push_str(&table.schema);
    name.push('.');
    name.push_str(&table.name);
    let table = name;
    let mut m = Map::new();
    m.insert("table".to_owned(), Value::String(table));
    m.insert("lsn".to_owned(), Value::from(position.commit_lsn));
    m.insert("seq".to_owned(), Value::from(position.seq));
    m.insert("commit_lsn".to_owned(), Value::String(commit_lsn));
    m.insert("commit_time".to_owned(), Value::String(commit_time));
    Value::Object(m)
}

/// A commit's LSN and time as text. The rows of one transaction share them, so the last
/// commit's texts are kept (per thread) and formatted again only when the commit changes.
fn commit_texts(commit_lsn: u64, commit_time_micros: i64) -> (String, String) {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u64, i64, String, String)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((l, t, lsn, time)) if *l == commit_lsn && *t == commit_time_micros => {
                (lsn.clone(), time.clone())
            }
            _ => {
                let unix_micros = commit_time_micros.saturating_add(PG_EPOCH_UNIX_MICROS);
                let time = chrono::DateTime::from_timestamp_micros(unix_micros)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .unwrap_or_default();
                let lsn = Lsn(commit_lsn).to_string();
                *last = Some((commit_lsn, commit_time_micros, lsn.clone(), time.clone()));
                (lsn, time)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts kept from the last commit are reused only for that commit: another LSN or
    /// another time (and a return to the first) is formatted for itself.
    #[test]
    fn each_commit_gets_its_own_texts() {
        let t = TableName::parse("public.t");
        let at = |lsn, seq| Position {
            commit_lsn: lsn,
            seq,
        };
        for (lsn, seq, micros, lsn_text, time) in [
            (0x1_0000_0010, 0, 0, "1/10", "2000-01-01T00:00:00.000000Z"),
            (0x1_0000_0010, 1, 0, "1/10", "2000-01-01T00:00:00.000000Z"),
            (
                0x1_0000_0010,
                2,
                1_500_000,
                "1/10",
                "2000-01-01T00:00:01.500000Z",
            ),
            (0x2A, 0, 1_500_000, "0/2A", "2000-01-01T00:00:01.500000Z"),
            (0x1_0000_0010, 3, 0, "1/10", "2000-01-01T00:00:00.000000Z"),
        ] {
            let m = meta(&t, at(lsn, seq), micros);
            assert_eq!(m["table"], "public.t");
            assert_eq!(m["lsn"], lsn);
            assert_eq!(m["seq"], seq);
            assert_eq!(m["commit_lsn"], lsn_text, "{m}");
            assert_eq!(m["commit_time"], time, "{m}");
        }
    }

    /// Copied rows move to their real positions: each op's position and the metadata fields
    /// that carry it, the other fields untouched, deletes' positions too.
    #[test]
    fn set_positions_moves_the_fields_in_place() {
        use crate::event::{Document, PointKey};
        let t = TableName::parse("public.t");
        let provisional = Position::default();
        let upsert = |n: u64| {
            let mut payload = Map::new();
            payload.insert("n".to_owned(), Value::from(n));
            let mut m = meta(&t, provisional, 0);
            m["key"] = serde_json::json!({"id": n.to_string()});
            payload.insert(META_FIELD.to_owned(), m);
            Op::Upsert {
                collection: "c".into(),
                doc: Document {
                    key: PointKey::Num(n),
                    payload,
                    vectors: None,
                    embed: Vec::new(),
                    position: provisional,
                    anchor: None,
                },
                copied: true,
            }
        };
        let mut ops = vec![
            upsert(1),
            Op::Delete {
                collection: "c".into(),
                key: PointKey::Num(7),
                position: provisional,
            },
            upsert(2),
        ];
        let first = Position {
            commit_lsn: 0x5_0000_0000,
            seq: 10,
        };
        set_positions(&mut ops, first, 2_000_000);
        for (i, op) in ops.iter().enumerate() {
            let at = Position {
                commit_lsn: first.commit_lsn,
                seq: 10 + i as u64,
            };
            assert_eq!(op.position(), at);
            if let Op::Upsert { doc, .. } = op {
                let m = &doc.payload[META_FIELD];
                let mut expected = meta(&t, at, 2_000_000);
                expected["key"] = m["key"].clone();
                assert_eq!(m, &expected);
                assert_eq!(m["commit_lsn"], "5/0");
                assert_eq!(m["commit_time"], "2000-01-01T00:00:02.000000Z");
            }
        }
    }
}
