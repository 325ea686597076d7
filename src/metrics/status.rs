//! Sync status in one call: the `/status` document (JSON), what "in sync" means, and its human
//! form for `pg2qdrant status`.
//!
//! The running connector assembles the document on each request from what its stages hold (see
//! `pipeline::status`); this module owns its shape so the endpoint and the command that reads it
//! agree. A table is **in sync** when its copy is done (or none was asked for:
//! `snapshot = "never"`), its last `verify` found no drift, no row of it is parked in the
//! dead-letter file, and the process is ready and less than [`LAG_LIMIT_SECONDS`] behind. The
//! whole connector is in sync when every table is; `pg2qdrant status` exits 0 only then, so it
//! can gate a deploy.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// More behind than this (the oldest commit read and not durable) is "lagging".
pub const LAG_LIMIT_SECONDS: f64 = 10.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// `run` or `apply`.
    pub mode: String,
    /// Whether this process writes Qdrant. `run` with `qdrant.direct = false` does not: its
    /// durable position is what Kafka holds, and it cannot tell whether the appliers are
    /// behind or stopped, so it is never "in sync" (the appliers' own `/status` tells).
    #[serde(default = "yes")]
    pub writes_qdrant: bool,
    /// `apply`: each assigned partition's lag (end offset minus this member's position), at
    /// the last sample (every 5 s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionLag>,
    pub ready: bool,
    /// Each component that is not up, with its reason (as `/readyz`).
    pub not_ready: Vec<String>,
    /// Everything committed up to here is durable in every sink.
    pub durable_lsn: String,
    /// Age of the oldest transaction read and not yet durable (0: caught up).
    pub lag_seconds: f64,
    /// WAL between the server's position and the durable one, at the last sample (every 5 s).
    pub lag_bytes: Option<u64>,
    pub in_sync: bool,
    pub tables: Vec<TableStatus>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Messages in the partition not yet taken by this member.
    pub lag: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableStatus {
    pub table: String,
    pub collection: String,
    /// `not copied`, `copying`, `done`, or `streaming only` (`snapshot = "never"`).
    pub copy: String,
    /// Why the last copy ran: `initial`, `resync`, `slot lost`, `table rewritten`.
    pub copy_reason: Option<String>,
    pub rows_copied: u64,
    pub chunks_done: u32,
    pub chunks: Option<u32>,
    /// The last `pg2qdrant verify` of the table, if any.
    pub verify: Option<Verified>,
    /// Rows of the table parked in the dead-letter file, not replayed yet.
    pub dead_letters: u64,
    pub in_sync: bool,
    /// Why it is not in sync (empty when it is).
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verified {
    /// Unix seconds.
    pub checked_at: i64,
    pub rows: u64,
    pub points: u64,
    pub missing: u64,
    pub orphaned: u64,
    pub stale: u64,
    /// Rows whose point is present and equal, of all rows (100 for an empty table without
    /// orphans).
    pub in_sync_percent: f64,
}

impl Verified {
    pub fn drift(&self) -> u64 {
        self.missing + self.orphaned + self.stale
    }

    /// `in_sync_percent` from the counts.
    pub fn percent(rows: u64, missing: u64, orphaned: u64, stale: u64) -> f64 {
        if rows == 0 {
            return if orphaned == 0 { 100.0 } else { 0.0 };
        }
        let equal = rows.saturating_sub(missing + stale);
        (equal as f64 * 1000.0 / rows as f64).floor() / 10.0
    }
}

impl TableStatus {
    /// Sets `reasons` and `in_sync` from the table's own state (the process's lag and
    /// readiness are added by [`Status::settle`]).
    pub fn settle(&mut self) {
        if self.copy == "copying" || self.copy == "not copied" {
            self.reasons.push(format!(
                "copy {}: {} rows so far",
                self.copy, self.rows_copied
            ));
        }
        if let Some(v) = &self.verify {
            if v.drift() > 0 {
                self.reasons.push(format!(
                    "last verify found {} missing, {} orphaned, {} stale: `pg2qdrant verify --repair --table {}`",
                    v.missing, v.orphaned, v.stale, self.table
                ));
            }
        }
        if self.dead_letters > 0 {
            self.reasons.push(format!(
                "{} rows parked in the dead-letter file: `pg2qdrant dead-letter list`",
                self.dead_letters
            ));
        }
        self.in_sync = self.reasons.is_empty();
    }
}

impl Status {
    /// Settles every table, then the whole: in sync when ready, less than
    /// [`LAG_LIMIT_SECONDS`] behind and every table in sync.
    pub fn settle(mut self) -> Self {
        let behind = self.lag_seconds >= LAG_LIMIT_SECONDS;
        let queued: i64 = self.partitions.iter().map(|p| p.lag).sum();
        for t in &mut self.tables {
            t.settle();
            if behind {
                t.reasons
                    .push(format!("{:.0} s behind the database", self.lag_seconds));
            }
            if !self.writes_qdrant {
                t.reasons.push(format!(
                    "Qdrant is written by `pg2qdrant apply` (qdrant.direct = false): this process published up to {} and cannot tell how far the appliers are; ask their /status",
                    self.durable_lsn
                ));
            }
            if queued > 0 {
                t.reasons.push(format!(
                    "{queued} events in the assigned partitions not applied yet"
                ));
            }
            t.in_sync = t.reasons.is_empty();
        }
        self.in_sync = self.ready
            && !behind
            && self.writes_qdrant
            && queued == 0
            && self.tables.iter().all(|t| t.in_sync);
        self
    }

    /// The human form: a headline, then a small table, then the reasons.
    pub fn render(&self) -> String {
        let position = if !self.writes_qdrant {
            format!(
                "published up to {} (Qdrant is written by the appliers)",
                self.durable_lsn
            )
        } else if self.durable_lsn.is_empty() {
            "applying from Kafka".to_owned()
        } else {
            format!("durable at {}", self.durable_lsn)
        };
        let mut out = format!(
            "pg2qdrant {}: {}; {}; {position}; lag {:.1} s, {}\n",
            self.mode,
            if self.ready { "ready" } else { "NOT READY" },
            if self.in_sync {
                "in sync"
            } else {
                "NOT IN SYNC"
            },
            self.lag_seconds,
            self.lag_bytes
                .map_or("bytes not sampled yet".to_owned(), |b| format!("{b} bytes"))
        );
        for r in &self.not_ready {
            out.push_str(&format!("  not ready: {r}\n"));
        }
        for p in &self.partitions {
            out.push_str(&format!(
                "  partition {}[{}]: {} behind\n",
                p.topic, p.partition, p.lag
            ));
        }
        let rows: Vec<[String; 7]> = self.tables.iter().map(TableStatus::cells).collect();
        out.push_str(&table_text(&rows));
        for t in &self.tables {
            for r in &t.reasons {
                out.push_str(&format!("  {}: {r}\n", t.table));
            }
        }
        out
    }
}

impl TableStatus {
    /// The table's row in [`Status::render`]'s table.
    fn cells(&self) -> [String; 7] {
        let copy = match self.chunks {
            Some(n) if self.copy == "copying" => {
                format!(
                    "copying {}/{} chunks, {} rows",
                    self.chunks_done, n, self.rows_copied
                )
            }
            _ if self.copy == "done" => format!("done, {} rows", self.rows_copied),
            _ => self.copy.clone(),
        };
        let (verified, drift, percent) = match &self.verify {
            None => ("never".to_owned(), "-".to_owned(), "-".to_owned()),
            Some(v) => (
                chrono::DateTime::from_timestamp(v.checked_at, 0)
                    .map_or(v.checked_at.to_string(), |d| {
                        d.format("%Y-%m-%d %H:%M:%SZ").to_string()
                    }),
                format!("{}/{}/{}", v.missing, v.orphaned, v.stale),
                format!("{:.1}%", v.in_sync_percent),
            ),
        };
        [
            self.table.clone(),
            copy,
            verified,
            drift,
            percent,
            self.dead_letters.to_string(),
            if self.in_sync {
                "in sync"
            } else {
                "NOT IN SYNC"
            }
            .to_owned(),
        ]
    }
}

/// [`Status::render`]'s table: a header and a row per table, columns padded to their widest.
fn table_text(rows: &[[String; 7]]) -> String {
    let head = [
        "TABLE",
        "COPY",
        "LAST VERIFY",
        "MISSING/ORPHANED/STALE",
        "IN SYNC %",
        "DEAD LETTERS",
        "STATE",
    ];
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// What assembles the document in a running connector.
pub trait StatusSource: Send + Sync {
    fn status(&self) -> Status;
}

/// Filled once the connector's stages exist; `/status` answers 503 until then.
pub type StatusSlot = Arc<OnceLock<Box<dyn StatusSource>>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn table(copy: &str) -> TableStatus {
        TableStatus {
            table: "public.msgs".into(),
            collection: "msgs".into(),
            copy: copy.into(),
            copy_reason: None,
            rows_copied: 10,
            chunks_done: 1,
            chunks: Some(1),
            verify: None,
            dead_letters: 0,
            in_sync: false,
            reasons: Vec::new(),
        }
    }

    fn status(tables: Vec<TableStatus>, lag: f64) -> Status {
        Status {
            mode: "run".into(),
            writes_qdrant: true,
            partitions: Vec::new(),
            ready: true,
            not_ready: Vec::new(),
            durable_lsn: "0/10".into(),
            lag_seconds: lag,
            lag_bytes: Some(0),
            in_sync: false,
            tables,
        }
        .settle()
    }

    #[test]
    fn in_sync_needs_a_finished_copy_no_drift_no_parked_rows_and_little_lag() {
        assert!(status(vec![table("done"), table("streaming only")], 0.0).in_sync);
        assert!(!status(vec![table("done"), table("copying")], 0.0).in_sync);
        assert!(!status(vec![table("done")], LAG_LIMIT_SECONDS).in_sync);
        let mut parked = table("done");
        parked.dead_letters = 2;
        let s = status(vec![parked], 0.0);
        assert!(!s.in_sync && s.tables[0].reasons[0].contains("2 rows parked"));
        let mut drifted = table("done");
        drifted.verify = Some(Verified {
            checked_at: 0,
            rows: 4,
            points: 4,
            missing: 0,
            orphaned: 0,
            stale: 1,
            in_sync_percent: Verified::percent(4, 0, 0, 1),
        });
        let s = status(vec![drifted], 0.0);
        assert!(!s.in_sync);
        assert!(s.render().contains("75.0%"), "{}", s.render());
        assert!(s.render().contains("0/0/1"), "{}", s.render());
        assert_eq!(Verified::percent(0, 0, 0, 0), 100.0);
        // Publishing only: whatever else holds, this process cannot tell.
        let mut publish_only = status(vec![table("done")], 0.0);
        publish_only.writes_qdrant = false;
        let s = publish_only.settle();
        assert!(!s.in_sync && s.tables[0].reasons[0].contains("ask their /status"));
        assert!(
            s.render().contains("published up to 0/10"),
            "{}",
            s.render()
        );
        // An applier with events left in its partitions is behind.
        let mut applier = status(vec![table("by the publisher")], 0.0);
        applier.partitions = vec![PartitionLag {
            topic: "t".into(),
            partition: 2,
            lag: 7,
        }];
        let s = applier.settle();
        assert!(!s.in_sync && s.render().contains("partition t[2]: 7 behind"));
        assert_eq!(Verified::percent(3, 1, 0, 0), 66.6);
    }
}
