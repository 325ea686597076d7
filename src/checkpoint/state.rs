//! Copy progress per table, persisted beside the checkpoint (`checkpoint.snapshot_path`):
//! replaced atomically and fsynced after every chunk that became durable. A chunk is listed as
//! done only once the writer made its rows durable (the stream's durable LSN passed its high
//! watermark), so a restart re-reads exactly the chunks that were not finished.

use crate::checkpoint::write_atomically;
use crate::error::Error;
use crate::event::TableName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Copying,
    Done,
}

/// Why a table is (was) copied; stored as the words shown (`"slot lost"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopyReason {
    /// The first time the connector sees the table.
    #[serde(rename = "initial")]
    Initial,
    /// `pg2qdrant resync`.
    #[serde(rename = "resync")]
    Resync,
    /// The slot lost changes (or is gone): every table again.
    #[serde(rename = "slot lost")]
    SlotLost,
    /// VACUUM FULL, CLUSTER or TRUNCATE moved rows between pages mid-copy.
    #[serde(rename = "table rewritten")]
    TableRewritten,
    /// The collection was created anew while its copy state said done.
    #[serde(rename = "collection recreated")]
    CollectionRecreated,
    /// `pg2qdrant rebuild`: into the new collection.
    #[serde(rename = "rebuild")]
    Rebuild,
}

impl std::fmt::Display for CopyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Initial => "initial",
            Self::Resync => "resync",
            Self::SlotLost => "slot lost",
            Self::TableRewritten => "table rewritten",
            Self::CollectionRecreated => "collection recreated",
            Self::Rebuild => "rebuild",
        })
    }
}

/// One table's copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableCopy {
    pub status: Status,
    /// Why it is (was) copied.
    pub reason: CopyReason,
    /// The copy's start position (commit LSN): rows last changed before it are read by the
    /// chunks, every later change streams. At the end, the table's points still older than
    /// this are orphans and are removed.
    pub start_lsn: u64,
    /// Set once the copy is planned: the table's file (a rewrite such as VACUUM FULL moves rows
    /// between pages, so the plan is redone) and its chunks of `chunk_pages` heap pages.
    #[serde(default)]
    pub relfilenode: Option<u32>,
    #[serde(default)]
    pub chunk_pages: u32,
    #[serde(default)]
    pub chunks: Option<u32>,
    /// Chunks whose rows are durable, ascending.
    #[serde(default)]
    pub done: Vec<u32>,
    /// Rows written by the durable chunks.
    #[serde(default)]
    pub rows: u64,
    /// The commit LSN of the resync request this copy serves (0: not a request's). A request
    /// at or below it is a replay; the copy's start may move past it (a rewrite re-plans).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requested: u64,
    /// A partial resync (`resync --where`): only the rows matching this condition are read,
    /// and no sweep follows (the points of other rows were not rewritten).
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

impl TableCopy {
    pub fn new(reason: CopyReason, start_lsn: u64) -> Self {
        Self {
            status: Status::Copying,
            reason,
            start_lsn,
            relfilenode: None,
            chunk_pages: 0,
            chunks: None,
            done: Vec::new(),
            rows: 0,
            requested: 0,
            condition: None,
        }
    }

    /// Chunks still to read (all of them until the copy is planned).
    pub fn remaining(&self) -> Vec<u32> {
        match self.chunks {
            Some(n) => (0..n)
                .filter(|c| self.done.binary_search(c).is_err())
                .collect(),
            None => Vec::new(),
        }
    }

    pub fn mark_done(&mut self, chunk: u32, rows: u64) {
        if let Err(i) = self.done.binary_search(&chunk) {
            self.done.insert(i, chunk);
            self.rows += rows;
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    /// By `schema.table`.
    pub tables: BTreeMap<String, TableCopy>,
    /// Collections whose indexing is deferred for their first copy (bulk load), with the
    /// `indexing_threshold` (KB) to restore once no copy into them is running.
    #[serde(default)]
    pub bulk: BTreeMap<String, u64>,
    /// Rebuilds in progress, by alias (see `rebuild`).
    #[serde(default)]
    pub rebuilds: BTreeMap<String, Rebuild>,
}

/// A collection being rebuilt behind its alias: the tables writing the alias are copied into
/// `target` while the stream writes both; then the alias is switched and `old` dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebuild {
    /// The collection the alias pointed at when the rebuild was requested.
    pub old: String,
    pub target: String,
    /// `schema.table` of every table writing the alias.
    pub tables: Vec<String>,
}

/// The state file.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<State, Error> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::config(
                    "checkpoint.snapshot_path",
                    format!(
                        "{} is not a snapshot state file ({e}); delete it to copy every table again",
                        self.path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                version: 1,
                ..Default::default()
            }),
            Err(e) => Err(Error::io(format!(
                "read snapshot state {}",
                self.path.display()
            ))(e)),
        }
    }

    /// Records that every table in `tables` must be copied again (the slot lost changes).
    pub fn recopy_all(&self, tables: &[TableName], reason: CopyReason) -> Result<(), Error> {
        let mut state = self.load()?;
        for t in tables {
            state
                .tables
                .insert(t.to_string(), TableCopy::new(reason, 0));
        }
        self.store(&state)
    }

    /// Takes a rebuild request: records it and marks its tables to be copied again (into the
    /// new collection). Taking the same request again changes nothing.
    pub fn accept_rebuild(&self, alias: &str, rebuild: Rebuild) -> Result<(), Error> {
        let mut state = self.load()?;
        if state.rebuilds.get(alias) == Some(&rebuild) {
            return Ok(());
        }
        for t in &rebuild.tables {
            state
                .tables
                .insert(t.clone(), TableCopy::new(CopyReason::Rebuild, 0));
        }
        state.rebuilds.insert(alias.to_owned(), rebuild);
        self.store(&state)
    }

    /// Records a collection's indexing threshold to restore after its bulk load (before the
    /// threshold is lowered, so a crash can never leave it lowered and forgotten).
    pub fn record_bulk(&self, collection: &str, threshold: u64) -> Result<(), Error> {
        let mut state = self.load()?;
        state.bulk.insert(collection.to_owned(), threshold);
        self.store(&state)
    }

    pub fn store(&self, state: &State) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        write_atomically(&self.path, &bytes).map_err(Error::io(format!(
            "write snapshot state {}",
            self.path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_chunks_and_round_trip() {
        let mut t = TableCopy::new(CopyReason::Initial, 7);
        assert!(t.remaining().is_empty(), "unplanned");
        t.chunks = Some(4);
        t.mark_done(2, 10);
        t.mark_done(0, 5);
        t.mark_done(2, 10);
        assert_eq!(t.remaining(), vec![1, 3]);
        assert_eq!(t.rows, 15);
        let dir = std::env::temp_dir().join(format!("pg2qdrant-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = StateFile::new(&dir.join("s.json"));
        assert!(f.load().unwrap().tables.is_empty());
        let mut s = State::default();
        s.tables.insert("public.t".into(), t.clone());
        // A partial resync keeps its condition across a restart.
        t.condition = Some("n < 3".into());
        s.tables.insert("public.u".into(), t);
        f.store(&s).unwrap();
        assert_eq!(f.load().unwrap(), s);
        std::fs::write(f.path(), "{").unwrap();
        assert!(f.load().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
