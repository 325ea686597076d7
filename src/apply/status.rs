//! `/status` of an applier: what `pg2qdrant status` reads when pointed at `pg2qdrant apply`.
//!
//! An applier knows its own share of the work, nothing more: the partitions the group gave it
//! (each one's lag, sampled every 5 s), the age of the oldest event it took and has not made
//! durable, and what it parked (events sent to the dead-letter topic since it started, ops the
//! sink refused in the dead-letter file). It is in sync when it is ready, none of its partitions
//! has events left and nothing is parked. Whether the whole group is in sync is the sum of its
//! members' answers (a member that is not running answers nothing: its partitions go to the
//! others once its session ends).

use crate::config::Config;
use crate::metrics::health::Health;
use crate::metrics::status::{PartitionLag, Status, StatusSource, TableStatus};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// What the applier's tasks report for its status.
#[derive(Debug, Default)]
pub struct Observed {
    /// The last sample of each assigned partition's lag (`None` before the first sample).
    pub partitions: Mutex<Option<Vec<PartitionLag>>>,
    /// Events sent to the dead-letter topic by this process, by source topic.
    pub dead_lettered: Mutex<BTreeMap<String, u64>>,
}

pub struct Board {
    pub cfg: Config,
    pub health: Arc<Health>,
    pub observed: Arc<Observed>,
    pub queue: Arc<Mutex<VecDeque<super::offsets::Offsets>>>,
}

impl StatusSource for Board {
    fn status(&self) -> Status {
        let (ready, not_ready) = match self.health.ready() {
            Ok(()) => (true, Vec::new()),
            Err(down) => (false, down),
        };
        let parked = crate::deadletter::parked::counts(&self.cfg.dead_letter.path);
        let sent = self
            .observed
            .dead_lettered
            .lock()
            .expect("status lock")
            .clone();
        let partitions = self
            .observed
            .partitions
            .lock()
            .expect("status lock")
            .clone();
        let tables = self
            .cfg
            .tables
            .iter()
            .map(|t| {
                let name = crate::event::TableName::parse(&t.table);
                let topic = self
                    .cfg
                    .kafka
                    .as_ref()
                    .map_or(String::new(), |k| k.topic(&name.schema, &name.name));
                TableStatus {
                    table: name.to_string(),
                    collection: t.collection.clone(),
                    copy: "by the publisher".to_owned(),
                    copy_reason: None,
                    rows_copied: 0,
                    chunks_done: 0,
                    chunks: None,
                    verify: None,
                    // Rows read back that cannot be mapped are parked under the table's name,
                    // ops the sink refused under the collection's.
                    dead_letters: [name.to_string(), format!("collection:{}", t.collection)]
                        .iter()
                        .filter_map(|k| parked.get(k))
                        .sum::<u64>()
                        + sent.get(&topic).copied().unwrap_or(0),
                    in_sync: false,
                    // Until the first sample nothing says the partitions were applied.
                    reasons: match partitions {
                        None => vec!["the partitions' lag is not sampled yet".to_owned()],
                        Some(_) => Vec::new(),
                    },
                }
            })
            .collect();
        Status {
            mode: crate::config::Mode::Apply.as_str().to_owned(),
            writes_qdrant: true,
            partitions: partitions.unwrap_or_default(),
            ready,
            not_ready,
            durable_lsn: String::new(),
            lag_seconds: super::offsets::seconds_behind(&self.queue),
            lag_bytes: None,
            in_sync: false,
            tables,
        }
        .settle()
    }
}
