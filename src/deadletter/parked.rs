//! `pg2qdrant dead-letter list`, and the records a replay (`verify::replay`) reads and marks:
//! what is parked, by table and reason.
//!
//! The dead-letter file stays append-only, because the running connector may append to it at
//! any time: replayed records are listed in `<file>.replayed` (line number, key and LSN, so an
//! edited file never matches a wrong line), and `list` and `replay` skip them. Delete both files
//! together, or neither.
//!
//! Records of a sink's refusal (`collection:NAME`, e.g. an embedder refusing a text) and of
//! Kafka's (`topic:NAME`) carry a point, not a row key: `list` shows them, with the command that
//! fixes their rows (`verify --repair --table`, or `resync`).

use crate::config::TableConfig;
use crate::error::Error;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One dead letter, by its line in the file.
#[derive(Debug, Clone)]
pub struct Record {
    pub line: usize,
    pub table: String,
    pub key: Value,
    pub lsn: String,
    pub reason: String,
}

/// `list`: records not replayed yet, by table and reason.
#[derive(Debug, Serialize, PartialEq)]
pub struct Group {
    pub table: String,
    pub reason: String,
    pub count: usize,
    pub first_lsn: String,
    pub last_lsn: String,
    /// The keys of the first [`SAMPLES`] records (which rows are parked).
    pub samples: Vec<Value>,
    /// What fixes them, when `replay` cannot.
    pub hint: Option<String>,
}

fn marker_path(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".replayed");
    PathBuf::from(p)
}

/// How many records not replayed yet each `table` key of the file holds (the source table,
/// `collection:NAME` or `topic:NAME`), for `/status`; a file that cannot be read counts none
/// (logged).
pub fn counts(path: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut parked = std::collections::BTreeMap::new();
    match pending(path) {
        Ok(records) => {
            for r in records {
                *parked.entry(r.table).or_default() += 1;
            }
        }
        Err(e) => tracing::warn!(error = %e, "status: cannot read the dead-letter file"),
    }
    parked
}

/// Every record of the file not replayed yet. A line that is not a record (a torn last line
/// after a crash) is reported and skipped.
pub fn pending(path: &Path) -> Result<Vec<Record>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::io(format!(
                "read dead-letter file {}",
                path.display()
            ))(e))
        }
    };
    let done = replayed(path)?;
    let mut out = Vec::new();
    for (line, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            tracing::warn!(file = %path.display(), line = line + 1, "not a dead-letter record; skipped");
            continue;
        };
        let r = Record {
            line,
            table: v["table"].as_str().unwrap_or_default().to_owned(),
            key: v["key"].clone(),
            lsn: v["lsn"].as_str().unwrap_or_default().to_owned(),
            reason: v["reason"].as_str().unwrap_or_default().to_owned(),
        };
        if !done.contains(&identity(&r)) {
            out.push(r);
        }
    }
    Ok(out)
}

fn identity(r: &Record) -> String {
    format!("{}\t{}\t{}", r.line, r.lsn, r.key)
}

fn replayed(path: &Path) -> Result<HashSet<String>, Error> {
    let marker = marker_path(path);
    let text = match std::fs::read_to_string(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(Error::io(format!("read {}", marker.display()))(e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            format!(
                "{}\t{}\t{}",
                v["line"].as_u64().unwrap_or(u64::MAX),
                v["lsn"].as_str().unwrap_or_default(),
                v["key"]
            )
        })
        .collect())
}

/// Appends the records to the replayed list (fsynced).
pub fn mark(path: &Path, records: &[&Record]) -> Result<(), Error> {
    if records.is_empty() {
        return Ok(());
    }
    let marker = marker_path(path);
    let ctx = || format!("write {}", marker.display());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&marker)
        .map_err(Error::io(ctx()))?;
    for r in records {
        let line =
            serde_json::json!({ "line": r.line, "lsn": r.lsn, "key": r.key, "table": r.table });
        writeln!(f, "{line}").map_err(Error::io(ctx()))?;
    }
    f.sync_data().map_err(Error::io(ctx()))
}

/// Keys shown per table and reason by `list`.
pub const SAMPLES: usize = 5;

/// `list`: the records pending in the dead-letter file at `path` by table and reason; `tables`
/// name the way out of a record the sink refused.
pub fn list(path: &Path, tables: &[TableConfig]) -> Result<Vec<Group>, Error> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for r in pending(path)? {
        let g = groups
            .entry((r.table.clone(), r.reason.clone()))
            .or_insert_with(|| Group {
                table: r.table.clone(),
                reason: r.reason.clone(),
                count: 0,
                first_lsn: r.lsn.clone(),
                last_lsn: r.lsn.clone(),
                samples: Vec::new(),
                hint: hint(tables, &r),
            });
        g.count += 1;
        if g.samples.len() < SAMPLES {
            g.samples.push(r.key.clone());
        }
        g.last_lsn = r.lsn.clone();
    }
    Ok(groups.into_values().collect())
}

/// What fixes a record `replay` cannot apply.
fn hint(tables: &[TableConfig], r: &Record) -> Option<String> {
    if let Some(c) = r.table.strip_prefix("collection:") {
        let tables: Vec<&str> = tables
            .iter()
            .filter(|t| t.collection == c)
            .map(|t| t.table.as_str())
            .collect();
        return Some(format!(
            "refused by the sink: once fixed, `pg2qdrant verify --repair --table {}` writes the rows' points",
            tables.first().copied().unwrap_or("<table>")
        ));
    }
    if r.table.starts_with("topic:") {
        return Some(
            "refused by Kafka: once fixed, `pg2qdrant resync --table <table>` publishes the rows again"
                .to_owned(),
        );
    }
    if !r.key.is_object() {
        return Some(
            "no row key was readable: `pg2qdrant verify --repair` finds the row".to_owned(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_records_are_skipped_only_when_line_key_and_lsn_match() {
        let dir = std::env::temp_dir().join(format!("pg2qdrant-dl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dl.jsonl");
        let rec = |k: u32, lsn: &str| {
            serde_json::json!({"table": "public.t", "key": {"id": k.to_string()}, "lsn": lsn, "reason": "r", "row": {}})
                .to_string()
        };
        std::fs::write(
            &path,
            format!("{}\n{}\nnot json\n", rec(1, "0/1"), rec(2, "0/2")),
        )
        .unwrap();
        let all = pending(&path).unwrap();
        assert_eq!(all.len(), 2);
        mark(&path, &[&all[0]]).unwrap();
        let left = pending(&path).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key, serde_json::json!({"id": "2"}));
        // The file was replaced by another one: line 0 now holds another record.
        std::fs::write(&path, format!("{}\n", rec(3, "0/3"))).unwrap();
        assert_eq!(pending(&path).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
