//! What an applier does with the batches its consumer loop (`kafka::consume`) takes: each
//! message decoded and mapped into ops, a copy's closing sweep run in line, what cannot be
//! decoded or mapped delivered to the dead-letter topic (`dlq`) before its offset may be
//! committed (`commits`); each batch handed to the writer, its offsets queued in the same order.

use crate::config::{Config, KafkaConfig};
use crate::error::{retry_until_stopped, Error};
use crate::event::{Op, TableName};
use crate::kafka::consume::{Batches, Batching, Offsets, Take, Taken};
use crate::kafka::{client, decode, proto as pb};
use crate::mapping::Mappings;
use crate::pipeline::assemble::Batch;
use crate::pipeline::to_qdrant::ToQdrant;
use crate::pipeline::writer::{Pending, Writer};
use crate::sink::qdrant::QdrantSink;
use prost::Message as _;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commits::Commits;
use super::status;

pub(super) struct Applier {
    pub(super) consumer: Arc<client::GroupConsumer>,
    /// The dead-letter topic's producer, made when the first message is dead-lettered.
    pub(super) dlq: Mutex<Option<client::Producer>>,
    pub(super) dlq_topic: String,
    pub(super) kafka: KafkaConfig,
    pub(super) mappings: Arc<Mappings>,
    /// Batches handed to the writer and not yet durable, in order (see [`Commits`]).
    pub(super) queue: Arc<Mutex<VecDeque<Offsets>>>,
    pub(super) group: String,
    pub(super) batch_size: usize,
    pub(super) linger: Duration,
    pub(super) max_backoff: Duration,
    pub(super) shutdown: CancellationToken,
    pub(super) health: Arc<crate::metrics::health::Health>,
    /// For a copy's sweep: its tables and source (rows are looked up) and the writer's sink.
    pub(super) config: Arc<Config>,
    pub(super) sink: Arc<QdrantSink>,
    /// What `/status` reports (see `status`).
    pub(super) observed: Arc<status::Observed>,
    /// Batches handed to the writer whose offsets are not yet settled (committed, or known not
    /// to be): a revocation waits for none (see `kafka::client::GroupLog`).
    pub(super) unsettled: Arc<AtomicUsize>,
    /// Whether the writer task ended (its batches will never settle).
    pub(super) writer_ended: Arc<AtomicBool>,
}

/// What one message asks for.
enum Meaning {
    /// Ops for the writer, and the change's commit time (Unix µs).
    Ops(Vec<Op>, i64),
    /// A copy's closing sweep (see `verify::sweep`), and its commit time.
    Sweep(TableName, crate::lsn::Position, i64),
}

impl Applier {
    /// Consumes batches into the writer, which keeps `qdrant.parallel` of them in flight and
    /// commits each one's offsets once it and every batch before it are durable.
    pub(super) async fn run(&self, writer: Writer<ToQdrant<QdrantSink>>) -> Result<(), Error> {
        let pending = writer.pending.clone();
        let queue = &self.queue;
        let commits = Commits {
            consumer: self.consumer.clone(),
            group: self.group.clone(),
            queue: queue.clone(),
            unsettled: self.unsettled.clone(),
            newest: BTreeMap::new(),
        };
        let (tx, rx) = mpsc::channel::<Batch>(1);
        // The consumer ends on shutdown, an error, or the writer gone (its error is the run's).
        let stop = self.shutdown.child_token();
        // A task of its own: a revocation blocks the consumer's task until the writes in flight
        // are durable (see `kafka::client::GroupLog`), so the writer must not share it.
        let writing = {
            let (ended, stop) = (self.writer_ended.clone(), stop.clone());
            tokio::spawn(async move {
                let r = writer.run(rx, commits).await;
                ended.store(true, Ordering::SeqCst);
                stop.cancel();
                r
            })
        };
        // Dropping `tx` lets the writer finish what it holds.
        let consumed = self.consume(stop, &tx, &pending, queue).await;
        drop(tx);
        let written = writing.await.unwrap_or_else(|e| {
            Err(Error::Task {
                task: "writer".to_owned(),
                reason: e.to_string(),
            })
        });
        match written {
            Err(Error::Shutdown) | Ok(()) => consumed,
            Err(e) => Err(e),
        }
    }

    /// Takes batches (up to `qdrant.batch_size` messages or ops, or what came within
    /// `qdrant.linger_ms` of the first) and hands them to the writer, until `stop`.
    async fn consume(
        &self,
        stop: CancellationToken,
        tx: &mpsc::Sender<Batch>,
        pending: &Pending,
        queue: &Mutex<VecDeque<Offsets>>,
    ) -> Result<(), Error> {
        let how = Batching {
            batch_size: self.batch_size,
            linger: self.linger,
            max_backoff: self.max_backoff,
            stop,
            health: self.health.clone(),
        };
        let mut batches = Batches::new(&self.consumer, self, how);
        while let Some(taken) = batches.next().await? {
            if !self.hand_off(taken, tx, pending, queue).await {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Queues `taken`'s offsets and sends its ops to the writer; `false` when the run ends
    /// (shutdown, or the writer gone: its error is the run's).
    async fn hand_off(
        &self,
        taken: Taken<Vec<Op>>,
        tx: &mpsc::Sender<Batch>,
        pending: &Pending,
        queue: &Mutex<VecDeque<Offsets>>,
    ) -> bool {
        let batch = Batch {
            ops: taken.batch,
            events: Vec::new(),
            ack: None,
        };
        // The writer counts these down once their vectors are computed.
        crate::pipeline::embedding::count_waiting(
            &crate::pipeline::embedding::waiting(&batch.ops),
            1.0,
        );
        // Queued before the batch is sent: the writer's n-th durable batch is the n-th here.
        queue.lock().expect("commit queue").push_back(taken.offsets);
        self.unsettled.fetch_add(1, Ordering::SeqCst);
        pending.sent();
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            r = tx.send(batch) => r.is_ok(),
        }
    }

    /// The ops of one message's change event and its commit time (Unix µs), or its sweep, or
    /// why there are none.
    fn ops(&self, payload: &[u8]) -> Result<Meaning, String> {
        let event = pb::ChangeEvent::decode(payload)
            .map_err(|e| format!("not a pg2qdrant.v1.ChangeEvent: {e}"))?;
        let table: TableName = decode::table(&event).ok_or("the event names no source table")?;
        let mapping = self
            .mappings
            .get(&table)
            .ok_or_else(|| format!("table {table} is not in this applier's [[tables]]"))?;
        let change = decode::change(mapping, &event)?;
        if change.kind == crate::event::ChangeKind::Sweep {
            return Ok(Meaning::Sweep(
                table,
                change.position,
                event.commit_time_unix_micros,
            ));
        }
        let ops = mapping.ops(&change).map_err(|e| e.to_string())?;
        Ok(Meaning::Ops(ops, event.commit_time_unix_micros))
    }

    /// A copy's sweep of `table` (see `verify::sweep`), retried while PostgreSQL or Qdrant is
    /// unreachable. Points of other writers' batches in flight need no wait: the sweep deletes
    /// only points of rows that do not exist, fenced.
    async fn sweep(&self, table: &TableName, before: crate::lsn::Position) -> Result<(), Error> {
        let (Some(t), Some(mapping)) = (
            self.config
                .tables
                .iter()
                .find(|t| &TableName::parse(&t.table) == table),
            self.mappings.get(table),
        ) else {
            return Ok(()); // `ops` found the mapping; the config holds its table
        };
        let removed = retry_until_stopped("copy sweep", self.max_backoff, &self.shutdown, || {
            crate::verify::sweep::sweep(&self.config, &self.sink, t, mapping, before)
        })
        .await?;
        tracing::info!(table = %table, before = %crate::lsn::Lsn(before.commit_lsn), removed, "copy sweep applied: points of rows gone before the copy removed");
        Ok(())
    }
}

impl Take for Applier {
    type Batch = Vec<Op>;

    /// One message: its ops join the batch, or it goes to the dead-letter topic.
    async fn take(
        &self,
        ops: &mut Vec<Op>,
        offsets: &mut Offsets,
        m: &BorrowedMessage<'_>,
    ) -> Result<(), Error> {
        let topic = m.topic();
        let payload = m.payload().unwrap_or_default();
        match self.ops(payload) {
            Ok(Meaning::Ops(more, committed)) => {
                ops.extend(more);
                offsets.event(topic, committed);
                Ok(())
            }
            Ok(Meaning::Sweep(table, before, committed)) => {
                // Done here, before the message's offset can be committed (with the batch).
                self.sweep(&table, before).await?;
                offsets.event(topic, committed);
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(topic = %topic, partition = m.partition(), offset = m.offset(), reason = %reason, dlq = %self.dlq_topic, "message cannot be applied; sent to the dead-letter topic");
                self.dead_letter(m, &reason).await
            }
        }
    }

    fn size(ops: &Vec<Op>) -> usize {
        ops.len()
    }
}
