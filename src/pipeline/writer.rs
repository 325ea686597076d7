//! The writer: the one task that makes batches durable, in order, then moves progress forward.
//!
//! ```text
//!   Batch ─▶ rows it touches (`rows`) ─▶ destination.land (up to qdrant.parallel at once)
//!                                                              │ durable
//!                     Progress::durable, batch by batch in the order they came ◀┘
//!                     (slot feedback + checkpoint file, or the group's offsets)
//! ```
//!
//! The writer keeps order and acknowledges, nothing else: how a batch becomes durable (TOAST
//! merges, embedding, the fenced write, Kafka events, retries, parking a bad row) is the
//! [`Destination`]'s (`destination`, `to_qdrant`, `to_kafka`, `fanout`).
//!
//! Progress only moves on a durable batch and never backwards. While a destination is down it
//! retries and the writer acknowledges nothing; the replication stream backs up behind the
//! bounded channel. A batch that fails for good (or is abandoned after shutdown) ends the writer
//! unacknowledged, so a restart replays it.
//!
//! # The ordering rules (held by the unit tests in `writer/tests.rs`, on an in-memory destination)
//! - Up to `qdrant.parallel` batches are written at once, and no two of them touch the same
//!   row: a batch that shares a row with one in flight (or any batch, for a truncate or a
//!   TOAST merge) waits until those landed. So each point's changes land in commit order.
//! - Progress is told batch by batch in the order the batches came ([`Progress::durable`]),
//!   each only after it and every batch before it landed, whatever order the writes finish in.
//! - A batch that fails for good ends the writer: nothing from it on is acknowledged, and what
//!   was durable before it is still flushed to the checkpoint.

use super::assemble::Batch;
use super::destination::Destination;
use crate::checkpoint::CheckpointStore;
use crate::error::Error;
use crate::lsn::Lsn;
use crate::metrics::names;
use futures_util::stream::{FuturesOrdered, StreamExt};
use rows::Rows;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often the checkpoint file is rewritten at most (the slot is fed continuously).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

pub struct Writer<D: Destination> {
    /// Where batches become durable.
    pub destination: Arc<D>,
    /// Batches handed to the writer and not yet durable (the sender increments it).
    pub pending: Pending,
    /// Batches written at once at most (`qdrant.parallel`, at least 1). Concurrent batches never
    /// share a row, and acks are taken strictly in batch order, so durability still moves
    /// forward in commit order.
    pub parallel: usize,
}

/// Batches sent to the writer and not yet durable: zero means the writer is idle, so the
/// replication loop sends what it has at once instead of waiting for a batch to fill.
#[derive(Debug, Clone, Default)]
pub struct Pending(Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>);

impl Pending {
    pub fn sent(&self) {
        self.0 .0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    /// A batch is durable; called before its progress is published, so whoever that wakes
    /// already sees the writer idle.
    fn done(&self) {
        if self.0 .0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.0 .1.notify_one();
        }
    }
    pub fn idle(&self) -> bool {
        self.0 .0.load(std::sync::atomic::Ordering::SeqCst) == 0
    }
    /// Resolves when the writer became idle (one waiter).
    pub async fn became_idle(&self) {
        self.0 .1.notified().await
    }
}

/// What the writer tells as batches become durable: [`Progress::durable`] is called once per
/// batch it was handed, in the order it was handed them, only after that batch and every
/// batch before it are durable (so an implementation may pop its own per-batch records in
/// order). [`Progress::flush`] once when the writer ends.
pub trait Progress: Send {
    /// The next batch is durable; `ack` is its [`Batch::ack`].
    fn durable(&mut self, ack: Option<Lsn>) -> Result<(), Error>;
    /// The writer is ending: persist what was not persisted yet.
    fn flush(&mut self) -> Result<(), Error>;
}

/// Where durable progress goes: the slot feedback (through a watch) and the checkpoint file.
pub struct DurableProgress {
    pub checkpoint: Box<dyn CheckpointStore>,
    pub durable: watch::Sender<Lsn>,
    last_store: Instant,
    pending: Option<Lsn>,
    lag: Option<Arc<super::lag::LagClock>>,
}

impl DurableProgress {
    pub fn new(checkpoint: Box<dyn CheckpointStore>, durable: watch::Sender<Lsn>) -> Self {
        Self {
            checkpoint,
            durable,
            last_store: Instant::now() - CHECKPOINT_EVERY,
            pending: None,
            lag: None,
        }
    }

    /// Durable progress also ends the end-to-end lag of the commits it covers.
    pub fn with_lag(mut self, lag: Arc<super::lag::LagClock>) -> Self {
        self.lag = Some(lag);
        self
    }
}

impl Progress for DurableProgress {
    /// Everything up to `ack` is durable (called in batch order).
    fn durable(&mut self, ack: Option<Lsn>) -> Result<(), Error> {
        let Some(lsn) = ack else { return Ok(()) };
        self.durable.send_if_modified(|d| {
            let moved = lsn > *d;
            if moved {
                *d = lsn;
            }
            moved
        });
        metrics::gauge!(names::LAST_ACKED_LSN).set(lsn.as_u64() as f64);
        if let Some(lag) = &self.lag {
            lag.durable(lsn);
        }
        self.pending = Some(lsn);
        if self.last_store.elapsed() >= CHECKPOINT_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if let Some(lsn) = self.pending.take() {
            self.checkpoint.store(lsn)?;
            self.last_store = Instant::now();
        }
        Ok(())
    }
}

impl<D: Destination> Writer<D> {
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Batch>,
        mut progress: impl Progress,
    ) -> Result<(), Error> {
        let parallel = self.parallel.max(1);
        // Batches being written, in order, with the point keys each touches (None: exclusive).
        let mut inflight = FuturesOrdered::new();
        let mut touched: VecDeque<Option<Rows>> = VecDeque::new();
        let mut closed = false;
        let result = loop {
            if closed && inflight.is_empty() {
                break Ok(());
            }
            tokio::select! {
                biased;
                Some(done) = inflight.next(), if !inflight.is_empty() => {
                    touched.pop_front();
                    match done {
                        Ok(ack) => {
                            self.pending.done();
                            if let Err(e) = progress.durable(ack) {
                                break Err(e);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                }
                batch = rx.recv(), if !closed && inflight.len() < parallel => {
                    let Some(batch) = batch else { closed = true; continue };
                    let keys = Rows::of(&batch.ops);
                    let conflicts = match &keys {
                        None => !inflight.is_empty(),
                        Some(k) => touched.iter().any(|t| t.as_ref().is_none_or(|t| t.overlaps(k))),
                    };
                    if conflicts {
                        // Same points (or a truncate/merge) in flight: let them land first, so
                        // each point's changes apply in commit order. A failure ends the loop
                        // like one above: what was durable before it is still flushed.
                        let mut drained = Ok(());
                        while let Some(done) = inflight.next().await {
                            touched.pop_front();
                            drained = done.and_then(|ack| {
                                self.pending.done();
                                progress.durable(ack)
                            });
                            if drained.is_err() {
                                break;
                            }
                        }
                        if let Err(e) = drained {
                            break Err(e);
                        }
                    }
                    touched.push_back(keys);
                    inflight.push_back(self.land(batch));
                }
            }
        };
        // Persist what became durable even when the loop ended on an error: a restart then
        // replays less (the slot was already told; the checkpoint must not lag behind it).
        let flushed = progress.flush();
        result.and(flushed)
    }

    /// Makes one batch durable; returns its ack.
    async fn land(&self, batch: Batch) -> Result<Option<Lsn>, Error> {
        let ack = batch.ack;
        if !batch.ops.is_empty() || !batch.events.is_empty() {
            self.destination.land(batch).await?;
        }
        Ok(ack)
    }
}

mod rows;
#[cfg(test)]
mod tests;
