//! The applier's offsets: committed once the batch they came with is durable, in batch order,
//! only for partitions this member still owns and only when no rebalance came between taking
//! the batch and committing it (an interim owner may have committed further; the messages come
//! again instead, and apply fenced).

use super::offsets::export_apply_lag;
use super::offsets::Offsets;
use crate::error::Error;
use crate::kafka::client;
use crate::metrics::names;
use crate::pipeline::writer::Progress;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The applier's [`Progress`]: the writer calls it once per batch, in order, after the batch
/// is durable; the batch's offsets (queued in the same order by the consumer) are committed
/// then (a failed commit is logged and covered by the next one of the partition, or by the
/// commit of every offset at the end).
pub(super) struct Commits {
    pub(super) consumer: Arc<client::GroupConsumer>,
    /// The consumer group (the apply lag's label).
    pub(super) group: String,
    pub(super) queue: Arc<Mutex<VecDeque<Offsets>>>,
    /// Batches whose offsets are not settled yet: counted down once a batch's commit is done
    /// (or skipped), after its entry left `queue`.
    pub(super) unsettled: Arc<std::sync::atomic::AtomicUsize>,
    /// Every partition's newest durable offset, committed synchronously by `flush`, with the
    /// revocations when it was taken.
    pub(super) newest: BTreeMap<(String, i32), (i64, u64)>,
}

impl Commits {
    /// The partitions this member owns now. A durable offset of a partition revoked since (a
    /// rebalance gave it to another member, which may have committed further) is not
    /// committed: it would move the new owner's position back. Unknown: none is owned.
    fn owned(&self) -> TopicPartitionList {
        self.consumer.assignment().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read this member's partitions; no offset is committed this time");
            TopicPartitionList::new()
        })
    }
}

/// Of `offsets` (topic, partition, next offset, the revocations when it was taken), those to
/// commit: taken since the last revocation (`now`) and of a partition in `owned`.
fn committable<'a>(
    offsets: impl Iterator<Item = (&'a str, i32, i64, u64)>,
    owned: &TopicPartitionList,
    now: u64,
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset, taken) in offsets {
        if taken == now && owned.find_partition(topic, partition).is_some() {
            // Fails only for an offset type we never pass.
            let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
        }
    }
    tpl
}

/// A synchronous offset commit, letting the runtime's other tasks move to other threads while
/// it waits for the broker (one round trip per batch): when it returns, the group coordinator
/// holds the offset, so a batch is never reported committed before it is.
fn commit(
    consumer: &client::GroupConsumer,
    tpl: &TopicPartitionList,
) -> rdkafka::error::KafkaResult<()> {
    crate::blocking::off_runtime(|| consumer.commit(tpl, CommitMode::Sync))
}

impl Progress for Commits {
    fn durable(&mut self, _: Option<crate::lsn::Lsn>) -> Result<(), Error> {
        let Some(batch) = self.queue.lock().expect("commit queue").pop_front() else {
            return Ok(());
        };
        let settled = self.settle(batch);
        self.unsettled
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        settled
    }

    /// Commits every durable offset once more (a failed commit of a partition no later batch
    /// touched is made up for here).
    fn flush(&mut self) -> Result<(), Error> {
        let tpl = committable(
            self.newest
                .iter()
                .map(|((t, p), (o, r))| (t.as_str(), *p, *o, *r)),
            &self.owned(),
            self.consumer.context().revocations(),
        );
        if tpl.count() == 0 {
            return Ok(());
        }
        if let Err(e) = commit(&self.consumer, &tpl) {
            tracing::warn!(error = %e, "final offset commit failed; those messages are applied again by the partitions' next owners, fenced");
        }
        Ok(())
    }
}

impl Commits {
    /// A durable batch's counters, and its offsets committed unless taken before a rebalance.
    fn settle(&mut self, batch: Offsets) -> Result<(), Error> {
        for (topic, n) in &batch.events {
            metrics::counter!(names::KAFKA_APPLIED, "topic" => topic.clone()).increment(*n);
        }
        export_apply_lag(&self.queue, &self.group);
        // Taken before a rebalance: an interim owner may have committed further.
        let now = self.consumer.context().revocations();
        if batch.next.is_empty() || batch.revocations != now {
            return Ok(());
        }
        let tpl = committable(
            batch
                .next
                .iter()
                .map(|(t, p, o)| (t.as_str(), *p, *o, batch.revocations)),
            &self.owned(),
            now,
        );
        if tpl.count() > 0 {
            if let Err(e) = commit(&self.consumer, &tpl) {
                tracing::warn!(error = %e, "offset commit failed (a rebalance?); those messages are applied again by the partition's owner, fenced");
            }
        }
        for (topic, partition, offset) in batch.next {
            self.newest
                .insert((topic, partition), (offset, batch.revocations));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_offsets_taken_since_the_last_revocation_of_owned_partitions_are_committed() {
        let mut owned = TopicPartitionList::new();
        owned.add_partition("t", 0);
        owned.add_partition("t", 1);
        let offsets = [
            ("t", 0, 10, 3), // owned, taken since the last revocation: committed
            ("t", 1, 20, 2), // owned again, but taken before a revocation: stale
            ("t", 2, 30, 3), // no longer owned: another member's now
        ];
        let tpl = committable(offsets.into_iter(), &owned, 3);
        let got: Vec<(i32, Offset)> = tpl
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        assert_eq!(got, [(0, Offset::Offset(10))]);
        assert_eq!(
            committable(offsets.into_iter(), &TopicPartitionList::new(), 3).count(),
            0
        );
    }
}
