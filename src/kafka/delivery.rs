//! Delivery reports counted per batch, not awaited per message.
//!
//! librdkafka reports every message's delivery on the producer's polling thread. rdkafka's
//! `FutureProducer` turns each report into a oneshot channel and a future for the caller to
//! poll: per message a channel, a boxed sender, a task in a `FuturesUnordered` and a wake-up.
//! A publish batch needs less: to know when the last of its messages is reported, and which
//! ones failed. So a message carries a [`Pending`] (its batch and its index in the batch); the
//! report adds one to that event's count of delivered partitions (an atomic) or records the
//! failure, and the batch's last report wakes the one task awaiting the batch. The publisher's
//! producer ([`batch_producer`]) is made here, with the client's producer settings.
//!
//! # Why a batch always finishes
//! [`Batch::wait`] returns when every [`Pending`] handed out by [`Batch::track`] has been
//! dropped, whatever dropped it:
//! - a delivery report (delivered or failed) drops it after recording the outcome;
//! - a message librdkafka refused at enqueue comes back in the record, and the caller drops it
//!   marked [`Pending::unsent`] (not a failure: the caller reports that itself);
//! - a message purged when the producer is destroyed gets a report with a purge error, and one
//!   never reported at all (its opaque dropped without a report) counts as failed (cancelled),
//!   so a batch is never left waiting and never taken for delivered.
//!
//! Reports may come in any order and while the batch is still being enqueued: the count starts
//! at one (the enqueuer's own hold), released by `wait`, so it cannot reach zero early.

use super::client::{counts, producer_config, refused, Logs, REQUEST_TIMEOUT};
use crate::config::KafkaConfig;
use crate::error::Error;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ThreadedProducer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The outcome of one batch's messages, filled in by the polling thread.
pub struct Batch {
    /// Messages enqueued and not yet reported, plus one while the batch is being enqueued.
    remaining: AtomicUsize,
    /// Partitions each event was delivered to (a keyed event goes to one, a TRUNCATE to all).
    delivered: Vec<AtomicU32>,
    /// Failed reports: the event's index and librdkafka's error.
    failed: Mutex<Vec<(usize, KafkaError)>>,
    done: tokio::sync::Notify,
}

impl Batch {
    /// A batch of `events` events, none enqueued yet.
    pub fn new(events: usize) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicUsize::new(1),
            delivered: (0..events).map(|_| AtomicU32::new(0)).collect(),
            failed: Mutex::new(Vec::new()),
            done: tokio::sync::Notify::new(),
        })
    }

    /// The opaque of one message of event `index`, to enqueue with it.
    pub fn track(self: &Arc<Self>, index: usize) -> Box<Pending> {
        self.remaining.fetch_add(1, Ordering::Relaxed);
        Box::new(Pending {
            batch: self.clone(),
            index,
            reported: false,
        })
    }

    /// Releases the enqueuer's hold and waits until every tracked message is reported. Called
    /// once, after the last [`Batch::track`].
    pub async fn wait(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            // `notify_one` keeps a permit when it runs before this wait registers.
            self.done.notified().await;
        }
    }

    /// The partitions event `index` was delivered to (complete after [`Batch::wait`]).
    pub fn delivered(&self, index: usize) -> u32 {
        self.delivered[index].load(Ordering::Acquire)
    }

    /// The failed reports, in the order they came (complete after [`Batch::wait`]).
    pub fn take_failed(&self) -> Vec<(usize, KafkaError)> {
        std::mem::take(&mut *self.failed.lock().expect("failed lock"))
    }

    fn fail(&self, index: usize, error: KafkaError) {
        self.failed
            .lock()
            .expect("failed lock")
            .push((index, error));
    }
}

/// One enqueued message's place in its batch (librdkafka's delivery opaque).
pub struct Pending {
    batch: Arc<Batch>,
    index: usize,
    reported: bool,
}

impl Pending {
    /// Drops a message librdkafka refused at enqueue: no report will come, and the caller
    /// handles the refusal.
    pub fn unsent(mut self) {
        self.reported = true;
    }

    /// Records the report of this message (the polling thread's part of a delivery).
    fn report(mut self, outcome: Result<(), KafkaError>) {
        match outcome {
            Ok(()) => {
                self.batch.delivered[self.index].fetch_add(1, Ordering::Release);
            }
            Err(e) => self.batch.fail(self.index, e),
        }
        self.reported = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.reported {
            self.batch.fail(self.index, KafkaError::Canceled);
        }
        if self.batch.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.batch.done.notify_one();
        }
    }
}

/// The clients' context is the publisher's producer context too: its log lines and client
/// errors as every client has them, and delivery reports into their [`Batch`].
impl rdkafka::producer::ProducerContext for Logs {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        (*pending).report(match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        });
    }
}

/// The publisher's producer: the client's producer settings, reports into their [`Batch`].
pub type BatchProducer = ThreadedProducer<Logs>;

pub fn batch_producer(cfg: &KafkaConfig) -> Result<Arc<BatchProducer>, Error> {
    producer_config(cfg)
        .create_with_context(Logs::default())
        .map(Arc::new)
        .map_err(refused)
}

/// Partition counts of `topics` through the producer's own connection (no client of its own
/// to set up).
pub async fn partitions(
    producer: &Arc<BatchProducer>,
    topics: &[String],
) -> Result<HashMap<String, i32>, Error> {
    let producer = producer.clone();
    counts(
        move || {
            rdkafka::producer::Producer::client(&*producer).fetch_metadata(None, REQUEST_TIMEOUT)
        },
        topics,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_finishes_when_its_last_message_is_dropped_in_any_way() {
        let batch = Batch::new(3);
        let a = batch.track(0);
        let b = batch.track(1);
        let c = batch.track(2);
        let d = batch.track(2);
        // Reported before the wait: delivered, refused at enqueue, never reported.
        (*a).report(Ok(()));
        (*b).unsent();
        drop(c);
        let waiting = tokio::spawn({
            let batch = batch.clone();
            async move { batch.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one message is still in flight");
        (*d).report(Ok(()));
        waiting.await.unwrap();
        assert_eq!(
            [batch.delivered(0), batch.delivered(1), batch.delivered(2)],
            [1, 0, 1]
        );
        let failed = batch.take_failed();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, 2);
        assert!(matches!(failed[0].1, KafkaError::Canceled));
    }

    #[tokio::test]
    async fn an_empty_batch_does_not_wait() {
        Batch::new(0).wait().await;
    }
}
