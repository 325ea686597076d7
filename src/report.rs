//! What the last `pg2qdrant verify` found, per table: written beside the checkpoint by verify,
//! read by the running connector's sampler (the `pg2qdrant_verify_*` gauges). A leaf: it knows
//! the report's shape and file, nothing of how a check runs.

use crate::error::Error;
use crate::metrics::names;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TableReport {
    pub table: String,
    pub collection: String,
    pub rows: u64,
    pub points: u64,
    pub missing: u64,
    pub orphaned: u64,
    pub stale: u64,
    /// Points changed while the check ran (not compared).
    pub skipped_changed: u64,
    /// Rows the mapping rejects (the connector dead-letters them); not counted as drift.
    pub unmappable: u64,
    /// A check of some keys only (`dead-letter replay`): each rejected row's key and reason.
    #[serde(skip)]
    pub unmappable_reasons: Vec<(Value, String)>,
    pub missing_keys: Vec<Value>,
    pub orphaned_keys: Vec<Value>,
    pub stale_keys: Vec<Value>,
    pub repaired: u64,
    /// The connector had not applied everything the snapshot shows within the wait.
    pub lagging: bool,
    /// Unix seconds when the check ended.
    pub checked_at: i64,
}

impl TableReport {
    pub fn drift(&self) -> u64 {
        self.missing + self.orphaned + self.stale
    }
}

/// Writes `reports` as the last verify's result (atomically) to `path`
/// (`checkpoint.verify_path()`).
pub fn store(path: &Path, reports: &[TableReport]) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(reports).expect("report serializes");
    crate::checkpoint::write_atomically(path, &bytes)
        .map_err(Error::io(format!("write verify report {}", path.display())))
}

/// The last verify's reports in `path` (empty when none was made, or the file cannot be read).
pub fn load(path: &Path) -> Vec<TableReport> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Sets the `pg2qdrant_verify_*` gauges from the last report `verify` wrote beside the
/// checkpoint, when it changed since `seen` (its modification time). Called by the connector.
pub fn export_last(path: &Path, seen: &mut Option<std::time::SystemTime>) {
    let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else {
        return;
    };
    if *seen == Some(modified) {
        return;
    }
    *seen = Some(modified);
    match std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<TableReport>>(&b).ok())
    {
        Some(reports) => reports.iter().for_each(record_metrics),
        None => tracing::warn!(path = %path.display(), "cannot read the last verify report"),
    }
}

fn record_metrics(r: &TableReport) {
    let t = r.table.clone();
    metrics::gauge!(names::VERIFY_ROWS, "table" => t.clone()).set(r.rows as f64);
    metrics::gauge!(names::VERIFY_MISSING, "table" => t.clone()).set(r.missing as f64);
    metrics::gauge!(names::VERIFY_ORPHANED, "table" => t.clone()).set(r.orphaned as f64);
    metrics::gauge!(names::VERIFY_STALE, "table" => t.clone()).set(r.stale as f64);
    metrics::gauge!(names::VERIFY_TIMESTAMP, "table" => t).set(r.checked_at as f64);
}
