//! `pg2qdrant apply`: one member of a consumer group turning change events into Qdrant writes.
//!
//! ```text
//!  recv ─▶ decode ─▶ Change ─▶ mapping ─▶ ops ──┐                    ┌▶ commit offsets
//!    │        └─ undecodable / unmappable ─▶ DLQ topic (delivered) ──┴─ after both durable
//!    └─ up to qdrant.batch_size events or qdrant.linger_ms ─▶ writer (merges, embed, fenced write;
//!                                      qdrant.parallel batches in flight, durable in order)
//! ```
//!
//! Float arrays and vectors of an event are decoded into PostgreSQL's binary form, which the
//! mapping reads as it reads a binary stream (no float is printed and parsed again).
//!
//! # Why nothing is lost
//! The consumer hands batches to the same writer as `run` (its `Progress` here commits offsets
//! instead of acknowledging the slot). Batches in flight never share a point, and the writer
//! reports them durable strictly in the order they were taken, so an offset is committed only
//! after every message before it in its partition is durable:
//! its ops written to Qdrant by the same writer as the direct path (TOAST merges, embedding,
//! retries, dead letters), or the message itself delivered to the dead-letter topic. A crash,
//! a kill or a rebalance between the write and the commit makes the group deliver those
//! messages again, to this applier or another one.
//!
//! # Why a redelivered event never regresses a point
//! Every write of `apply` is fenced (the sink is not told any "newest" position, so no write
//! skips its fence): a point is replaced or deleted only by a change at a later position
//! (commit LSN, then the change's ordinal) than the one it holds. Events carry the position
//! the connector gave the change, so an old event delivered again, or late through another
//! partition, loses against the newer one already applied. One row's events are in one
//! partition, in commit order (the key is the point id), so they are applied in order by its
//! one owner at a time; a TRUNCATE is in every partition and deletes only points older than
//! itself, so inserts after it that reuse old keys survive it, whichever partition applies it
//! first.
//!
//! # Scale-out
//! Appliers in one group (`kafka.group_id`) share the partitions, and with them the embedding
//! work. A member that leaves cleanly hands its partitions over at once; one that dies is
//! noticed after `session.timeout.ms` (librdkafka's 45 s unless set in `kafka.properties`).

use crate::config::{Config, KafkaConfig};
use crate::deadletter::DeadLetter;
use crate::error::{retry_transient, retry_until_stopped, Error};
use crate::event::{Op, TableName};
use crate::kafka::{client, decode, proto as pb, Topics};
use crate::mapping::Mappings;
use crate::metrics::health::{self, Health};
use crate::metrics::names;
use crate::pipeline::assemble::Batch;
use crate::pipeline::embedding::Embedders;
use crate::pipeline::writer::{Pending, Writer};
use crate::setup::{self, tasks::Tasks};
use crate::sink::qdrant::{self, QdrantSink};
use crate::source::catalog::Catalog;
use futures_util::StreamExt as _;
use prost::Message as _;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod commits;
mod status;

use commits::Commits;

/// How often consumer lag is sampled.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// Header names of a dead-lettered message.
pub const DLQ_REASON: &str = "pg2qdrant.error";
pub const DLQ_TOPIC: &str = "pg2qdrant.source.topic";
pub const DLQ_PARTITION: &str = "pg2qdrant.source.partition";
pub const DLQ_OFFSET: &str = "pg2qdrant.source.offset";

/// Runs one applier until `shutdown` (Ok), a definite error, or a task failing (`Error::Task`).
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let Some(kafka) = cfg.kafka.clone() else {
        return Err(Error::config(
            "kafka",
            "pg2qdrant apply consumes change events: add a [kafka] section with brokers".to_owned(),
        ));
    };
    let health = Health::new(&health::components(&cfg, crate::config::Mode::Apply));
    let mut tasks = Tasks::new(health.clone());
    // Cancelled by `shutdown`, and by a task that fails.
    let stop = shutdown.child_token();
    let waiters = crate::metrics::wait::Waiters::not_served(
        "read-your-writes is served by `pg2qdrant run` with qdrant.direct = true: an applier holds only some partitions and cannot tell when every change up to an LSN is in Qdrant",
    );
    let served = crate::metrics::status::StatusSlot::default();
    setup::serve_metrics(
        &cfg,
        &stop,
        &mut tasks,
        crate::config::Mode::Apply,
        waiters,
        Some(served.clone()),
    )
    .await?;
    let (applier, writer) = match start(&cfg, &kafka, &stop, &health).await {
        Ok(started) => started,
        Err(e) => {
            stop.cancel();
            return tasks.end(Err(e), None).await;
        }
    };
    let _ = served.set(Box::new(status::Board {
        cfg: cfg.clone(),
        health: health.clone(),
        observed: applier.observed.clone(),
        queue: applier.queue.clone(),
    }));
    tasks.spawn_quiet(
        "consumer lag",
        lag_sampler(
            applier.consumer.clone(),
            applier.observed.clone(),
            stop.clone(),
        ),
    );
    tasks.spawn_quiet(
        "apply lag",
        apply_lag(applier.queue.clone(), applier.group.clone(), stop.clone()),
    );
    let (result, failed) = tasks.run_main(&stop, applier.run(writer)).await;
    stop.cancel();
    // Leave the group now (partitions go to the others at once), not after a session timeout.
    let c = applier.consumer.clone();
    match tokio::task::spawn_blocking(move || c.unsubscribe()).await {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(error = %e, "leaving the consumer group failed; the group notices after its session timeout")
        }
    }
    tasks.end(result, failed).await
}

/// Sets up (mappings, collections, topics, embedders), joins the group and returns the applier
/// and its writer.
async fn start(
    cfg: &Config,
    kafka: &KafkaConfig,
    stop: &CancellationToken,
    health: &Arc<Health>,
) -> Result<(Applier, Writer<QdrantSink>), Error> {
    let max_backoff = Duration::from_millis(cfg.qdrant.max_backoff_ms);
    let mappings = retry_until_stopped("apply set-up", max_backoff, stop, || prepare(cfg)).await?;
    let mappings = Arc::new(mappings);
    health.up("qdrant");
    let topics = Topics::new(kafka, mappings.keys());
    let mut names: Vec<String> = topics.all().iter().map(|t| t.to_string()).collect();
    // The applier may start before the connector created them.
    names.push(kafka.dlq_topic.clone());
    retry_until_stopped("kafka set-up", max_backoff, stop, || {
        client::ensure_topics(kafka, &names)
    })
    .await?;
    names.pop();
    // No `learn_newest`: every write of an applier is fenced (see the module doc).
    let sink = Arc::new(QdrantSink::new(qdrant::client(&cfg.qdrant)?)?);
    let embedders = Embedders::load_checked(cfg, &sink, max_backoff, stop).await?;
    health.up("embedder");
    let writer = Writer {
        sink,
        pending: Pending::default(),
        mappings: mappings.clone(),
        source: cfg.source.clone(),
        dead_letter: Arc::new(Mutex::new(DeadLetter::new(&cfg.dead_letter.path))),
        embedders: Arc::new(embedders),
        max_backoff,
        shutdown: stop.clone(),
        publisher: None,
        direct: true,
        health: health.clone(),
        parallel: cfg.qdrant.parallel,
    };
    let consumer = Arc::new(client::consumer(kafka)?);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(Error::kafka("subscribing to the tables' topics"))?;
    tracing::info!(topics = ?names, group = %kafka.group_id, "applying change events");
    health.up("kafka");
    let applier = Applier {
        consumer,
        // Made at first use: an idle librdkafka producer's polling thread costs about 1 % of
        // a core (it spins through the last millisecond of each 100 ms poll). Its properties
        // are checked here, so one the producer refuses fails the start, naming it.
        dlq: {
            client::check_producer(kafka)?;
            Mutex::new(None)
        },
        dlq_topic: kafka.dlq_topic.clone(),
        kafka: kafka.clone(),
        mappings,
        queue: Arc::default(),
        group: kafka.group_id.clone(),
        batch_size: cfg.qdrant.batch_size,
        linger: Duration::from_millis(cfg.qdrant.linger_ms),
        max_backoff,
        shutdown: stop.clone(),
        health: health.clone(),
        config: Arc::new(cfg.clone()),
        sink: writer.sink.clone(),
        observed: Arc::default(),
    };
    Ok((applier, writer))
}

/// Compiles the mappings against the source's catalog (key columns, types; TOAST merges read
/// rows from it) and creates missing collections.
async fn prepare(cfg: &Config) -> Result<Mappings, Error> {
    let catalog = Catalog::connect(&cfg.source).await?;
    let compiled = setup::compile::compile(&catalog, &cfg.tables, &cfg.embedders).await?;
    setup::ensure_collections(&qdrant::client(&cfg.qdrant)?, cfg, &compiled, None).await?;
    Ok(compiled.into_iter().map(|m| (m.table.clone(), m)).collect())
}

struct Applier {
    consumer: Arc<client::GroupConsumer>,
    /// The dead-letter topic's producer, made when the first message is dead-lettered.
    dlq: Mutex<Option<client::Producer>>,
    dlq_topic: String,
    kafka: KafkaConfig,
    mappings: Arc<Mappings>,
    /// Batches handed to the writer and not yet durable, in order (see [`Commits`]).
    queue: Arc<Mutex<VecDeque<Offsets>>>,
    group: String,
    batch_size: usize,
    linger: Duration,
    max_backoff: Duration,
    shutdown: CancellationToken,
    health: Arc<crate::metrics::health::Health>,
    /// For a copy's sweep: its tables and source (rows are looked up) and the writer's sink.
    config: Arc<Config>,
    sink: Arc<QdrantSink>,
    /// What `/status` reports (see `status`).
    observed: Arc<status::Observed>,
}

/// What one message asks for.
enum Decoded {
    /// Ops for the writer, and the change's commit time (Unix µs).
    Ops(Vec<Op>, i64),
    /// A copy's closing sweep (see `verify::sweep`), and its commit time.
    Sweep(TableName, crate::lsn::Position, i64),
}

/// Messages taken into one batch.
#[derive(Default)]
struct Taken {
    ops: Vec<Op>,
    /// What is committed once the batch is durable.
    offsets: Offsets,
    messages: usize,
}

/// A batch's offsets: per (topic, partition) the next offset to commit, and events per topic.
/// Few partitions per batch: looked up in a list.
#[derive(Default)]
struct Offsets {
    next: Vec<(String, i32, i64)>,
    /// The group's revocations when the batch's first message was taken: after another one,
    /// its offsets may be behind what a partition's interim owner committed, and are not
    /// committed (the messages come again, fenced).
    revocations: u64,
    events: Vec<(String, u64)>,
    /// The oldest commit time of the batch's events (Unix µs), for the apply lag.
    oldest: Option<i64>,
}

impl Offsets {
    fn taken(&mut self, topic: &str, partition: i32, offset: i64) {
        match self
            .next
            .iter_mut()
            .find(|(t, p, _)| *p == partition && t == topic)
        {
            Some(e) => e.2 = offset + 1,
            None => self.next.push((topic.to_owned(), partition, offset + 1)),
        }
    }

    fn event(&mut self, topic: &str, commit_time_unix_micros: i64) {
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

impl Applier {
    /// Consumes batches into the writer, which keeps `qdrant.parallel` of them in flight and
    /// commits each one's offsets once it and every batch before it are durable.
    async fn run(&self, writer: Writer<QdrantSink>) -> Result<(), Error> {
        let pending = writer.pending.clone();
        let queue = &self.queue;
        let commits = Commits {
            consumer: self.consumer.clone(),
            group: self.group.clone(),
            queue: queue.clone(),
            newest: BTreeMap::new(),
        };
        let (tx, rx) = mpsc::channel::<Batch>(1);
        // The consumer ends on shutdown, an error, or the writer gone; dropping `tx` lets the
        // writer finish what it holds.
        let consume = async move {
            let r = self.consume(&tx, &pending, queue).await;
            drop(tx);
            r
        };
        let (consumed, written) = tokio::join!(consume, writer.run(rx, commits));
        match written {
            Err(Error::Shutdown) | Ok(()) => consumed,
            Err(e) => Err(e),
        }
    }

    /// Takes batches of up to `qdrant.batch_size` messages (or what came within
    /// `qdrant.linger_ms` of the first) and hands them to the writer.
    async fn consume(
        &self,
        tx: &mpsc::Sender<Batch>,
        pending: &Pending,
        queue: &Mutex<VecDeque<Offsets>>,
    ) -> Result<(), Error> {
        let mut backoff = crate::error::Backoff::new(self.max_backoff);
        // One stream for the whole run: `recv` would register and drop a waker per message.
        let mut messages = self.consumer.stream();
        loop {
            let mut taken = Taken::default();
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                // The writer failed: its error ends the run.
                _ = tx.closed() => return Ok(()),
                m = messages.next() => m.expect("kafka streams never terminate"),
            };
            match first {
                Ok(m) => {
                    taken.offsets.revocations = self.consumer.context().revocations();
                    self.take(&mut taken, &m).await?
                }
                Err(e) => {
                    let e = Error::kafka("receiving")(e);
                    if e.disposition() == crate::error::Disposition::Definite {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "consumer error; retrying");
                    self.health.down("kafka", e.to_string());
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                    continue;
                }
            }
            backoff.reset();
            self.health.up("kafka");
            let deadline = tokio::time::Instant::now() + self.linger;
            while taken.messages < self.batch_size && taken.ops.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, messages.next()).await {
                    Ok(Some(Ok(m))) => self.take(&mut taken, &m).await?,
                    Ok(None) => unreachable!("kafka streams never terminate"),
                    Ok(Some(Err(e))) => {
                        tracing::warn!(error = %e, "consumer error");
                        break;
                    }
                    Err(_) => break,
                }
            }
            let batch = Batch {
                ops: taken.ops,
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
            pending.sent();
            let sent = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                r = tx.send(batch) => r,
            };
            if sent.is_err() {
                // The writer ended (its error is the run's); nothing more is taken.
                return Ok(());
            }
        }
    }

    /// One message: its ops join the batch, or it goes to the dead-letter topic.
    async fn take(
        &self,
        taken: &mut Taken,
        m: &rdkafka::message::BorrowedMessage<'_>,
    ) -> Result<(), Error> {
        let topic = m.topic();
        taken.messages += 1;
        taken.offsets.taken(topic, m.partition(), m.offset());
        let payload = m.payload().unwrap_or_default();
        match self.ops(payload) {
            Ok(Decoded::Ops(ops, committed)) => {
                taken.ops.extend(ops);
                taken.offsets.event(topic, committed);
                Ok(())
            }
            Ok(Decoded::Sweep(table, before, committed)) => {
                // Done here, before the message's offset can be committed (with the batch).
                self.sweep(&table, before).await?;
                taken.offsets.event(topic, committed);
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(topic = %topic, partition = m.partition(), offset = m.offset(), reason = %reason, dlq = %self.dlq_topic, "message cannot be applied; sent to the dead-letter topic");
                self.dead_letter(m, &reason).await
            }
        }
    }

    /// The ops of one message's change event and its commit time (Unix µs), or its sweep, or
    /// why there are none.
    fn ops(&self, payload: &[u8]) -> Result<Decoded, String> {
        let event = pb::ChangeEvent::decode(payload)
            .map_err(|e| format!("not a pg2qdrant.v1.ChangeEvent: {e}"))?;
        let table: TableName = decode::table(&event).ok_or("the event names no source table")?;
        let mapping = self
            .mappings
            .get(&table)
            .ok_or_else(|| format!("table {table} is not in this applier's [[tables]]"))?;
        let change = decode::change(mapping, &event)?;
        if change.kind == crate::event::ChangeKind::Sweep {
            return Ok(Decoded::Sweep(
                table,
                change.position,
                event.commit_time_unix_micros,
            ));
        }
        let ops = mapping.ops(&change).map_err(|e| e.to_string())?;
        Ok(Decoded::Ops(ops, event.commit_time_unix_micros))
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

    /// Delivers `m` to the dead-letter topic with the reason and its origin in headers
    /// (retried until delivered: its offset is committed only after).
    async fn dead_letter(
        &self,
        m: &rdkafka::message::BorrowedMessage<'_>,
        reason: &str,
    ) -> Result<(), Error> {
        let partition = m.partition().to_string();
        let offset = m.offset().to_string();
        let payload = m.payload().unwrap_or_default();
        let key = m.key().unwrap_or_default();
        let producer = {
            let mut dlq = self.dlq.lock().expect("dead-letter producer lock");
            match &*dlq {
                Some(p) => p.clone(),
                None => dlq.insert(client::producer(&self.kafka)?).clone(),
            }
        };
        let send = || async {
            let headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: DLQ_REASON,
                    value: Some(reason),
                })
                .insert(Header {
                    key: DLQ_TOPIC,
                    value: Some(m.topic()),
                })
                .insert(Header {
                    key: DLQ_PARTITION,
                    value: Some(&partition),
                })
                .insert(Header {
                    key: DLQ_OFFSET,
                    value: Some(&offset),
                });
            let record = FutureRecord::<[u8], [u8]>::to(&self.dlq_topic)
                .payload(payload)
                .key(key)
                .headers(headers);
            producer
                .send(
                    record,
                    rdkafka::util::Timeout::After(Duration::from_secs(30)),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| Error::kafka(format!("delivering to {}", self.dlq_topic))(e))
        };
        retry_transient(
            "dead-letter topic",
            self.max_backoff,
            &self.shutdown,
            Duration::from_secs(5),
            send,
        )
        .await?;
        metrics::counter!(names::KAFKA_DLQ, "topic" => m.topic().to_owned()).increment(1);
        *self
            .observed
            .dead_lettered
            .lock()
            .expect("status lock")
            .entry(m.topic().to_owned())
            .or_default() += 1;
        Ok(())
    }
}

/// How often the apply lag is sampled (it also moves as each batch becomes durable).
const APPLY_LAG_EVERY: Duration = Duration::from_secs(1);

/// Sets the apply lag of `group`: the age of the oldest event in `queue` (taken, not yet
/// durable), seconds; 0 when empty.
fn export_apply_lag(queue: &Mutex<VecDeque<Offsets>>, group: &str) {
    metrics::gauge!(names::KAFKA_APPLY_LAG_SECONDS, "group" => group.to_owned())
        .set(seconds_behind(queue));
}

fn seconds_behind(queue: &Mutex<VecDeque<Offsets>>) -> f64 {
    let oldest = queue
        .lock()
        .expect("commit queue")
        .iter()
        .filter_map(|o| o.oldest)
        .min();
    oldest.map_or(0.0, crate::pipeline::lag::age_seconds)
}

/// Exports the apply lag: while Qdrant is down the batch in flight stays, and its age grows.
async fn apply_lag(
    queue: Arc<Mutex<VecDeque<Offsets>>>,
    group: String,
    shutdown: CancellationToken,
) {
    loop {
        export_apply_lag(&queue, &group);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(APPLY_LAG_EVERY) => {}
        }
    }
}

/// Exports each assigned partition's lag: its end offset minus this member's position.
async fn lag_sampler(
    consumer: Arc<client::GroupConsumer>,
    observed: Arc<status::Observed>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(LAG_EVERY) => {}
        }
        let c = consumer.clone();
        let lags = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let Ok(position) = c.position() else {
                return out;
            };
            for e in position.elements() {
                let Ok((_, high)) =
                    c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
                else {
                    continue;
                };
                let at = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => continue,
                };
                out.push((e.topic().to_owned(), e.partition(), (high - at).max(0)));
            }
            out
        })
        .await
        .unwrap_or_default();
        for (topic, partition, lag) in &lags {
            metrics::gauge!(names::KAFKA_CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                .set(*lag as f64);
        }
        *observed.partitions.lock().expect("status lock") = Some(
            lags.into_iter()
                .map(
                    |(topic, partition, lag)| crate::metrics::status::PartitionLag {
                        topic,
                        partition,
                        lag,
                    },
                )
                .collect(),
        );
    }
}
