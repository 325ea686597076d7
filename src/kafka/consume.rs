//! The consumer loop of an applier, the Kafka side: messages of a group consumer taken into
//! batches of up to `qdrant.batch_size` (messages or ops), or what came within `qdrant.linger_ms`
//! of the first, each with the offsets it commits once durable.
//!
//! What a message becomes is the caller's ([`Take`]: `apply` decodes and maps it, runs a copy's
//! sweep, dead-letters what cannot be applied). What this loop owns is Kafka's:
//! - **A batch never straddles a revocation.** Under the eager protocol every partition starts
//!   again from its committed offset, here or at its next owner, after a rebalance. A batch
//!   taken before one is dropped (its messages come again); written, it could land after the
//!   next owner's later changes of the same rows. `kafka::client::GroupLog` counts revocations;
//!   a batch remembers the count when its first message was taken.
//! - **An outage is not an end.** A consumer error that is transient (broker down) is retried
//!   with backoff, `kafka` down on `/readyz` until a message comes; a definite one ends the run.

use super::client::{GroupConsumer, GroupLog};
use crate::error::{Backoff, Disposition, Error};
use crate::metrics::health::Health;
use futures_util::StreamExt as _;
use rdkafka::consumer::{Consumer as _, MessageStream};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What an applier does with each message it takes into a batch.
pub trait Take {
    /// What a batch of messages became (ops, for an applier).
    type Batch: Default + Send;
    /// Takes `m` into `batch` (its offset is recorded by the loop). An error ends the run.
    fn take(
        &self,
        batch: &mut Self::Batch,
        offsets: &mut Offsets,
        m: &BorrowedMessage<'_>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// How many ops `batch` holds (a batch is full at `batch_size` messages or ops).
    fn size(batch: &Self::Batch) -> usize;
}

/// A batch's offsets: per (topic, partition) the next offset to commit, and events per topic.
/// Few partitions per batch: looked up in a list.
#[derive(Default)]
pub struct Offsets {
    pub next: Vec<(String, i32, i64)>,
    /// The group's revocations when the batch's first message was taken: after another one,
    /// its offsets may be behind what a partition's interim owner committed, and are not
    /// committed (the messages come again, fenced).
    pub revocations: u64,
    pub events: Vec<(String, u64)>,
    /// The oldest commit time of the batch's events (Unix µs), for the apply lag.
    pub oldest: Option<i64>,
}

impl Offsets {
    /// Message `offset` of (`topic`, `partition`) was taken: the next to commit is after it.
    pub fn taken(&mut self, topic: &str, partition: i32, offset: i64) {
        match self
            .next
            .iter_mut()
            .find(|(t, p, _)| *p == partition && t == topic)
        {
            Some(e) => e.2 = offset + 1,
            None => self.next.push((topic.to_owned(), partition, offset + 1)),
        }
    }

    /// A change event of `topic` committed at `commit_time_unix_micros` was taken.
    pub fn event(&mut self, topic: &str, commit_time_unix_micros: i64) {
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

/// Messages taken into one batch.
pub struct Taken<B> {
    pub batch: B,
    /// What is committed once the batch is durable.
    pub offsets: Offsets,
    pub messages: usize,
}

impl<B: Default> Taken<B> {
    fn new(revocations: u64) -> Self {
        Self {
            batch: B::default(),
            offsets: Offsets {
                revocations,
                ..Offsets::default()
            },
            messages: 0,
        }
    }
}

/// How batches are cut and outages waited out.
pub struct Batching {
    pub batch_size: usize,
    pub linger: Duration,
    pub max_backoff: Duration,
    /// Ends the loop (shutdown, or the writer gone).
    pub stop: CancellationToken,
    pub health: Arc<Health>,
}

/// A group consumer's messages, taken into batches by a [`Take`].
pub struct Batches<'c, T> {
    consumer: &'c GroupConsumer,
    /// One stream for the whole run: `recv` would register and drop a waker per message.
    messages: MessageStream<'c, GroupLog>,
    taker: &'c T,
    how: Batching,
}

impl<'c, T: Take> Batches<'c, T> {
    pub fn new(consumer: &'c GroupConsumer, taker: &'c T, how: Batching) -> Self {
        Self {
            consumer,
            messages: consumer.stream(),
            taker,
            how,
        }
    }

    /// The next batch: waits for a first message, then takes more until the batch is full or
    /// `linger` passed. `None` once stopped. A batch taken across a revocation is dropped and
    /// the next one begun.
    pub async fn next(&mut self) -> Result<Option<Taken<T::Batch>>, Error> {
        let mut backoff = Backoff::new(self.how.max_backoff);
        loop {
            let first = tokio::select! {
                _ = self.how.stop.cancelled() => return Ok(None),
                m = self.messages.next() => m.expect("kafka streams never terminate"),
            };
            let m = match first {
                Ok(m) => m,
                Err(e) => {
                    let e = Error::kafka("receiving")(e);
                    if e.disposition() == Disposition::Definite {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "consumer error; retrying");
                    self.how.health.down("kafka", e.to_string());
                    tokio::select! {
                        _ = self.how.stop.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                    continue;
                }
            };
            let mut taken = Taken::new(self.revocations());
            take(self.taker, &mut taken, &m).await?;
            drop(m);
            backoff.reset();
            self.how.health.up("kafka");
            if self.fill(&mut taken).await? {
                return Ok(Some(taken));
            }
        }
    }

    fn revocations(&self) -> u64 {
        self.consumer.context().revocations()
    }

    /// Takes more messages into `taken` (up to `batch_size`, within `linger` of the first).
    /// `false` when the batch was taken before a revocation and is dropped.
    async fn fill(&mut self, taken: &mut Taken<T::Batch>) -> Result<bool, Error> {
        let deadline = tokio::time::Instant::now() + self.how.linger;
        let size = self.how.batch_size;
        while taken.messages < size && T::size(&taken.batch) < size {
            match tokio::time::timeout_at(deadline, self.messages.next()).await {
                Ok(Some(Ok(m))) => {
                    let revocations = self.consumer.context().revocations();
                    if revocations != taken.offsets.revocations {
                        dropped(taken);
                        *taken = Taken::new(revocations);
                    }
                    take(self.taker, taken, &m).await?
                }
                Ok(None) => unreachable!("kafka streams never terminate"),
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        // A revocation served while waiting for more (the stream answers it with no message):
        // the batch was taken under the old assignment.
        if self.revocations() != taken.offsets.revocations {
            dropped(taken);
            return Ok(false);
        }
        Ok(true)
    }
}

/// One message into `taken`: its offset recorded, then the taker's part.
async fn take<T: Take>(
    taker: &T,
    taken: &mut Taken<T::Batch>,
    m: &BorrowedMessage<'_>,
) -> Result<(), Error> {
    taken.messages += 1;
    taken.offsets.taken(m.topic(), m.partition(), m.offset());
    taker.take(&mut taken.batch, &mut taken.offsets, m).await
}

/// Logs a batch dropped because it was taken before a revocation: under the eager protocol
/// every partition starts again from its committed offset, here or at its next owner, so its
/// messages come again; written now, they could land after the next owner's later changes.
fn dropped<B>(taken: &Taken<B>) {
    if taken.messages > 0 {
        tracing::info!(
            messages = taken.messages,
            "a batch taken before a rebalance dropped: its messages come again from the committed offsets"
        );
    }
}
