//! Transaction assembly and batching: replication events in, ordered [`Batch`]es out.
//!
//! ```text
//!  Begin ─▶ position = (commit LSN, 0)      XLogData ─▶ decode ─▶ Change ─▶ mapping ─▶ ops
//!  Commit ─▶ ack candidate = end LSN         KeepAlive (idle, nothing buffered) ─▶ ack candidate
//!  flush when ops ≥ batch_size or linger expired: Batch { ops, ack }
//! ```
//!
//! A batch's `ack` is the end LSN of the newest transaction whose *last* change is in this batch
//! or an earlier one. Batches are written strictly in order by one writer, so once a batch is
//! durable every transaction up to its `ack` is durable: that is the in-order ack rule. A big
//! transaction spans several batches and is acknowledged by the one holding its end.
//!
//! An idle keepalive may advance the ack to its `wal_end` only outside a transaction and with no
//! ops buffered: everything before `wal_end` has been sent to us, and the writer acknowledges it
//! only after every earlier batch is durable.
//!
//! With `[kafka]`, each change of a watched table is also encoded into its change event here
//! (whether or not it maps to a point: Kafka mirrors the table), and a batch carries its
//! events beside its ops; the writer acknowledges the batch once both are durable.
//!
//! Copied rows (see `snapshot`) enter here too: while a chunk's watermark window is open, the
//! keys of its table's changes are recorded; at the chunk's high watermark its rows are
//! injected as ops positioned inside that transaction, in stream order.

use crate::event::{Change, ChangeKind, Op, TableName};
use crate::kafka::{Event, Topics};
use crate::lsn::{Lsn, Position};
use crate::mapping::{MappingError, Mappings};
use crate::metrics::names;
use crate::snapshot::window::{Window, Windows};
use crate::source::pgoutput::{decode, Message};
use crate::source::relations::RelationCache;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ops to write and events to publish, in order, and the LSN that becomes durable once they
/// are.
#[derive(Debug, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
    pub events: Vec<Event>,
    pub ack: Option<Lsn>,
}

#[derive(Debug)]
struct Txn {
    commit_lsn: Lsn,
    commit_time: i64,
    seq: u64,
}

pub struct Assembler {
    mappings: Arc<Mappings>,
    relations: RelationCache,
    batch_size: usize,
    linger: Duration,
    ops: Vec<Op>,
    /// Change events (publish mode: `topics` is set).
    events: Vec<Event>,
    topics: Option<Arc<Topics>>,
    ack: Option<Lsn>,
    txn: Option<Txn>,
    since: Option<Instant>,
    windows: Windows,
    /// The stream carries binary values (`source::format`).
    binary: bool,
    /// Tables a schema change stopped (`mapping::schema`): their changes are skipped for the
    /// rest of the process.
    stopped: std::collections::HashSet<TableName>,
    received: Received,
}

/// The `changes_received` counters by table and kind of change, looked up once: a row then
/// costs one increment, not its labels built, hashed and looked up in the registry.
#[derive(Default)]
struct Received(std::collections::HashMap<TableName, [Option<metrics::Counter>; 5]>);

impl Received {
    fn count(&mut self, table: &TableName, kind: &ChangeKind) {
        let (i, op) = match kind {
            ChangeKind::Insert { .. } => (0, "insert"),
            ChangeKind::Update { .. } => (1, "update"),
            ChangeKind::Delete { .. } => (2, "delete"),
            ChangeKind::Truncate => (3, "truncate"),
            ChangeKind::Sweep => (4, "sweep"),
        };
        let slots = match self.0.get_mut(table) {
            Some(slots) => slots,
            None => self.0.entry(table.clone()).or_default(),
        };
        slots[i]
            .get_or_insert_with(|| {
                metrics::counter!(names::CHANGES_RECEIVED, "table" => table.to_string(), "op" => op)
            })
            .increment(1);
    }
}

impl Assembler {
    pub fn new(mappings: Arc<Mappings>, batch_size: usize, linger: Duration) -> Self {
        Self {
            mappings,
            relations: RelationCache::default(),
            batch_size,
            linger,
            ops: Vec::new(),
            events: Vec::new(),
            topics: None,
            ack: None,
            txn: None,
            since: None,
            windows: Windows::default(),
            binary: false,
            stopped: Default::default(),
            received: Received::default(),
        }
    }

    /// Publish mode: every change also becomes its change event.
    pub fn with_topics(mut self, topics: Option<Arc<Topics>>) -> Self {
        self.topics = topics;
        self
    }

    /// What is buffered, counted against `batch_size`.
    fn buffered(&self) -> usize {
        self.ops.len().max(self.events.len())
    }

    /// The stream about to open carries binary values.
    pub fn set_binary(&mut self, binary: bool) {
        self.binary = binary;
    }

    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    pub fn begin(&mut self, final_lsn: Lsn, commit_time_micros: i64) {
        self.txn = Some(Txn {
            commit_lsn: final_lsn,
            commit_time: commit_time_micros,
            seq: 0,
        });
    }

    /// A watched table's (new) columns can all be decoded from binary, or
    /// [`Error::TextNeeded`](crate::error::Error::TextNeeded).
    fn check_binary(&self, relation_id: u32) -> Result<(), crate::error::Error> {
        let Some(rel) = self.relations.get(relation_id) else {
            return Ok(());
        };
        let Some(mapping) = self.mappings.get(&rel.table) else {
            return Ok(());
        };
        match crate::source::format::blocker(mapping, &rel.columns) {
            None => Ok(()),
            Some((column, type_oid, reason)) => Err(crate::error::Error::TextNeeded {
                table: rel.table.to_string(),
                column,
                type_oid,
                reason,
            }),
        }
    }

    /// A watched table's new columns still give its mapping every column it needs; else the
    /// table is stopped (`mapping::schema`), with one error naming the column and the fix.
    fn check_schema(&mut self, relation_id: u32) {
        let Some(rel) = self.relations.get(relation_id) else {
            return;
        };
        let Some(mapping) = self.mappings.get(&rel.table) else {
            return;
        };
        if self.stopped.contains(&rel.table) {
            return;
        }
        if let Some(b) = mapping.schema_break(&rel.columns) {
            let table = rel.table.clone();
            tracing::error!(table = %table, column = %b.need.column,
                "{table}: {b}. The table is stopped: its changes are skipped from here on (nothing written, nothing parked); the other tables go on. Fix: make tables ({table}) {} name the column as it is now (or undo the change), restart, then run `pg2qdrant resync --table {table}`",
                b.need.field);
            metrics::gauge!(names::TABLE_STOPPED, "table" => table.to_string()).set(1.0);
            self.stopped.insert(table);
        }
    }

    /// Whether a schema change stopped `table` (`mapping::schema`).
    pub fn stopped(&self, table: &TableName) -> bool {
        self.stopped.contains(table)
    }

    /// Decodes one pgoutput message. Rows that cannot be mapped are returned for the
    /// dead-letter file; a full batch is returned for the writer.
    pub fn data(
        &mut self,
        bytes: &bytes::Bytes,
        dead: &mut Vec<(MappingError, Lsn)>,
    ) -> Result<Option<Batch>, crate::error::Error> {
        let Some(changes) = self.changes(decode(bytes)?)? else {
            return Ok(None);
        };
        for (table, kind) in changes {
            self.add(table, kind, dead)?;
        }
        Ok(if self.buffered() >= self.batch_size {
            self.take()
        } else {
            None
        })
    }

    /// The row changes a message carries, by table (`None` for a message that carries none,
    /// after learning what it says: a relation's columns).
    fn changes(
        &mut self,
        msg: Message,
    ) -> Result<Option<Vec<(TableName, ChangeKind)>>, crate::error::Error> {
        Ok(Some(match msg {
            Message::Relation(rel) => {
                self.relations.update(&rel);
                self.check_schema(rel.id);
                if self.binary {
                    self.check_binary(rel.id)?;
                }
                return Ok(None);
            }
            Message::Insert { relation_id, new } => {
                self.row_change(relation_id, new, |new| ChangeKind::Insert { new })?
            }
            Message::Update {
                relation_id,
                old,
                new,
            } => {
                let old = match old {
                    Some((_, t)) => Some(self.relations.row(relation_id, t).map_err(protocol)?.1),
                    None => None,
                };
                self.row_change(relation_id, new, |new| ChangeKind::Update { old, new })?
            }
            Message::Delete { relation_id, old } => {
                self.row_change(relation_id, old.1, |old| ChangeKind::Delete { old })?
            }
            Message::Truncate { relation_ids, .. } => relation_ids
                .iter()
                .filter_map(|id| self.relations.get(*id).map(|r| r.table.clone()))
                .filter(|t| self.mappings.contains_key(t))
                .map(|t| (t, ChangeKind::Truncate))
                .collect(),
            // Begin/Commit come as their own events from the transport; the rest carries nothing
            // we mirror.
            _ => return Ok(None),
        }))
    }

    /// Positions one change of a watched table in its transaction, maps it, and buffers its
    /// ops (and events, with `[kafka]`); a row that cannot be mapped goes to `dead`.
    fn add(
        &mut self,
        table: TableName,
        kind: ChangeKind,
        dead: &mut Vec<(MappingError, Lsn)>,
    ) -> Result<(), crate::error::Error> {
        let Some(mapping) = self.mappings.get(&table) else {
            return Ok(());
        };
        if !self.stopped.is_empty() && self.stopped.contains(&table) {
            metrics::counter!(names::CHANGES_STOPPED, "table" => table.to_string()).increment(1);
            return Ok(());
        }
        let txn = self
            .txn
            .as_mut()
            .ok_or_else(|| protocol("change outside a transaction".to_owned()))?;
        let position = Position::new(txn.commit_lsn, txn.seq);
        txn.seq += 1;
        self.received.count(&table, &kind);
        let change = Change {
            table,
            position,
            commit_time_micros: txn.commit_time,
            kind,
        };
        if let Some(t) = &self.topics {
            t.events(mapping, &change, false, &mut self.events);
            self.since.get_or_insert_with(Instant::now);
        }
        match mapping.ops(&change) {
            Ok(ops) => {
                if !self.windows.is_empty() {
                    self.windows.record(&change.table, &ops);
                }
                self.since.get_or_insert_with(Instant::now);
                self.ops.extend(ops);
            }
            Err(e) => dead.push((e, txn.commit_lsn)),
        }
        // During a rebuild the old collection is kept current too (see `rebuild`); a row
        // its old mapping cannot take is logged (the new collection has it, or its dead
        // letter).
        match mapping.shadow_ops(&change) {
            Some(Ok(ops)) => self.ops.extend(ops),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the collection being replaced cannot take this change; it is in the new one")
            }
            None => {}
        }
        Ok(())
    }

    fn row_change(
        &self,
        relation_id: u32,
        tuple: Vec<crate::source::pgoutput::Cell>,
        kind: impl FnOnce(crate::event::Row) -> ChangeKind,
    ) -> Result<Vec<(TableName, ChangeKind)>, crate::error::Error> {
        let (table, row) = self.relations.row(relation_id, tuple).map_err(protocol)?;
        Ok(vec![(table, kind(row))])
    }

    /// A chunk's low watermark arrived: record what streams for `table` from here on.
    pub fn open_window(&mut self, chunk: String, table: TableName) {
        self.windows.open(chunk, table);
    }

    /// A chunk's high watermark arrived: what streamed since its low watermark. Windows of
    /// chunks `awaited` no longer knows are dropped on the way.
    pub fn close_window(
        &mut self,
        chunk: &str,
        awaited: impl FnMut(&str) -> bool,
    ) -> Option<Window> {
        let w = self.windows.close(chunk);
        self.windows.retain(awaited);
        w
    }

    /// The current transaction's commit LSN and commit time (`None` outside a transaction).
    pub fn transaction(&self) -> Option<(Lsn, i64)> {
        self.txn.as_ref().map(|t| (t.commit_lsn, t.commit_time))
    }

    /// Reserves `n` consecutive positions in the current transaction; returns the first.
    /// Outside a transaction (never for a transactional message) it returns position 0 of LSN 0.
    pub fn reserve(&mut self, n: usize) -> Position {
        match self.txn.as_mut() {
            Some(txn) => {
                let p = Position::new(txn.commit_lsn, txn.seq);
                txn.seq += n as u64;
                p
            }
            None => Position::default(),
        }
    }

    /// Appends ops made elsewhere (a copied chunk) at the current point of the stream, and
    /// the events of its rows (`reads`, positioned like their ops), and returns the batches
    /// that are full.
    pub fn inject(&mut self, ops: Vec<Op>, reads: Vec<Change>) -> Vec<Batch> {
        if let Some(topics) = &self.topics {
            for change in &reads {
                if let Some(m) = self.mappings.get(&change.table) {
                    topics.events(m, change, true, &mut self.events);
                }
            }
        }
        if ops.is_empty() && self.events.is_empty() {
            return Vec::new();
        }
        self.since.get_or_insert_with(Instant::now);
        self.ops.extend(ops);
        let mut out = Vec::new();
        while self.buffered() >= self.batch_size {
            let at = self.batch_size.min(self.ops.len());
            let rest = self.ops.split_off(at);
            let at = self.batch_size.min(self.events.len());
            let rest_events = self.events.split_off(at);
            out.push(Batch {
                ops: std::mem::replace(&mut self.ops, rest),
                events: std::mem::replace(&mut self.events, rest_events),
                ack: None,
            });
        }
        // The ack covers committed transactions only, whose ops are all in the batches above
        // (the current transaction is still open): it goes with the last of them.
        if let Some(last) = out.last_mut() {
            last.ack = self.ack.take();
        }
        if self.ops.is_empty() && self.events.is_empty() && self.ack.is_none() {
            self.since = None;
        }
        out
    }

    /// The transaction ended: its end LSN may be acknowledged once its ops are durable.
    pub fn commit(&mut self, end_lsn: Lsn) {
        tracing::trace!(end_lsn = %end_lsn, buffered = self.ops.len(), "commit");
        self.txn = None;
        self.ack = Some(self.ack.map_or(end_lsn, |a| a.max(end_lsn)));
        self.since.get_or_insert_with(Instant::now);
    }

    /// An idle keepalive: advance the ack when nothing is in flight here.
    pub fn keepalive(&mut self, wal_end: Lsn) {
        if self.txn.is_none() && self.ops.is_empty() && self.events.is_empty() && !wal_end.is_zero()
        {
            self.ack = Some(self.ack.map_or(wal_end, |a| a.max(wal_end)));
            self.since.get_or_insert_with(Instant::now);
        }
    }

    /// Whether there is something to hand to the writer and no transaction is half read (a
    /// flush now would not split a transaction between a batch and the linger).
    pub fn ready(&self) -> bool {
        self.txn.is_none()
            && (!self.ops.is_empty() || !self.events.is_empty() || self.ack.is_some())
    }

    /// When the buffered ops (or ack) must be flushed at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|s| s + self.linger)
    }

    /// Everything buffered, as one batch (`None` when there is nothing).
    pub fn take(&mut self) -> Option<Batch> {
        self.since = None;
        if self.ops.is_empty() && self.events.is_empty() && self.ack.is_none() {
            return None;
        }
        Some(Batch {
            ops: std::mem::take(&mut self.ops),
            events: std::mem::take(&mut self.events),
            ack: self.ack.take(),
        })
    }

    /// Forget a partial transaction (the stream broke; it will be replayed whole).
    pub fn reset_stream(&mut self) {
        self.txn = None;
        self.relations = RelationCache::default();
    }
}

fn protocol(msg: String) -> crate::error::Error {
    crate::error::Error::prerequisite(
        format!("replication protocol: {msg}"),
        "this is a bug; please report it with the log",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::source::pgoutput::{encode, Cell, Relation, RelationColumn};

    fn assembler(batch: usize) -> Assembler {
        let cfg = parse(
            "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n\
             [[tables]]\ntable = \"public.t\"\ncollection = \"c\"\nvector = { column = \"v\", size = 1, distance = \"Dot\" }\n",
        )
        .unwrap();
        let m = crate::mapping::TableMapping::new(&cfg.tables[0], vec!["id".into()]).unwrap();
        Assembler::new(
            Arc::new([(m.table.clone(), m)].into_iter().collect()),
            batch,
            Duration::from_millis(10),
        )
    }

    fn rel(name: &str) -> bytes::Bytes {
        encode(&Message::Relation(Relation {
            id: if name == "t" { 1 } else { 2 },
            namespace: "public".into(),
            name: name.into(),
            replica_identity: b'd',
            columns: vec![
                RelationColumn {
                    flags: 1,
                    name: "id".into(),
                    type_oid: 20,
                    type_modifier: -1,
                },
                RelationColumn {
                    flags: 0,
                    name: "v".into(),
                    type_oid: 1021,
                    type_modifier: -1,
                },
            ],
        }))
        .into()
    }

    fn insert(rel: u32, id: &str, v: &str) -> bytes::Bytes {
        encode(&Message::Insert {
            relation_id: rel,
            new: vec![Cell::Text(id.into()), Cell::Text(v.into())],
        })
        .into()
    }

    #[test]
    fn big_transaction_is_acked_only_by_the_batch_holding_its_end() {
        let mut a = assembler(2);
        let mut dead = Vec::new();
        a.begin(Lsn(100), 0);
        assert!(a.data(&rel("t"), &mut dead).unwrap().is_none());
        assert!(a.data(&insert(1, "1", "{1}"), &mut dead).unwrap().is_none());
        let b1 = a
            .data(&insert(1, "2", "{1}"), &mut dead)
            .unwrap()
            .expect("full batch");
        assert_eq!((b1.ops.len(), b1.ack), (2, None));
        a.data(&insert(1, "3", "{1}"), &mut dead).unwrap();
        a.commit(Lsn(200));
        let b2 = a.take().unwrap();
        assert_eq!((b2.ops.len(), b2.ack), (1, Some(Lsn(200))));
        assert_eq!(b2.ops[0].position(), Position::new(Lsn(100), 2));
    }

    #[test]
    fn unwatched_tables_and_bad_rows_do_not_stop_the_stream() {
        let mut a = assembler(10);
        let mut dead = Vec::new();
        a.begin(Lsn(100), 0);
        a.data(&rel("other"), &mut dead).unwrap();
        a.data(&insert(2, "1", "{1}"), &mut dead).unwrap();
        a.data(&rel("t"), &mut dead).unwrap();
        a.data(&insert(1, "1", "{1,2}"), &mut dead).unwrap();
        a.commit(Lsn(150));
        assert_eq!(dead.len(), 1);
        assert!(dead[0].0.reason.contains("dimensions"));
        let b = a.take().unwrap();
        assert!(b.ops.is_empty());
        assert_eq!(b.ack, Some(Lsn(150)));
    }

    #[test]
    fn keepalive_advances_only_when_idle() {
        let mut a = assembler(10);
        let mut dead = Vec::new();
        a.begin(Lsn(100), 0);
        a.keepalive(Lsn(500));
        assert!(a.take().is_none());
        a.data(&rel("t"), &mut dead).unwrap();
        a.data(&insert(1, "1", "{1}"), &mut dead).unwrap();
        a.commit(Lsn(120));
        a.keepalive(Lsn(500));
        assert_eq!(a.take().unwrap().ack, Some(Lsn(120)));
        a.keepalive(Lsn(500));
        assert_eq!(a.take().unwrap().ack, Some(Lsn(500)));
    }
}
