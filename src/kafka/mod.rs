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

    /// The event of a change of a watched table (`read`: a copied row).
    pub fn event(&self, mapping: &TableMapping, change: &Change, read: bool) -> Option<Event> {
        let (topic, table) = self.by_table.get(&change.table)?;
        let e = event::encode(mapping, change, read);
        let key = match &change.kind {
            // Every partition: no partition's events from before it are applied after it.
            ChangeKind::Truncate | ChangeKind::Sweep => None,
            _ => e
                .point_id
                .as_ref()
                .and_then(|p| p.id.as_ref())
                .map(|id| match id {
                    proto::point_id::Id::Num(n) => PointKey::Num(*n).to_string(),
                    proto::point_id::Id::Uuid(u) => u.clone(),
                }),
        };
        Some(Event {
            topic: topic.clone(),
            key,
            payload: prost::Message::encode_to_vec(&e),
            lsn: change.position.commit_lsn,
            seq: change.position.seq,
            table: table.clone(),
        })
    }
}
