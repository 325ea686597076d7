//! `/status` of a running connector: assembled on each request from what the stages hold (the
//! copy coordinator, the lag clock, readiness, the durable position) and from the files beside
//! them (the last verify's report, the dead-letter file). Nothing is cached: a request reads
//! the dead-letter file, which is small unless many rows are parked (and then that is the news);
//! the endpoint assembles it on a blocking thread, off the runtime that streams.

use crate::checkpoint::state::Status as CopyStatus;
use crate::config::{Config, SnapshotMode};
use crate::lsn::Lsn;
use crate::metrics::health::Health;
use crate::metrics::status::{Status, StatusSource, TableStatus, Verified};
use crate::snapshot::Coordinator;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

pub struct Board {
    pub cfg: Config,
    pub coordinator: Arc<Coordinator>,
    pub lag: Arc<super::lag::LagClock>,
    pub health: Arc<Health>,
    pub durable: watch::Receiver<Lsn>,
}

impl StatusSource for Board {
    fn status(&self) -> Status {
        let (ready, not_ready) = match self.health.ready() {
            Ok(()) => (true, Vec::new()),
            Err(down) => (false, down),
        };
        let verified = verified(&self.cfg.checkpoint.verify_path());
        let parked = crate::deadletter::parked::counts(&self.cfg.dead_letter.path);
        let mappings = self.coordinator.mappings();
        let tables = self
            .coordinator
            .copies()
            .into_iter()
            .map(|(table, copy, rows)| {
                let name = table.to_string();
                let collection = mappings
                    .get(&table)
                    .map_or(String::new(), |m| m.collection.to_string());
                let state = match copy.as_ref().map(|c| c.status) {
                    Some(CopyStatus::Done) => "done",
                    Some(CopyStatus::Copying) => "copying",
                    None if self.cfg.source.snapshot == SnapshotMode::Never => "streaming only",
                    None => "not copied",
                };
                // Refusals by the sink are parked under the collection's name, events Kafka
                // refused under their topic's.
                let topic = self
                    .cfg
                    .kafka
                    .as_ref()
                    .map(|k| format!("topic:{}", k.topic(&table.schema, &table.name)));
                let dead_letters = [
                    Some(name.clone()),
                    Some(format!("collection:{collection}")),
                    topic,
                ]
                .iter()
                .flatten()
                .filter_map(|k| parked.get(k))
                .sum();
                TableStatus {
                    verify: verified.get(&name).cloned(),
                    collection,
                    copy: state.to_owned(),
                    copy_reason: copy.as_ref().map(|c| c.reason.to_string()),
                    rows_copied: rows,
                    chunks_done: copy.as_ref().map_or(0, |c| c.done.len() as u32),
                    chunks: copy.as_ref().and_then(|c| c.chunks),
                    dead_letters,
                    in_sync: false,
                    reasons: Vec::new(),
                    table: name,
                }
            })
            .collect();
        Status {
            mode: crate::config::Mode::Run.as_str().to_owned(),
            writes_qdrant: self.cfg.qdrant.direct,
            partitions: Vec::new(),
            ready,
            not_ready,
            durable_lsn: self.durable.borrow().to_string(),
            lag_seconds: self.lag.seconds_behind(),
            lag_bytes: self.lag.bytes_behind(),
            in_sync: false,
            tables,
        }
        .settle()
    }
}

/// What the last `verify` found, by table (from its report beside the checkpoint).
fn verified(report: &std::path::Path) -> BTreeMap<String, Verified> {
    crate::report::load(report)
        .into_iter()
        .map(|r| {
            let v = Verified {
                checked_at: r.checked_at,
                rows: r.rows,
                points: r.points,
                missing: r.missing,
                orphaned: r.orphaned,
                stale: r.stale,
                in_sync_percent: Verified::percent(r.rows, r.missing, r.orphaned, r.stale),
            };
            (r.table, v)
        })
        .collect()
}
