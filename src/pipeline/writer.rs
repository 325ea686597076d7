//! The writer: the one task that makes batches durable, in order, then moves progress forward.
//!
//! ```text
//!   Batch ─▶ resolve TOAST merges (`toast`) ─▶ embed text (`embedding`) ─▶ sink.write (retry transient, capped backoff) ─▶ durable
//!                                                          │
//!                     ack LSN ─▶ watch (slot feedback) + checkpoint file (throttled, fsynced)
//! ```
//!
//! With `[kafka]` a batch's change events are published alongside (see `kafka::publish`): the
//! batch is durable once Kafka confirmed every event *and* Qdrant has its ops (with
//! `qdrant.direct = false`, Kafka alone).
//!
//! Progress only moves on a durable write and never backwards. While Qdrant is unreachable the
//! writer retries forever and acknowledges nothing; the replication stream backs up behind the
//! bounded channel. After shutdown is requested, retries stop after a grace period and the
//! unwritten batch is abandoned: nothing was acknowledged for it, so a restart replays it.
//!
//! # The ordering rules (held by the unit tests in `writer/tests.rs`, on an in-memory sink)
//! - Up to `qdrant.parallel` batches are written at once, and no two of them touch the same
//!   point: a batch that shares a point with one in flight (or any batch, for a truncate or a
//!   TOAST merge) waits until those landed. So each point's changes land in commit order.
//! - Progress is told batch by batch in the order the batches came ([`Progress::durable`]),
//!   each only after it and every batch before it landed, whatever order the writes finish in.
//! - A batch that fails for good ends the writer: nothing from it on is acknowledged, and what
//!   was durable before it is still flushed to the checkpoint.

use super::assemble::Batch;
use super::embedding::{Pass, Reuse};
use super::toast::SourceReads;
use crate::checkpoint::CheckpointStore;
use crate::config::SourceConfig;
use crate::deadletter::DeadLetter;
use crate::error::{retry_transient, Disposition, Error};
use crate::event::{Op, PointKey};
use crate::lsn::Lsn;
use crate::mapping::Mappings;
use crate::metrics::names;
use crate::sink::Sink;
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often the checkpoint file is rewritten at most (the slot is fed continuously).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// How long a write is still retried after shutdown was requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct Writer<S: Sink> {
    pub sink: Arc<S>,
    /// Batches handed to the writer and not yet durable (the sender increments it).
    pub pending: Pending,
    pub mappings: Arc<Mappings>,
    pub source: SourceConfig,
    pub dead_letter: Arc<Mutex<DeadLetter>>,
    /// Vectors computed from text (see `embedding`).
    pub embedders: Arc<super::embedding::Embedders>,
    pub max_backoff: Duration,
    pub shutdown: CancellationToken,
    /// Publish mode: the producer of the batches' events.
    pub publisher: Option<Arc<crate::kafka::publish::Publisher>>,
    /// Whether ops are written to Qdrant (`qdrant.direct`).
    pub direct: bool,
    /// Where the sinks' state goes for `/readyz` (`qdrant`, `kafka`: down while a write fails
    /// transiently, up once one succeeds).
    pub health: Arc<crate::metrics::health::Health>,
    /// Batches written at once at most (`qdrant.parallel`, at least 1). Concurrent batches never
    /// share a point, and acks are taken strictly in batch order, so durability still moves
    /// forward in commit order.
    pub parallel: usize,
}

/// The rows (their [`Op::row_key`]) a batch touches; `None` when it must run alone (a truncate,
/// or a TOAST merge that may read the source).
fn keys_of(ops: &[Op]) -> Option<HashSet<(Arc<str>, PointKey)>> {
    let mut keys = HashSet::with_capacity(ops.len());
    for op in ops {
        match (op, op.row_key()) {
            (Op::Merge { .. }, _) | (_, None) => return None,
            (_, Some(key)) => keys.insert((op.collection().clone(), key.clone())),
        };
    }
    Some(keys)
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

impl<S: Sink> Writer<S> {
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Batch>,
        mut progress: impl Progress,
    ) -> Result<(), Error> {
        let parallel = self.parallel.max(1);
        let reads = SourceReads::new(self.source.clone());
        // Batches being written, in order, with the point keys each touches (None: exclusive).
        let mut inflight = FuturesOrdered::new();
        let mut touched: VecDeque<Option<HashSet<(Arc<str>, PointKey)>>> = VecDeque::new();
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
                    let keys = keys_of(&batch.ops);
                    let conflicts = match &keys {
                        None => !inflight.is_empty(),
                        Some(k) => touched.iter().any(|t| t.as_ref().is_none_or(|t| !t.is_disjoint(k))),
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
                    inflight.push_back(self.apply(&reads, batch));
                }
            }
        };
        // Persist what became durable even when the loop ended on an error: a restart then
        // replays less (the slot was already told; the checkpoint must not lag behind it).
        let flushed = progress.flush();
        result.and(flushed)
    }

    /// Makes one batch durable (its events delivered, its ops written); returns its ack.
    pub async fn apply(&self, reads: &SourceReads, batch: Batch) -> Result<Option<Lsn>, Error> {
        if batch.ops.is_empty() && batch.events.is_empty() {
            return Ok(batch.ack);
        }
        let ops = if self.direct {
            batch.ops
        } else {
            super::embedding::count_waiting(&super::embedding::waiting(&batch.ops), -1.0);
            Vec::new()
        };
        tokio::try_join!(self.publish(&batch.events), self.write_ops(reads, ops))?;
        Ok(batch.ack)
    }

    /// Publishes events (publish mode), retrying transient failures; an event Kafka refuses
    /// for good is dead-lettered with its reason.
    async fn publish(&self, events: &[crate::kafka::Event]) -> Result<(), Error> {
        let Some(p) = &self.publisher else {
            return Ok(());
        };
        if events.is_empty() {
            return Ok(());
        }
        let delivered = crate::kafka::publish::Delivered::default();
        let refused = self
            .retry_for("kafka", || p.publish(events, &delivered))
            .await?;
        for (i, reason) in refused {
            let e = &events[i];
            self.dead_letter.lock().expect("dead-letter lock").write(
                &format!("topic:{}", e.topic),
                &serde_json::json!(e.key),
                Lsn(e.lsn),
                &reason,
                &serde_json::json!({ "table": &*e.table, "seq": e.seq, "bytes": e.payload.len() }),
            )?;
        }
        Ok(())
    }

    /// Makes ops durable in the sink: TOAST merges resolved, text embedded, written.
    async fn write_ops(&self, reads: &SourceReads, ops: Vec<Op>) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        // The merges below may become other ops: the gauge goes down by what went up.
        let waiting = super::embedding::waiting(&ops);
        let mut ops = if ops.iter().any(|o| matches!(o, Op::Merge { .. })) {
            let (resolved, unmappable) = self
                .retry_for("postgres", || {
                    reads.resolve(&*self.sink, &self.mappings, ops.clone())
                })
                .await?;
            // Parked once the step succeeded: a retried step would park them again.
            let mut dead = self.dead_letter.lock().expect("dead-letter lock");
            for (e, lsn) in &unmappable {
                dead.row(e, *lsn)?;
            }
            resolved
        } else {
            ops
        };
        if super::embedding::pending(&ops) {
            let pass = Pass::new(&self.embedders, Reuse::All);
            self.retry(|| pass.read(&*self.sink, &ops)).await?;
            self.retry_for("embedder", || pass.compute(&ops)).await?;
            for (op, reason) in pass.finish(&mut ops) {
                self.dead_letter_op(&op, &reason)?;
            }
        }
        super::embedding::count_waiting(&waiting, -1.0);
        let skipped = self.write(&ops).await?;
        tracing::debug!(ops = ops.len(), "ops durable");
        metrics::histogram!(names::BATCH_SIZE).record(ops.len() as f64);
        metrics::histogram!(names::WRITE_LATENCY).record(started.elapsed().as_secs_f64());
        // One counter update per (collection, op) of the batch, not one per op.
        let mut applied: Vec<(&Arc<str>, &'static str, u64)> = Vec::new();
        for op in &ops {
            match applied
                .iter_mut()
                .find(|(c, k, _)| *c == op.collection() && *k == op.kind())
            {
                Some(entry) => entry.2 += 1,
                None => applied.push((op.collection(), op.kind(), 1)),
            }
        }
        for (collection, n) in &skipped {
            metrics::counter!(names::CHANGES_SKIPPED, "collection" => collection.to_string())
                .increment(*n);
            if let Some(entry) = applied
                .iter_mut()
                .find(|(c, k, _)| *c == collection && *k == "upsert")
            {
                entry.2 = entry.2.saturating_sub(*n);
            }
        }
        for (collection, kind, n) in applied {
            metrics::counter!(names::CHANGES_APPLIED, "collection" => collection.to_string(), "op" => kind).increment(n);
        }
        Ok(())
    }

    /// Writes a batch; transient errors (outages included) are retried. A definite error that
    /// may be an op's own fault ([`Error::blames_input`]) falls back to op by op, and only an op
    /// that fails alone is parked; any other definite error (a missing collection) ends the
    /// writer without acknowledging the batch. Returns the upserts the fence skipped.
    ///
    /// When every op of a batch fails alone for one and the same reason, the sink refuses
    /// everything (strict mode, a collection that no longer matches the config), not these rows:
    /// that is an outage (nothing parked, `qdrant` down, the batch tried again with backoff).
    async fn write(&self, ops: &[Op]) -> Result<crate::sink::Skipped, Error> {
        let mut backoff = crate::error::Backoff::new(self.max_backoff);
        loop {
            let e = match self.retry(|| self.sink.write(ops)).await {
                Ok(skipped) => return Ok(skipped),
                Err(e) if e.blames_input() => e,
                Err(e) => return Err(e),
            };
            tracing::warn!(error = %e, ops = ops.len(), "batch refused; writing op by op to isolate the bad one");
            let mut skipped = crate::sink::Skipped::new();
            let mut refused = Vec::new();
            for op in ops {
                match self
                    .retry(|| self.sink.write(std::slice::from_ref(op)))
                    .await
                {
                    Ok(s) => skipped.extend(s),
                    Err(e) if e.blames_input() => refused.push((op, e.to_string())),
                    Err(e) => return Err(e),
                }
            }
            let all_alike = refused.len() == ops.len()
                && ops.len() > 1
                && refused.iter().all(|(_, r)| *r == refused[0].1);
            if !all_alike {
                for (op, reason) in &refused {
                    self.dead_letter_op(op, reason)?;
                }
                return Ok(skipped);
            }
            let delay = backoff.next_delay();
            tracing::error!(reason = %refused[0].1, ops = ops.len(), retry_in_ms = delay.as_millis() as u64, "the sink refuses every op of the batch for the same reason: an outage, not bad rows; nothing is parked");
            metrics::counter!(names::WRITE_RETRIES, "sink" => "qdrant").increment(1);
            self.health
                .down("qdrant", format!("every op refused: {}", refused[0].1));
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(Error::Shutdown),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn dead_letter_op(&self, op: &Op, reason: &str) -> Result<(), Error> {
        let (key, row) = match op {
            Op::Upsert { doc, .. } | Op::Merge { doc, .. } => (
                serde_json::json!(doc.key.to_string()),
                serde_json::Value::Object(doc.payload.clone()),
            ),
            Op::Delete { key, .. } => (serde_json::json!(key.to_string()), serde_json::Value::Null),
            Op::DeleteChunks { key, .. } => (key.clone(), serde_json::Value::Null),
            Op::Truncate { table, .. } => (
                serde_json::json!(table.to_string()),
                serde_json::Value::Null,
            ),
        };
        let table = format!("collection:{}", op.collection());
        let lsn = Lsn(op.position().commit_lsn);
        self.dead_letter
            .lock()
            .expect("dead-letter lock")
            .write(&table, &key, lsn, reason, &row)
    }

    /// The shared transient retry, counting failed attempts; after shutdown it gives up after
    /// [`SHUTDOWN_GRACE`] (the batch was not acknowledged and will be replayed).
    async fn retry<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        self.retry_for("qdrant", f).await
    }

    /// [`Self::retry`], counting retries for `sink`.
    async fn retry_for<T, F, Fut>(&self, sink: &'static str, mut f: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let counted = || {
            let attempt = f();
            async move {
                let r = attempt.await;
                match &r {
                    Ok(_) => self.health.up(sink),
                    Err(e) if e.disposition() == Disposition::Transient => {
                        metrics::counter!(names::WRITE_RETRIES, "sink" => sink).increment(1);
                        self.health.down(sink, e.to_string());
                    }
                    Err(_) => {}
                }
                r
            }
        };
        let r = retry_transient(
            "write",
            self.max_backoff,
            &self.shutdown,
            SHUTDOWN_GRACE,
            counted,
        )
        .await;
        if matches!(r, Err(Error::Shutdown)) {
            tracing::warn!("shutting down with an unwritten batch; it was not acknowledged and will be replayed");
        }
        r
    }
}

#[cfg(test)]
mod tests;
