//! What the copies look like from outside, for the progress report and `/status`: read-only
//! views of the coordinator's state.

use super::Coordinator;
use crate::checkpoint::state::TableCopy;
use crate::event::TableName;
use std::time::Instant;

/// A table's copy progress for logs and progress bars.
#[derive(Debug, Clone)]
pub struct CopyProgress {
    pub table: TableName,
    pub rows: u64,
    pub estimated: u64,
    pub chunks_done: u32,
    pub chunks: Option<u32>,
    pub started: Instant,
}

impl Coordinator {
    /// Each watched table's copy as the state file records it (None: never copied), with the
    /// rows a running copy has handed to the writer so far (durable chunks' rows otherwise).
    pub fn copies(&self) -> Vec<(TableName, Option<TableCopy>, u64)> {
        let inner = self.lock();
        let mut out: Vec<_> = self
            .mappings
            .keys()
            .map(|t| {
                let copy = inner.state.tables.get(&t.to_string()).cloned();
                let rows = match inner.live.get(t) {
                    Some(l) => l.resumed + l.rows_streamed,
                    None => copy.as_ref().map_or(0, |c| c.rows),
                };
                (t.clone(), copy, rows)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// CopyProgress of the running copies.
    pub fn progress(&self) -> Vec<CopyProgress> {
        let inner = self.lock();
        let mut out: Vec<CopyProgress> = inner
            .live
            .iter()
            .map(|(t, l)| {
                let copy = inner.state.tables.get(&t.to_string());
                CopyProgress {
                    table: t.clone(),
                    rows: l.resumed + l.rows_streamed,
                    estimated: l.layout.as_ref().map_or(0, |x| x.estimated_rows),
                    chunks_done: copy.map_or(0, |c| c.done.len() as u32),
                    chunks: copy.and_then(|c| c.chunks),
                    started: l.started,
                }
            })
            .collect();
        out.sort_by(|a, b| a.table.cmp(&b.table));
        out
    }
}
