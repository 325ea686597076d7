//! Where a point's write stands in the stream, stored in the point itself: the connector's
//! metadata (`_pg2qdrant`: table, commit LSN, ordinal, commit time, key), which the sink's
//! fences compare before replacing or deleting a point. The mapping makes it typed
//! ([`Meta`]); its LSN and ordinal are the document's position, written with it.

use crate::config::META_FIELD;
use crate::event::{Document, Meta, Op};
use crate::lsn::Position;
pub use crate::lsn::PG_EPOCH_UNIX_MICROS;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Moves ops produced with provisional positions (copied rows) to consecutive real positions
/// from `first` in one transaction committed at `commit_time_micros`: the position (which the
/// metadata's LSN and ordinal are) and the commit's time.
pub fn set_positions(ops: &mut [Op], first: Position, commit_time_micros: i64) {
    for (i, op) in ops.iter_mut().enumerate() {
        let position = Position {
            commit_lsn: first.commit_lsn,
            seq: first.seq + i as u64,
        };
        match op {
            Op::Upsert { doc, .. } | Op::Merge { doc, .. } => {
                doc.position = position;
                if let Some(m) = &mut doc.meta {
                    m.commit_time = commit_time_micros;
                }
            }
            Op::Delete { position: p, .. }
            | Op::DeleteChunks { position: p, .. }
            | Op::Truncate { position: p, .. } => *p = position,
        }
    }
}

/// The connector's metadata for a row of `table` (`schema.name`) in a commit made at
/// `commit_time_micros` (its key, shard and embedding records are the mapping's to fill).
pub fn meta(table: &Arc<str>, commit_time_micros: i64) -> Meta {
    Meta {
        table: table.clone(),
        commit_time: commit_time_micros,
        key: Value::Null,
        shard: None,
        embedded: Map::new(),
    }
}

/// The document's payload as stored: its fields and, under [`META_FIELD`], its metadata (which
/// wins over a column of that name, as it always has).
pub fn payload_json(doc: &Document) -> Map<String, Value> {
    let mut payload = doc.payload.clone();
    if let Some(m) = &doc.meta {
        payload.insert(META_FIELD.to_owned(), m.to_json(doc.position));
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PointKey;

    /// The texts kept from the last commit are reused only for that commit: another LSN or
    /// another time (and a return to the first) is formatted for itself.
    #[test]
    fn each_commit_gets_its_own_texts() {
        let t: Arc<str> = "public.t".into();
        let at = |lsn, seq| Position {
            commit_lsn: lsn,
            seq,
        };
        let first = "2000-01-01T00:00:00.000000Z";
        let later = "2000-01-01T00:00:01.500000Z";
        for (lsn, seq, micros, lsn_text, time) in [
            (0x1_0000_0010, 0, 0, "1/10", first),
            (0x1_0000_0010, 1, 0, "1/10", first),
            (0x1_0000_0010, 2, 1_500_000, "1/10", later),
            (0x2A, 0, 1_500_000, "0/2A", later),
            (0x1_0000_0010, 3, 0, "1/10", first),
        ] {
            let m = meta(&t, micros).to_json(at(lsn, seq));
            assert_eq!(m["table"], "public.t");
            assert_eq!(m["lsn"], lsn);
            assert_eq!(m["seq"], seq);
            assert_eq!(m["commit_lsn"], lsn_text, "{m}");
            assert_eq!(m["commit_time"], time, "{m}");
        }
    }

    /// The stored object is the one the connector has always written: the same fields, numbers
    /// as unsigned integers, the key, shard and embedding records only when there are any, and
    /// it wins over a column of its name.
    #[test]
    fn the_stored_object_is_the_one_always_written() {
        let at = Position {
            commit_lsn: 0x16B_3748,
            seq: u64::MAX,
        };
        let mut m = meta(&Arc::from("s.t"), 1_500_000);
        let bare = serde_json::json!({"table": "s.t", "lsn": 0x16B_3748_u64, "seq": u64::MAX,
            "commit_lsn": "0/16B3748", "commit_time": "2000-01-01T00:00:01.500000Z"});
        assert_eq!(m.to_json(at), bare);
        m.key = serde_json::json!({"id": "42"});
        m.shard = Some("tenant-a".into());
        m.embedded
            .insert("v".into(), serde_json::json!({"model": "m", "hash": "h"}));
        let mut full = bare.clone();
        full["key"] = serde_json::json!({"id": "42"});
        full["shard"] = serde_json::json!("tenant-a");
        full["embedded"] = serde_json::json!({"v": {"model": "m", "hash": "h"}});
        assert_eq!(m.to_json(at), full);
        let mut payload = Map::new();
        payload.insert(META_FIELD.to_owned(), Value::from("a column"));
        payload.insert("n".to_owned(), Value::from(1));
        let doc = Document {
            key: PointKey::Num(1),
            payload,
            meta: Some(m),
            vectors: None,
            embed: Vec::new(),
            position: at,
            anchor: None,
        };
        assert_eq!(
            Value::Object(payload_json(&doc)),
            serde_json::json!({"n": 1, META_FIELD: full})
        );
    }

    /// Copied rows move to their real positions: each op's position and the commit's texts,
    /// the other fields untouched, deletes' positions too.
    #[test]
    fn set_positions_moves_the_rows_to_their_commit() {
        let t: Arc<str> = "public.t".into();
        let provisional = Position::default();
        let upsert = |n: u64| {
            let mut m = meta(&t, 0);
            m.key = serde_json::json!({"id": n.to_string()});
            Op::Upsert {
                collection: "c".into(),
                doc: Document {
                    key: PointKey::Num(n),
                    payload: Map::new(),
                    meta: Some(m),
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
                let stored = payload_json(doc);
                let mut expected = meta(&t, 2_000_000);
                expected.key = serde_json::json!({"id": doc.key.to_string()});
                assert_eq!(stored[META_FIELD], expected.to_json(at));
                assert_eq!(stored[META_FIELD]["seq"], 10 + i as u64);
                assert_eq!(stored[META_FIELD]["commit_lsn"], "5/0");
                assert_eq!(
                    stored[META_FIELD]["commit_time"],
                    "2000-01-01T00:00:02.000000Z"
                );
            }
        }
    }
}
