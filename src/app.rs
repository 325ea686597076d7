//! `pg2qdrant run`: the wiring, and nothing else. Set up (`setup`), start each stage, wait for a
//! stop or the first failure, shut down in order, join every task.
//!
//! ```text
//!  setup ─▶ writer task (owned by the replicator, joined by its finish)
//!        ─▶ tasks: sampler, copy workers, copy progress, bulk load, rebuild switch  (one JoinSet)
//!        ─▶ replication loop, until SIGTERM, `initial_only` done, or a task failed
//!  stop  ─▶ copies stop ─▶ buffered batch handed over, writer finishes within its grace, final
//!           position reported to the slot ─▶ every task joined ─▶ Ok, or the failure (exit 1)
//! ```
//!
//! One token stops everything. A task that fails for good cancels the loop's token too, so the
//! process stops in the same order and reports the failure; the slot is acknowledged only after
//! durable writes, so the supervisor's restart loses nothing.

use crate::checkpoint::state::StateFile;
use crate::checkpoint::{CheckpointStore, FileCheckpoint};
use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::error::{retry_until_stopped, Error};
use crate::kafka::{publish::Publisher, Topics};
use crate::lsn::Lsn;
use crate::mapping::Mappings;
use crate::metrics::health::{self, Health};
use crate::metrics::status::StatusSlot;
use crate::metrics::wait::Waiters;
use crate::pipeline::assemble::{Assembler, Batch};
use crate::pipeline::embedding::Embedders;
use crate::pipeline::fanout::Fanout;
use crate::pipeline::lag::LagClock;
use crate::pipeline::replicate::Replicator;
use crate::pipeline::retrying::Retrying;
use crate::pipeline::sampler::Sampler;
use crate::pipeline::status::Board;
use crate::pipeline::to_kafka::ToKafka;
use crate::pipeline::to_qdrant::ToQdrant;
use crate::pipeline::toast::SourceReads;
use crate::pipeline::writer::{DurableProgress, Pending, Writer};
use crate::setup::{self, tasks::Tasks};
use crate::sink::qdrant::{self, QdrantSink};
use crate::snapshot::{bulk, progress, switch, worker, Coordinator};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Batches queued between the replication loop and the writer (bounds memory).
const WRITER_QUEUE: usize = 4;

/// The stages of a run, started.
struct Stages {
    replicator: Replicator,
    /// From this token on, the writer's retries get the grace, no more.
    writer_stop: CancellationToken,
    copies_stop: CancellationToken,
}

/// Runs the connector until `shutdown` is cancelled (Ok), `snapshot = initial_only` finished
/// its copies (Ok), a definite error stops it, or a task fails (`Error::Task`).
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let health = Health::new(&health::components(&cfg, crate::config::Mode::Run));
    let mut tasks = Tasks::new(health.clone());
    // Cancelled by `shutdown`, and by a task that fails.
    let stop = shutdown.child_token();
    // The durable position: before the set-up knows where it starts, 0/0 (waiters wait).
    let (durable, _) = watch::channel(Lsn(0));
    let waiters = match cfg.qdrant.direct {
        true => Waiters::new(durable.subscribe(), cfg.metrics.max_waiters),
        false => Waiters::not_served(
            "qdrant.direct = false: this process's durable position means delivered to Kafka; the appliers write Qdrant, and read-your-writes is served only by `pg2qdrant run` with qdrant.direct = true",
        ),
    };
    let status = StatusSlot::default();
    let served = Some(status.clone());
    setup::serve_metrics(
        &cfg,
        &stop,
        &mut tasks,
        crate::config::Mode::Run,
        waiters,
        served,
    )
    .await?;
    let Stages {
        mut replicator,
        writer_stop,
        copies_stop,
    } = match start(cfg, &stop, &mut tasks, durable, &status).await {
        Ok(started) => started,
        Err(e) => {
            stop.cancel();
            return tasks.end(Err(e), None).await;
        }
    };
    let (ended, failed) = tasks.run_main(&stop, replicator.run()).await;
    copies_stop.cancel();
    let outcome = replicator.finish(ended, writer_stop).await;
    stop.cancel();
    tasks.end(outcome, failed).await
}

/// What the set-up of a run found and made, before any stage starts.
struct SetUp {
    /// The config with rebuilt tables writing their new collections.
    cfg: Config,
    mappings: Arc<Mappings>,
    binary: bool,
    checkpoint: FileCheckpoint,
    /// Where durable progress starts.
    start: Lsn,
    coordinator: Arc<Coordinator>,
    sink: Arc<QdrantSink>,
    topics: Option<Arc<Topics>>,
    publisher: Option<Arc<Publisher>>,
    embedders: Embedders,
}

/// Sets up (`setup`): the checkpoint, the source side, the copy coordinator, the sinks and the
/// embedders. Transient failures are retried until `stop` (then `Error::Shutdown`).
async fn prepare(cfg: Config, stop: &CancellationToken, health: &Health) -> Result<SetUp, Error> {
    let max_backoff = Duration::from_millis(cfg.qdrant.max_backoff_ms);
    let checkpoint = FileCheckpoint::open(&cfg.checkpoint.path)?;
    let stored = checkpoint.load()?;
    let (cfg, state) = setup::rebuild::prepare(cfg)?;
    // The models load (reading and optimising their graphs) while the source is set up.
    let load = async {
        match cfg.qdrant.direct {
            true => Embedders::load_blocking(&cfg.embedders).await.map(Some),
            false => Ok(None), // Kafka only: the appliers embed.
        }
    };
    let connect = retry_until_stopped("set-up", max_backoff, stop, || {
        setup::source::connect(&cfg, &state, stored.is_some())
    });
    let (source, loaded) = tokio::try_join!(connect, load)?;
    let mappings = Arc::new(source.mappings);
    // The stream resumes at the checkpoint, or at the slot's position when that is newer.
    let start = stored.unwrap_or(Lsn(0)).max(source.resume);
    let coordinator = Coordinator::start(
        StateFile::new(&cfg.checkpoint.snapshot_path()),
        mappings.clone(),
        &cfg.source.slot,
        cfg.source.snapshot,
        cfg.source.snapshot_chunk_pages,
    )?;
    tracing::info!(start = %start, slot = %cfg.source.slot, tables = mappings.len(), "starting replication");
    let sink = Arc::new(QdrantSink::new(qdrant::client(&cfg.qdrant)?)?.sole_writer());
    let (topics, publisher) = setup::publishing(&cfg, &mappings, max_backoff, stop).await?;
    let embedders = match loaded {
        Some(loaded) => {
            setup::learn_newest(&cfg, &sink, max_backoff, stop).await?;
            loaded.checked(&cfg, &sink, max_backoff, stop).await?
        }
        None => Embedders::default(),
    };
    // Loaded (an unreachable service shows at its first call: down until one succeeds).
    health.up("embedder");
    if publisher.is_some() {
        health.up("kafka"); // the producer connected and the topics exist
    }
    Ok(SetUp {
        cfg,
        mappings,
        binary: source.binary,
        checkpoint,
        start,
        coordinator,
        sink,
        topics,
        publisher,
        embedders,
    })
}

/// Sets up ([`prepare`]), then starts the writer (moving `durable_tx`) and every task, and
/// fills the `/status` slot; the replication loop is returned to be run.
async fn start(
    cfg: Config,
    stop: &CancellationToken,
    tasks: &mut Tasks,
    durable_tx: watch::Sender<Lsn>,
    status: &StatusSlot,
) -> Result<Stages, Error> {
    let health = &tasks.health().clone();
    let mut p = prepare(cfg, stop, health).await?;
    let max_backoff = Duration::from_millis(p.cfg.qdrant.max_backoff_ms);
    let dead_letter = Arc::new(Mutex::new(DeadLetter::new(&p.cfg.dead_letter.path)));
    let writer_stop = CancellationToken::new();
    let retrying = Retrying {
        max_backoff,
        shutdown: writer_stop.clone(),
        health: health.clone(),
    };
    let destination = p.destination(&dead_letter, retrying);
    let (cfg, mappings, sink) = (p.cfg, p.mappings, p.sink);
    durable_tx.send_replace(p.start);
    let durable = durable_tx.subscribe();
    let (batches, rx) = mpsc::channel::<Batch>(WRITER_QUEUE);
    let (pending, lag) = (Pending::default(), Arc::new(LagClock::default()));
    let writer = Writer {
        destination: Arc::new(destination),
        pending: pending.clone(),
        parallel: cfg.qdrant.parallel,
    };
    let progress = DurableProgress::new(Box::new(p.checkpoint), durable_tx).with_lag(lag.clone());
    let writer = tokio::spawn(writer.run(rx, progress));
    let watched = Watchers {
        cfg: cfg.clone(),
        coordinator: p.coordinator.clone(),
        durable: durable.clone(),
        lag: lag.clone(),
        health: health.clone(),
    };
    watched.start(tasks, status, stop)?;
    let copies_stop = stop.child_token();
    start_copies(
        tasks,
        &cfg,
        &p.coordinator,
        &mappings,
        &sink,
        &dead_letter,
        p.topics.is_some(),
        &copies_stop,
    )?;
    let replicator = Replicator {
        source: cfg.source.clone(),
        binary: p.binary,
        assembler: Assembler::new(
            mappings,
            cfg.qdrant.batch_size,
            Duration::from_millis(cfg.qdrant.linger_ms),
        )
        .with_topics(p.topics),
        batches,
        pending,
        writer,
        durable,
        coordinator: p.coordinator,
        dead_letter,
        max_backoff,
        shutdown: stop.clone(),
        lag,
        health: health.clone(),
    };
    Ok(Stages {
        replicator,
        writer_stop,
        copies_stop,
    })
}

/// What the sampler and `/status` watch.
struct Watchers {
    cfg: Config,
    coordinator: Arc<Coordinator>,
    durable: watch::Receiver<Lsn>,
    lag: Arc<LagClock>,
    health: Arc<Health>,
}

impl Watchers {
    /// Starts the sampler (metrics of the slot, the lag, Qdrant) and fills the `/status` slot.
    fn start(
        self,
        tasks: &mut Tasks,
        status: &StatusSlot,
        stop: &CancellationToken,
    ) -> Result<(), Error> {
        let cfg = &self.cfg;
        let sampler = Sampler {
            cfg: cfg.clone(),
            durable: self.durable.clone(),
            lag: self.lag.clone(),
            health: self.health.clone(),
            qdrant: cfg
                .qdrant
                .direct
                .then(|| qdrant::client(&cfg.qdrant))
                .transpose()?,
        };
        tasks.spawn_quiet("sampler", sampler.run(stop.clone()));
        // Filled once per run (a second fill cannot happen: `start` runs once).
        let _ = status.set(Box::new(Board {
            cfg: self.cfg,
            coordinator: self.coordinator,
            lag: self.lag,
            health: self.health,
            durable: self.durable,
        }));
        Ok(())
    }
}

impl SetUp {
    /// Where the writer makes batches durable: Kafka when `[kafka]` is set, Qdrant unless
    /// `qdrant.direct = false` (the producer and the embedders move there).
    fn destination(
        &mut self,
        dead_letter: &Arc<Mutex<DeadLetter>>,
        retrying: Retrying,
    ) -> Fanout<ToKafka, ToQdrant<QdrantSink>> {
        let cfg = &self.cfg;
        Fanout {
            kafka: self.publisher.take().map(|publisher| ToKafka {
                publisher,
                dead_letter: dead_letter.clone(),
                retrying: retrying.clone(),
            }),
            qdrant: cfg.qdrant.direct.then(|| ToQdrant {
                sink: self.sink.clone(),
                mappings: self.mappings.clone(),
                reads: SourceReads::new(cfg.source.clone()),
                embedders: Arc::new(std::mem::take(&mut self.embedders)),
                dead_letter: dead_letter.clone(),
                retrying,
            }),
        }
    }
}

/// The copy side: workers reading chunks, the progress report, the bulk-load and rebuild
/// supervisors; all stop with `copies_stop`.
#[allow(clippy::too_many_arguments)]
fn start_copies(
    tasks: &mut Tasks,
    cfg: &Config,
    coordinator: &Arc<Coordinator>,
    mappings: &Arc<Mappings>,
    sink: &Arc<QdrantSink>,
    dead_letter: &Arc<Mutex<DeadLetter>>,
    publish: bool,
    copies_stop: &CancellationToken,
) -> Result<(), Error> {
    for _ in 0..cfg.source.snapshot_workers() {
        let worker = worker::Worker {
            coordinator: coordinator.clone(),
            source: cfg.source.clone(),
            dead_letter: dead_letter.clone(),
            max_backoff: Duration::from_millis(cfg.qdrant.max_backoff_ms),
            shutdown: copies_stop.clone(),
            publish,
        };
        tasks.spawn_quiet("copy worker", worker.run());
    }
    tasks.spawn_quiet(
        "copy progress",
        progress::report(coordinator.clone(), copies_stop.clone()),
    );
    let client = qdrant::client(&cfg.qdrant)?;
    tasks.spawn_quiet(
        "bulk load",
        bulk::supervise(coordinator.clone(), client, copies_stop.clone()),
    );
    let switch = switch::supervise(
        coordinator.clone(),
        mappings.clone(),
        sink.clone(),
        qdrant::client(&cfg.qdrant)?,
        copies_stop.clone(),
    );
    tasks.spawn_quiet("rebuild switch", switch);
    Ok(())
}
