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
pub mod decode;
pub mod delivery;
pub mod event;
pub mod publish;

use crate::event::{Change, ChangeKind, PointKey, TableName};
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
            if mapping.point_key(old).ok() != mapping.point_key(new).ok() {
                // Under REPLICA IDENTITY FULL the old image holds what the new one left unchanged.
                let new = crate::mapping::fill_unchanged(new, old);
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
