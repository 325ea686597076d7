//! The replication loop: reads the slot, feeds the assembler, hands batches to the writer,
//! reports durable progress to the slot and to the copy coordinator, and reconnects with
//! backoff when the stream breaks. Control messages (watermarks, resync requests) arrive here
//! in commit order with the data. Events already waiting in the stream's channel are taken in
//! runs, without the loop's `select!` around each one ([`DRAIN`] says why that changes nothing
//! in what is sent or acknowledged).

use super::assemble::{Assembler, Batch};
use super::writer::Pending;
use crate::config::{Format, SnapshotMode, SourceConfig};
use crate::deadletter::DeadLetter;
use crate::error::{Backoff, Disposition, Error};
use crate::lsn::Lsn;
use crate::metrics::names;
use crate::snapshot::Coordinator;
use crate::source::control::{Control, PREFIX};
use crate::source::stream;
use futures_util::FutureExt;
use pgwire_replication::{ReplicationClient, ReplicationEvent};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Events taken from the stream's channel in one go once one has arrived (see `stream`),
/// without the select around them. Two rules keep this the same as taking them one by one:
/// - **Only items known to be there are polled for.** The worker counts an item after it is in
///   the channel (`events_forwarded`), so while it has counted more than were taken, one is
///   waiting and `recv` returns it at once. `recv` is never polled in a way that could find the
///   channel closed: that poll would start waiting for the worker's end, and dropping it there
///   would lose the worker's own error.
/// - **The drain stops as soon as a batch is complete**, so the batches taken are sent before
///   another event is read: an event that stops the stream (an error, the end) finds nothing
///   taken from the assembler and not sent.
const DRAIN: usize = 256;

pub struct Replicator {
    pub source: SourceConfig,
    /// The stream carries binary values (chosen at set-up; `auto` falls back to text when a
    /// watched table gains a column binary cannot carry).
    pub binary: bool,
    pub assembler: Assembler,
    pub batches: mpsc::Sender<Batch>,
    /// Batches the writer has not made durable yet.
    pub pending: Pending,
    pub writer: JoinHandle<Result<(), Error>>,
    pub durable: watch::Receiver<Lsn>,
    pub coordinator: Arc<Coordinator>,
    pub dead_letter: Arc<Mutex<DeadLetter>>,
    pub max_backoff: Duration,
    pub shutdown: CancellationToken,
    /// Commits read, for the end-to-end lag (`pipeline::lag`).
    pub lag: Arc<super::lag::LagClock>,
    /// `stream`: up while the slot's stream is open (`/readyz`).
    pub health: Arc<crate::metrics::health::Health>,
}

/// How the loop ended.
pub struct Ended {
    pub outcome: Result<(), Error>,
    /// The writer task already returned (its result is in `outcome`).
    pub writer_done: bool,
    pub client: Option<ReplicationClient>,
}

/// Why the inner loop stopped.
enum Stop {
    /// Reconnect after a backoff.
    Reconnect,
    /// Leave the loop with this outcome.
    Exit(Result<(), Error>, bool),
}

impl Replicator {
    /// `initial_only` and nothing (left) to copy.
    fn finished(&self) -> bool {
        self.coordinator.mode() == SnapshotMode::InitialOnly && self.coordinator.idle()
    }

    pub async fn run(&mut self) -> Ended {
        let mut backoff = Backoff::new(self.max_backoff);
        let mut client: Option<ReplicationClient> = None;
        let (outcome, writer_done) = loop {
            if self.shutdown.is_cancelled() || self.finished() {
                break (Ok(()), false);
            }
            let from = *self.durable.borrow();
            self.assembler.set_binary(self.binary);
            let c = match stream::connect(&self.source, from, self.binary).await {
                Ok(c) => c,
                Err(e) if e.disposition() == Disposition::Transient => {
                    self.health.down("stream", e.to_string());
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, hint = e.hint().unwrap_or(""), retry_in_ms = delay.as_millis() as u64, "replication connect failed; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break (Ok(()), false),
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
                Err(e) => {
                    self.health.down("stream", e.to_string());
                    break (Err(e), false);
                }
            };
            metrics::counter!(names::REPLICATION_CONNECTS).increment(1);
            self.health.up("stream");
            tracing::info!(from = %from, format = if self.binary { "binary" } else { "text" }, "replication stream open");
            let c = client.insert(c);
            c.update_applied_lsn(from);
            match self.stream(c, &mut backoff).await {
                Stop::Exit(outcome, writer_done) => break (outcome, writer_done),
                Stop::Reconnect => {}
            }
            self.health.down("stream", "reconnecting");
            self.assembler.reset_stream();
            if let Some(mut c) = client.take() {
                c.abort();
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break (Ok(()), false),
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        };
        Ended {
            outcome,
            writer_done,
            client,
        }
    }

    /// Shutdown in order, after [`Replicator::run`]: hand over what is buffered (when the loop
    /// ended cleanly), let the writer finish (its retries get the grace from here: its sink may
    /// be down), and report the final durable position to the slot. Returns the loop's outcome,
    /// else the writer's.
    pub async fn finish(
        mut self,
        ended: Ended,
        writer_stop: CancellationToken,
    ) -> Result<(), Error> {
        writer_stop.cancel();
        if ended.outcome.is_ok() {
            if let Some(b) = self.assembler.take() {
                super::embedding::count_waiting(&super::embedding::waiting(&b.ops), 1.0);
                // No room within the grace: the writer is stuck; the batch is replayed next start.
                if tokio::time::timeout(super::retrying::SHUTDOWN_GRACE, self.batches.send(b))
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "the writer took no last batch within the grace; the next start replays it"
                    );
                }
            }
        }
        drop(self.batches);
        let writer = if ended.writer_done {
            Ok(())
        } else {
            writer_ended(self.writer.await)
        };
        let durable = *self.durable.borrow();
        if let Some(mut c) = ended.client {
            // The transport reports progress on its status interval and not when stopping: once
            // the stream is closed, the final position is given to the slot from a plain
            // connection, so the slot does not lag the checkpoint (and a stop does not wait for
            // the next status).
            c.update_applied_lsn(durable);
            let reported = c.metrics();
            match tokio::time::timeout(Duration::from_secs(5), c.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "closing the replication stream failed"),
                Err(_) => tracing::warn!("closing the replication stream timed out"),
            }
            if reported.last_applied_lsn() < durable {
                match advance_slot(&self.source, durable).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(durable = %durable, "the slot was still held by the stream; the next start resumes from the checkpoint")
                    }
                    Err(e) => {
                        tracing::warn!(durable = %durable, error = %e, "the final position did not reach the slot; the next start resumes from the checkpoint")
                    }
                }
            }
        }
        tracing::info!(durable = %durable, "stopped");
        ended.outcome.and(crate::error::ok_if_stopped(writer))
    }

    async fn send(&mut self, batch: Batch) -> Option<Stop> {
        self.pending.sent();
        super::embedding::count_waiting(&super::embedding::waiting(&batch.ops), 1.0);
        // The writer may be stuck behind a sink that is down: a stop must not wait for room.
        tokio::select! {
            sent = self.batches.send(batch) => if sent.is_err() {
                return Some(Stop::Exit(writer_ended((&mut self.writer).await), true));
            },
            _ = self.shutdown.cancelled() => {
                // Not handed over, so not acknowledged: the next start replays it.
                return Some(Stop::Exit(Ok(()), false));
            }
        }
        None
    }

    async fn stream(&mut self, c: &mut ReplicationClient, backoff: &mut Backoff) -> Stop {
        let mut dead = Vec::new();
        // Items the worker has put in the channel, and items taken from it (see [`DRAIN`]).
        let forwarded = c.metrics();
        let mut taken = 0u64;
        loop {
            let deadline = self.assembler.deadline();
            let linger = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let mut batches = Vec::new();
            tokio::select! {
                _ = self.shutdown.cancelled() => return Stop::Exit(Ok(()), false),
                res = &mut self.writer => return Stop::Exit(writer_ended(res), true),
                Ok(()) = self.durable.changed() => {
                    let d = *self.durable.borrow_and_update();
                    c.update_applied_lsn(d);
                    if let Err(e) = self.coordinator.durable(d) {
                        return Stop::Exit(Err(e), false);
                    }
                    if self.finished() {
                        tracing::info!("snapshot = initial_only: every table is copied; stopping");
                        return Stop::Exit(Ok(()), false);
                    }
                }
                _ = self.coordinator.settled() => {
                    if self.finished() {
                        tracing::info!("snapshot = initial_only: every table is copied; stopping");
                        return Stop::Exit(Ok(()), false);
                    }
                }
                _ = linger => batches.extend(self.assembler.take()),
                // The writer finished while something waits: the check below sends it.
                _ = self.pending.became_idle(), if self.assembler.ready() => {}
                ev = c.recv() => {
                    taken += 1;
                    if let Some(stop) = self.received(ev, backoff, &mut batches, &mut dead) {
                        return stop;
                    }
                    // Events already waiting are taken without going round this select (whose
                    // futures cost more than an event): see [`DRAIN`].
                    for _ in 0..DRAIN {
                        if !batches.is_empty() || forwarded.events_forwarded() <= taken {
                            break;
                        }
                        let Some(ev) = c.recv().now_or_never() else { break };
                        taken += 1;
                        if let Some(stop) = self.received(ev, backoff, &mut batches, &mut dead) {
                            return stop;
                        }
                    }
                }
            }
            // No write in flight: send what is there now (light load pays one write, not the
            // linger); while one is in flight, the next batch fills up to size or linger.
            if batches.is_empty() && self.pending.idle() && self.assembler.ready() {
                batches.extend(self.assembler.take());
            }
            for b in batches {
                if let Some(stop) = self.send(b).await {
                    return stop;
                }
            }
        }
    }

    /// What the stream's `recv` gave: the end of the stream, a break, or one event (into
    /// [`Self::event`]); `Some` when the loop must stop.
    fn received(
        &mut self,
        ev: pgwire_replication::Result<Option<ReplicationEvent>>,
        backoff: &mut Backoff,
        batches: &mut Vec<Batch>,
        dead: &mut Vec<(crate::mapping::MappingError, Lsn)>,
    ) -> Option<Stop> {
        match ev {
            Ok(Some(ev)) => {
                backoff.reset();
                self.event(ev, batches, dead)
            }
            Ok(None) => {
                tracing::warn!("replication stream ended; reconnecting");
                Some(Stop::Reconnect)
            }
            Err(e) => {
                let e = Error::replication("stream")(e);
                if e.disposition() == Disposition::Definite {
                    return Some(Stop::Exit(Err(e), false));
                }
                tracing::warn!(error = %e, hint = e.hint().unwrap_or(""), "replication stream broke; reconnecting");
                Some(Stop::Reconnect)
            }
        }
    }

    /// One event of the stream into the assembler: batches it completes join `batches`, rows
    /// that cannot be mapped are parked; `Some` when the loop must stop.
    fn event(
        &mut self,
        ev: ReplicationEvent,
        batches: &mut Vec<Batch>,
        dead: &mut Vec<(crate::mapping::MappingError, Lsn)>,
    ) -> Option<Stop> {
        match ev {
            ReplicationEvent::Begin {
                final_lsn,
                commit_time_micros,
                ..
            } => self.assembler.begin(final_lsn, commit_time_micros),
            ReplicationEvent::XLogData { data, .. } => match self.assembler.data(&data, dead) {
                Ok(b) => batches.extend(b),
                Err(e @ Error::TextNeeded { .. }) => return Some(self.text_needed(e)),
                Err(e) => return Some(Stop::Exit(Err(e), false)),
            },
            ReplicationEvent::Commit {
                end_lsn,
                commit_time_micros,
                ..
            } => {
                self.lag.committed(end_lsn, commit_time_micros);
                metrics::counter!(names::TRANSACTIONS).increment(1);
                self.assembler.commit(end_lsn)
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => self.assembler.keepalive(wal_end),
            ReplicationEvent::Message {
                prefix, content, ..
            } if prefix == PREFIX => match self.control(&content) {
                Ok(b) => batches.extend(b),
                Err(e) => return Some(Stop::Exit(Err(e), false)),
            },
            _ => {}
        }
        for (e, lsn) in dead.drain(..) {
            if let Err(err) = self
                .dead_letter
                .lock()
                .expect("dead-letter lock")
                .row(&e, lsn)
            {
                return Some(Stop::Exit(Err(err), false));
            }
        }
        None
    }

    /// A watched table gained a column binary values cannot carry: under `auto`, reconnect in
    /// text from the durable position (nothing after it was acknowledged); under `binary`, stop.
    fn text_needed(&mut self, e: Error) -> Stop {
        if self.source.format == Format::Binary {
            return Stop::Exit(
                Err(Error::config(
                    "source.format",
                    format!("{e}: set source.format = \"auto\" (or \"text\") and restart"),
                )),
                false,
            );
        }
        tracing::warn!(reason = %e, "switching the stream to text values; reconnecting");
        self.binary = false;
        Stop::Reconnect
    }

    /// A pg2qdrant control message in the current transaction.
    fn control(&mut self, content: &[u8]) -> Result<Vec<Batch>, Error> {
        let msg = match Control::decode(content) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a logical message with the pg2qdrant prefix that is not a control message");
                return Ok(Vec::new());
            }
        };
        if msg.slot() != self.coordinator.slot() {
            return Ok(Vec::new()); // another connector's, on the same database
        }
        let Some((commit, commit_time)) = self.assembler.transaction() else {
            tracing::warn!("ignoring a non-transactional pg2qdrant control message");
            return Ok(Vec::new());
        };
        match msg {
            Control::Low { chunk, .. } => {
                if let Some(table) = self.coordinator.expects(&chunk) {
                    self.assembler.open_window(chunk, table);
                }
                Ok(Vec::new())
            }
            Control::High { chunk, .. } => {
                let coordinator = &self.coordinator;
                let window = self
                    .assembler
                    .close_window(&chunk, |id| coordinator.expects(id).is_some());
                let assembler = &mut self.assembler;
                let (ops, reads) =
                    self.coordinator
                        .high(&chunk, window, commit, commit_time, |n| {
                            assembler.reserve(n)
                        });
                Ok(self.assembler.inject(ops, reads))
            }
            Control::Resync {
                table, condition, ..
            } => {
                if self
                    .assembler
                    .stopped(&crate::event::TableName::parse(&table))
                {
                    // Its changes are being skipped: a copy now would be overtaken by them.
                    tracing::error!(table = %table, "resync requested for a table a schema change stopped: ignored. Make the config name the table's columns as they are now, restart, then request the resync again");
                    return Ok(Vec::new());
                }
                self.coordinator.request(&table, commit, condition)?;
                Ok(Vec::new())
            }
        }
    }
}

pub fn writer_ended(res: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    match res {
        Ok(r) => r,
        Err(e) => Err(Error::prerequisite(
            format!("writer task failed: {e}"),
            "this is a bug; please report it with the log",
        )),
    }
}

/// Gives the slot `durable` after the stream closed, waiting (a little more than a status
/// interval, connecting included) for the server to release the slot from the stream that just
/// ended; `Ok(false)` when that did not happen in time.
async fn advance_slot(source: &SourceConfig, durable: Lsn) -> Result<bool, Error> {
    let wait = Duration::from_millis(source.status_interval_ms) + Duration::from_secs(2);
    // The connect is inside the bound too: a server that does not answer must not hold the stop.
    let moved = tokio::time::timeout(wait, async {
        let catalog = crate::source::catalog::Catalog::connect(source).await?;
        while !catalog.advance_slot(&source.slot, durable).await? {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, Error>(())
    })
    .await;
    moved.map_or(Ok(false), |r| r.map(|()| true))
}
