//! The offsets of the batches an applier handed to its writer, in order: what each commits once
//! durable, and the age of the oldest event not yet durable (the apply lag).

use crate::metrics::names;
use std::collections::VecDeque;
use std::sync::Mutex;

/// A batch's offsets: per (topic, partition) the next offset to commit, and events per topic.
/// Few partitions per batch: looked up in a list.
#[derive(Default)]
pub(super) struct Offsets {
    pub(super) next: Vec<(String, i32, i64)>,
    /// The group's revocations when the batch's first message was taken: after another one,
    /// its offsets may be behind what a partition's interim owner committed, and are not
    /// committed (the messages come again, fenced).
    pub(super) revocations: u64,
    pub(super) events: Vec<(String, u64)>,
    /// The oldest commit time of the batch's events (Unix µs), for the apply lag.
    pub(super) oldest: Option<i64>,
}

impl Offsets {
    pub(super) fn taken(&mut self, topic: &str, partition: i32, offset: i64) {
        match self
            .next
            .iter_mut()
            .find(|(t, p, _)| *p == partition && t == topic)
        {
            Some(e) => e.2 = offset + 1,
            None => self.next.push((topic.to_owned(), partition, offset + 1)),
        }
    }

    pub(super) fn event(&mut self, topic: &str, commit_time_unix_micros: i64) {
        self.oldest = Some(
            self.oldest
                .map_or(commit_time_unix_micros, |o| o.min(commit_time_unix_micros)),
        );
        match self.events.iter_mut().find(|(t, _)| t == topic) {
            Some(e) => e.1 += 1,
            None => self.events.push((topic.to_owned(), 1)),
        }
    }
}

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
