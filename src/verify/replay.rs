//! `pg2qdrant dead-letter replay`: applying what is parked once its cause is fixed (a vector
//! size corrected in the config, a mapping fixed, the row itself corrected).
//!
//! Replay does not trust the parked copy of a row: it reads the row as it is now and repairs its
//! point like `verify --repair` does (fenced at a position above every change committed before
//! the repair started, so a newer streamed change always wins), then checks those rows again.
//! A record is done when its row now maps and the check finds its point right, or when the row is
//! gone (its delete streamed). Records that still fail keep their place, with today's reason,
//! and the file stays append-only (`deadletter::parked` marks what was applied beside it).

use crate::config::Config;
use crate::deadletter::parked::{mark, pending, Record};
use crate::error::Error;
use crate::event::TableName;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;

/// `replay`'s outcome per table.
#[derive(Debug, Default, Serialize)]
pub struct Replayed {
    pub table: String,
    pub applied: usize,
    /// Rows that still do not map, with today's reason (kept in the file).
    pub still_failing: Vec<(Value, String)>,
    /// Records without a row key (kept).
    pub without_key: usize,
}

/// `replay`: applies the records of the watched tables (`only`: one of them) whose rows map now;
/// marks what it applied. Returns per table what happened.
pub async fn replay(cfg: &Config, only: Option<&str>) -> Result<Vec<Replayed>, Error> {
    let path = &cfg.dead_letter.path;
    let records = pending(path)?;
    let only = only.map(TableName::parse);
    if let Some(t) = &only {
        cfg.tables_named("--table", &t.to_string())?;
    }
    let mut out = Vec::new();
    for t in &cfg.tables {
        let name = TableName::parse(&t.table);
        if only.as_ref().is_some_and(|o| o != &name) {
            continue;
        }
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| TableName::parse(&r.table) == name && !r.table.contains(':'))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut result = Replayed {
            table: name.to_string(),
            ..Default::default()
        };
        let (keyed, unkeyed): (Vec<&Record>, Vec<&Record>) =
            mine.into_iter().partition(|r| r.key.is_object());
        result.without_key = unkeyed.len();
        // One repair per distinct key (a row may have been parked several times).
        let mut keys: Vec<Value> = keyed.iter().map(|r| r.key.clone()).collect();
        keys.sort_by_key(|k| k.to_string());
        keys.dedup();
        let (report, outcomes) = super::repair_keys(cfg, t, &keys).await?;
        let applied: HashSet<String> = keys
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.is_ok())
            .map(|(k, _)| k.to_string())
            .collect();
        for (k, o) in keys.iter().zip(&outcomes) {
            if let Err(reason) = o {
                result.still_failing.push((k.clone(), reason.clone()));
            }
        }
        // The re-check must find every mappable row's point right before anything is marked.
        if report.drift() > 0 {
            return Err(Error::prerequisite(
                format!(
                    "replay of {name}: after the repair, {} of its rows still differ from their points (missing {}, stale {})",
                    report.drift(),
                    report.missing,
                    report.stale
                ),
                "is the connector far behind, or Qdrant refusing writes? run `pg2qdrant verify --table` and try again",
            ));
        }
        let done: Vec<&Record> = keyed
            .into_iter()
            .filter(|r| applied.contains(&r.key.to_string()))
            .collect();
        mark(path, &done)?;
        result.applied = done.len();
        tracing::info!(table = %name, applied = result.applied, still_failing = result.still_failing.len(), "dead letters replayed");
        out.push(result);
    }
    Ok(out)
}
