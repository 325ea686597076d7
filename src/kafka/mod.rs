//! Kafka fan-out: change events (`proto/pg2qdrant/v1/change_event.proto`).
//!
//! ```text
//!  run:   stream/copy ─▶ Change ─▶ event::encode ─▶ Event (topic, key, bytes) ─▶ publish ─┐
//!                          └──▶ mapping ─▶ ops ─▶ Qdrant (unless qdrant.direct = false)   ├▶ ack
//!  apply: consumer group ─▶ decode ─▶ Change ─▶ mapping ─▶ ops ─▶ writer ─▶ commit offsets
//! ```
//!
//! - [`event`] / [`decode`]: a change ↔ its `pg2qdrant.v1.ChangeEvent` (pure; a decoded event
//!   maps to the same points as the change it came from).
//! - [`client`]: librdkafka configuration, topic creation, partition counts.
//! - [`publish`]: the producer; a batch is done only when every event of it is delivered.
//! - [`delivery`]: librdkafka's delivery reports counted into their batch (one wake-up a batch).
//!
//! `pg2qdrant apply` (the consumer group writing Qdrant) is its own mode (`apply` at the top level).

pub mod client;
pub mod consume;
pub mod decode;
pub mod delivery;
pub mod event;
pub mod publish;

use crate::event::{Change, ChangeKind, PointKey, Row, TableName};
use crate::mapping::TableMapping;
use std::collections::HashMap;
use std::sync::Arc;

/// The generated types of `pg2qdrant.v1`.
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/pg2qdrant.v1.rs"));
}

/// Header names repeating an event's position and table (see the .proto's framing note).
pub const HEADER_LSN: &str = "pg2qdrant.lsn";
pub const HEADER_SEQ: &str = "pg2qdrant.seq";
pub const HEADER_TABLE: &str = "pg2qdrant.table";

/// One change event ready to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub topic: Arc<str>,
    /// The point id as text (`None` for a truncate or a sweep, which go to every partition).
    pub key: Option<String>,
    /// The encoded `ChangeEvent`.
    pub payload: Vec<u8>,
    pub lsn: u64,
    pub seq: u64,
    pub table: Arc<str>,
}

/// The topic of each watched table.
#[derive(Debug, Default)]
pub struct Topics {
    by_table: HashMap<TableName, (Arc<str>, Arc<str>)>,
}

impl Topics {
    pub fn new<'a>(
        cfg: &crate::config::KafkaConfig,
        tables: impl IntoIterator<Item = &'a TableName>,
    ) -> Self {
        Self {
            by_table: tables
                .into_iter()
                .map(|t| {
                    let topic: Arc<str> = cfg.topic(&t.schema, &t.name).into();
                    (t.clone(), (topic, t.to_string().into()))
                })
                .collect(),
        }
    }

    /// Every topic, sorted.
    pub fn all(&self) -> Vec<Arc<str>> {
        let mut v: Vec<_> = self.by_table.values().map(|(t, _)| t.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Appends the events of a change of a watched table (`read`: a copied row) to `out`.
    ///
    /// A key-changing UPDATE becomes two events, as Debezium publishes it: a delete keyed by the
    /// old key (in the old key's partition, after that key's earlier events) and an insert keyed
    /// by the new key. One event keyed by the new key would carry the old point's delete into
    /// another partition, where an applier may apply it before the old key's own INSERT: the old
    /// point would come back and stay. Both events share the change's position.
    pub fn events(
        &self,
        mapping: &TableMapping,
        change: &Change,
        read: bool,
        out: &mut Vec<Event>,
    ) {
        let Some((topic, table)) = self.by_table.get(&change.table) else {
            return;
        };
        if let ChangeKind::Update {
            old: Some(old),
            new,
        } = &change.kind
        {
            if let Some(new) = moved(mapping, old, new) {
                for kind in [
                    ChangeKind::Delete { old: old.clone() },
                    ChangeKind::Insert { new },
                ] {
                    let part = Change {
                        kind,
                        ..change.clone()
                    };
                    out.push(Self::event(topic, table, mapping, &part, false));
                }
                return;
            }
        }
        out.push(Self::event(topic, table, mapping, change, read));
    }

    fn event(
        topic: &Arc<str>,
        table: &Arc<str>,
        mapping: &TableMapping,
        change: &Change,
        read: bool,
    ) -> Event {
        let e = event::encode(mapping, change, read);
        let key = match &change.kind {
            // Every partition: no partition's events from before it are applied after it.
            ChangeKind::Truncate | ChangeKind::Sweep => None,
            // A row whose point id cannot be computed goes to one partition (its table's), so
            // one applier dead-letters it once.
            _ => Some(e.point_id.as_ref().and_then(|p| p.id.as_ref()).map_or_else(
                || table.to_string(),
                |id| match id {
                    proto::point_id::Id::Num(n) => PointKey::Num(*n).to_string(),
                    proto::point_id::Id::Uuid(u) => u.clone(),
                },
            )),
        };
        Event {
            topic: topic.clone(),
            key,
            payload: prost::Message::encode_to_vec(&e),
            lsn: change.position.commit_lsn,
            seq: change.position.seq,
            table: table.clone(),
        }
    }
}

/// The new image of an UPDATE that moved its row to another point id, with what it left
/// unchanged filled from the old image where that holds it (REPLICA IDENTITY FULL); `None`
/// when the point stays, or when either id cannot be derived (then the change is one event,
/// and its row is the mapping's to refuse).
fn moved(mapping: &TableMapping, old: &Row, new: &Row) -> Option<Row> {
    let before = mapping.point_key(old).ok()?;
    let filled;
    let new = match mapping.point_key(new) {
        Ok(_) => new,
        // A key column left unchanged (TOASTed) under REPLICA IDENTITY FULL: the old image has it.
        Err(_) => {
            filled = crate::mapping::fill_unchanged(new, old);
            &filled
        }
    };
    let after = mapping.point_key(new).ok()?;
    (before != after).then(|| crate::mapping::fill_unchanged(new, old))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Datum;
    use crate::mapping::tests::{change, mapping, row, t};

    fn topics() -> Topics {
        let cfg: crate::config::KafkaConfig = toml::from_str("brokers = \"b:9092\"").unwrap();
        Topics::new(&cfg, [&TableName::parse("m")])
    }

    fn keys(events: &[Event]) -> Vec<Option<String>> {
        events.iter().map(|e| e.key.clone()).collect()
    }

    #[test]
    fn a_key_change_is_a_delete_keyed_by_the_old_key_then_an_insert_keyed_by_the_new_one() {
        let m = mapping("");
        let mut out = Vec::new();
        let old = row(&[t("4"), Datum::Null, Datum::Null, Datum::Null, Datum::Null]);
        let new = row(&[t("5"), Datum::Unchanged, t("{1,2}"), t("f"), Datum::Null]);
        let c = change(ChangeKind::Update {
            old: Some(old),
            new: new.clone(),
        });
        topics().events(&m, &c, false, &mut out);
        assert_eq!(keys(&out), [Some("4".to_owned()), Some("5".to_owned())]);
        let ops: Vec<i32> = out
            .iter()
            .map(|e| {
                let pb: proto::ChangeEvent = prost::Message::decode(&e.payload[..]).unwrap();
                assert_eq!((e.lsn, e.seq), (10, 1), "both at the change's position");
                pb.operation
            })
            .collect();
        assert_eq!(
            ops,
            [
                proto::Operation::Delete as i32,
                proto::Operation::Insert as i32
            ]
        );
        // An update that keeps its key stays one event.
        out.clear();
        let same = change(ChangeKind::Update {
            old: Some(row(&[
                t("5"),
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
            ])),
            new,
        });
        topics().events(&m, &same, false, &mut out);
        assert_eq!(keys(&out), [Some("5".to_owned())]);
    }

    #[test]
    fn a_row_without_a_point_id_goes_to_one_partition_and_a_truncate_to_all() {
        let m = mapping("");
        let mut out = Vec::new();
        let keyless = row(&[Datum::Null, t("x"), t("{1,2}"), t("f"), Datum::Null]);
        topics().events(
            &m,
            &change(ChangeKind::Insert { new: keyless }),
            false,
            &mut out,
        );
        topics().events(&m, &change(ChangeKind::Truncate), false, &mut out);
        assert_eq!(keys(&out), [Some("public.m".to_owned()), None]);
    }
}
