//! Batches for the pipeline's unit tests.

use super::assemble::Batch;
use crate::event::{Document, Op, PointKey};
use crate::lsn::{Lsn, Position};

/// A batch of one upsert of point `key` in collection `c`, at `lsn` (its ack).
pub fn upsert(key: u64, lsn: u64) -> Batch {
    let position = Position::new(Lsn(lsn), 0);
    Batch {
        ops: vec![Op::Upsert {
            collection: "c".into(),
            doc: Document {
                key: PointKey::Num(key),
                payload: Default::default(),
                meta: None,
                vectors: None,
                embed: Vec::new(),
                position,
                anchor: None,
            },
            copied: false,
        }],
        events: Vec::new(),
        ack: Some(Lsn(lsn)),
    }
}

/// A batch of one truncate of `public.t` (collection `c`) at `lsn`.
pub fn truncate(lsn: u64) -> Batch {
    Batch {
        ops: vec![Op::Truncate {
            collection: "c".into(),
            table: crate::event::TableName::parse("public.t"),
            position: Position::new(Lsn(lsn), 0),
        }],
        events: Vec::new(),
        ack: Some(Lsn(lsn)),
    }
}

/// One batch of an upsert of each key, all at `lsn`.
pub fn upserts(keys: &[u64], lsn: u64) -> Batch {
    let mut batch = upsert(keys[0], lsn);
    for k in &keys[1..] {
        batch.ops.extend(upsert(*k, lsn).ops);
    }
    batch
}

/// A batch of one TOAST merge of point `key` (a row of `public.t` with no columns) at `lsn`.
pub fn merge(key: u64, lsn: u64) -> Batch {
    let mut batch = upsert(key, lsn);
    let Some(Op::Upsert {
        collection, doc, ..
    }) = batch.ops.pop()
    else {
        unreachable!("upsert makes one upsert")
    };
    batch.ops.push(Op::Merge {
        collection,
        doc,
        table: crate::event::TableName::parse("public.t"),
        row: crate::event::Row::default(),
    });
    batch
}

/// A batch with nothing to write (a keepalive's or a skipped transaction's ack) at `lsn`.
pub fn empty(lsn: u64) -> Batch {
    Batch {
        ops: Vec::new(),
        events: Vec::new(),
        ack: Some(Lsn(lsn)),
    }
}
