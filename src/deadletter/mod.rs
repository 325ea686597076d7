//! The dead-letter file: one JSON line per row that cannot be written (table, key, LSN, reason,
//! row). Each record is flushed and fsynced before the transaction holding it is acknowledged.
//! The file is only ever appended to (the connector may be writing it while `dead-letter
//! replay` runs): what a replay applied is recorded beside it (`parked`).

pub mod parked;

use crate::error::Error;
use crate::lsn::Lsn;
use crate::mapping::MappingError;
use crate::metrics::names;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct DeadLetter {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl DeadLetter {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            file: None,
        }
    }

    /// A row the mapping rejected.
    pub fn row(&mut self, e: &MappingError, lsn: Lsn) -> Result<(), Error> {
        self.write(&e.table.to_string(), &e.key, lsn, &e.reason, &e.row)
    }

    /// One record: `table` is the source table (or `collection:NAME` for an op the sink refused).
    pub fn write(
        &mut self,
        table: &str,
        key: &Value,
        lsn: Lsn,
        reason: &str,
        row: &Value,
    ) -> Result<(), Error> {
        metrics::counter!(names::DEAD_LETTERED, "table" => table.to_owned()).increment(1);
        tracing::warn!(table, key = %key, lsn = %lsn, reason, file = %self.path.display(), "row dead-lettered");
        let record = serde_json::json!({
            "table": table,
            "key": key,
            "lsn": lsn.to_string(),
            "reason": reason,
            "row": row,
        });
        let ctx = || format!("write dead-letter file {}", self.path.display());
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(Error::io(ctx()))?;
            self.file = Some(f);
        }
        let f = self.file.as_mut().expect("opened above");
        writeln!(f, "{record}").map_err(Error::io(ctx()))?;
        crate::blocking::off_runtime(|| f.sync_data()).map_err(Error::io(ctx()))
    }
}
