//! Watermark windows: while a chunk is being read, the point keys that streamed changes touch.
//!
//! A window opens when the chunk's low watermark arrives in the stream and closes at its high
//! watermark. Every change of the chunk's table seen in between records the keys it wrote or
//! deleted; those keys are dropped from the chunk (the stream already carries something at least
//! as new). A TRUNCATE of the table in the window drops the whole chunk. Pure bookkeeping.

use crate::event::{Op, PointKey, TableName};
use std::collections::{HashMap, HashSet};

/// What streamed through a closed window.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Window {
    pub table: TableName,
    pub keys: HashSet<PointKey>,
    /// The table was truncated inside the window: drop every row of the chunk.
    pub truncated: bool,
}

impl Window {
    /// Whether a chunk row with this key must be left to the stream.
    pub fn conflicts(&self, key: &PointKey) -> bool {
        self.truncated || self.keys.contains(key)
    }
}

#[derive(Debug, Default)]
pub struct Windows {
    open: HashMap<String, Window>,
}

impl Windows {
    pub fn open(&mut self, chunk: String, table: TableName) {
        self.open.insert(
            chunk,
            Window {
                table,
                ..Default::default()
            },
        );
    }

    pub fn close(&mut self, chunk: &str) -> Option<Window> {
        self.open.remove(chunk)
    }

    /// Drops windows whose chunk is no longer awaited (its read failed and was retried under
    /// another id), so they stop recording.
    pub fn retain(&mut self, mut awaited: impl FnMut(&str) -> bool) {
        self.open.retain(|id, _| awaited(id));
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Records the keys that `ops` (mapped from one change of `table`) touch.
    pub fn record(&mut self, table: &TableName, ops: &[Op]) {
        for w in self.open.values_mut().filter(|w| &w.table == table) {
            for op in ops {
                // A chunked row's ops all name its anchor: the copy's ops of that row go whole.
                match op.row_key() {
                    Some(key) => {
                        w.keys.insert(key.clone());
                    }
                    None => w.truncated = true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::Position;
    use std::sync::Arc;

    fn delete(table: &str, key: u64) -> (TableName, Op) {
        let t = TableName::parse(table);
        (
            t,
            Op::Delete {
                collection: Arc::from("c"),
                key: PointKey::Num(key),
                position: Position::default(),
            },
        )
    }

    #[test]
    fn only_changes_of_the_chunk_table_inside_the_window_conflict() {
        let mut w = Windows::default();
        let (t, before) = delete("a", 1);
        w.record(&t, &[before]);
        w.open("c1".into(), TableName::parse("a"));
        let (t, inside) = delete("a", 2);
        w.record(&t, &[inside]);
        let (other, other_op) = delete("b", 3);
        w.record(&other, &[other_op]);
        let closed = w.close("c1").unwrap();
        assert!(!closed.conflicts(&PointKey::Num(1)));
        assert!(closed.conflicts(&PointKey::Num(2)));
        assert!(!closed.conflicts(&PointKey::Num(3)));
        assert!(w.close("c1").is_none());
        assert!(w.is_empty());
    }

    #[test]
    fn truncate_inside_the_window_drops_the_chunk() {
        let mut w = Windows::default();
        w.open("c1".into(), TableName::parse("a"));
        let t = TableName::parse("a");
        w.record(
            &t,
            &[Op::Truncate {
                collection: Arc::from("c"),
                table: t.clone(),
                position: Position::default(),
            }],
        );
        assert!(w.close("c1").unwrap().conflicts(&PointKey::Num(42)));
    }
}
