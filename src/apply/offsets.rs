//! The offsets of the batches an applier handed to its writer, in order (what each commits once
//! durable: `kafka::consume::Offsets`), and the age of the oldest event not yet durable (the
//! apply lag).

pub(super) use crate::kafka::consume::Offsets;

use crate::metrics::names;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Sets the apply lag of `group`: the age of the oldest event in `queue` (taken, not yet
/// durable), seconds; 0 when empty.
pub(super) fn export_apply_lag(queue: &Mutex<VecDeque<Offsets>>, group: &str) {
    metrics::gauge!(names::KAFKA_APPLY_LAG_SECONDS, "group" => group.to_owned())
        .set(seconds_behind(queue));
}

pub(super) fn seconds_behind(queue: &Mutex<VecDeque<Offsets>>) -> f64 {
    let oldest = queue
        .lock()
        .expect("commit queue")
        .iter()
        .filter_map(|o| o.oldest)
        .min();
    oldest.map_or(0.0, crate::pipeline::lag::age_seconds)
}
