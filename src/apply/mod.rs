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
//! # Why a rebalance brings no deleted row back
//! A partition's next owner starts from its committed offset. A write of this member still in
//! flight could land after the next owner deleted its row, and Qdrant inserts a point it does
//! not find whatever the fence. So a revocation waits until every batch handed to the writer is
//! durable (their offsets committed under the old assignment), and the batch being taken is
//! dropped (its messages come again from the committed offsets): `kafka::client::GroupLog`.
//! The wait is bounded (`DRAIN_LIMIT`, Qdrant down through a rebalance), past which a warning
//! says to run `verify --repair`. This needs the eager protocol, where every partition starts
//! again from its committed offset after a rebalance; the cooperative one is refused.
//!
//! # Scale-out
//! Appliers in one group (`kafka.group_id`) share the partitions, and with them the embedding
//! work. A member that leaves cleanly hands its partitions over at once; one that dies is
//! noticed after `session.timeout.ms` (librdkafka's 45 s unless set in `kafka.properties`).

use crate::config::{Config, KafkaConfig};
use crate::deadletter::DeadLetter;
use crate::error::{retry_until_stopped, Error};
use crate::kafka::{client, Topics};
use crate::mapping::Mappings;
use crate::metrics::health::{self, Health};
use crate::pipeline::embedding::Embedders;
use crate::pipeline::retrying::Retrying;
use crate::pipeline::to_qdrant::ToQdrant;
use crate::pipeline::toast::SourceReads;
use crate::pipeline::writer::{Pending, Writer};
use crate::setup::{self, tasks::Tasks};
use crate::sink::qdrant::{self, QdrantSink};
use crate::source::catalog::Catalog;
use rdkafka::consumer::Consumer;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod commits;
mod consume;
mod dlq;
mod lag;
mod offsets;
mod status;

use consume::Applier;
pub use dlq::{DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC};
use lag::{apply_lag, lag_sampler};

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
) -> Result<(Applier, Writer<ToQdrant<QdrantSink>>), Error> {
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
    let destination = ToQdrant {
        sink: sink.clone(),
        mappings: mappings.clone(),
        reads: SourceReads::new(cfg.source.clone()),
        embedders: Arc::new(embedders),
        dead_letter: Arc::new(Mutex::new(DeadLetter::new(&cfg.dead_letter.path))),
        retrying: Retrying {
            max_backoff,
            shutdown: stop.clone(),
            health: health.clone(),
        },
    };
    let writer = Writer {
        destination: Arc::new(destination),
        pending: Pending::default(),
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
        sink,
        observed: Arc::default(),
        unsettled: Arc::default(),
        writer_ended: Arc::default(),
    };
    wait_on_revoke(&applier, stop);
    Ok((applier, writer))
}

/// Makes a revocation wait until every batch handed to the writer has settled its offsets,
/// unless they never will: the applier stopping, or its writer ended.
fn wait_on_revoke(applier: &Applier, stop: &CancellationToken) {
    let (unsettled, ended, stop) = (
        applier.unsettled.clone(),
        applier.writer_ended.clone(),
        stop.clone(),
    );
    applier.consumer.context().wait_on_revoke(move || {
        unsettled.load(Ordering::SeqCst) == 0 || ended.load(Ordering::SeqCst) || stop.is_cancelled()
    });
}

/// Compiles the mappings against the source's catalog (key columns, types; TOAST merges read
/// rows from it) and creates missing collections.
async fn prepare(cfg: &Config) -> Result<Mappings, Error> {
    let catalog = Catalog::connect(&cfg.source).await?;
    let compiled = setup::compile::compile(&catalog, &cfg.tables, &cfg.embedders).await?;
    setup::ensure_collections(&qdrant::client(&cfg.qdrant)?, cfg, &compiled, None).await?;
    Ok(compiled.into_iter().map(|m| (m.table.clone(), m)).collect())
}
