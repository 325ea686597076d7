//! Wiring: set-up, the copy workers, the writer task, the replication loop, shutdown.
//!
//! One [`CancellationToken`] stops everything: the loop stops taking changes, hands what it
//! buffered to the writer, the writer finishes (or, with Qdrant down, abandons after a grace
//! period) and stores the checkpoint, and the last durable LSN is reported to the slot.

use crate::checkpoint::{CheckpointStore, FileCheckpoint};
use crate::config::{Config, EmbedderConfig, SnapshotMode, TableConfig};
use crate::deadletter::DeadLetter;
use crate::error::{retry_transient, Error};
use crate::event::TableName;
use crate::lsn::Lsn;
use crate::mapping::key;
use crate::mapping::TableMapping;
use crate::metrics::names;
use crate::pipeline::assemble::{Assembler, Batch, Mappings};
use crate::pipeline::replicate::{writer_ended, Replicator};
use crate::pipeline::writer::{Pending, Writer};
use crate::sink::qdrant::collections::{self, Ensured};
use crate::sink::qdrant::{self, QdrantSink};
use crate::snapshot::state::StateFile;
use crate::snapshot::{bulk, progress, worker, Coordinator};
use crate::source::catalog::Catalog;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Batches queued between the replication loop and the writer (bounds memory).
const WRITER_QUEUE: usize = 4;

/// Compiles the `[[tables]]` against the database: key columns (configured, else the primary
/// key), the database's types; and refuses two tables whose point ids can collide in one collection.
pub async fn compile(
    catalog: &Catalog,
    tables: &[TableConfig],
    embedders: &[EmbedderConfig],
) -> Result<Vec<TableMapping>, Error> {
    let keys = catalog.resolve_keys(tables).await?;
    let types = Arc::new(catalog.types().await?);
    let mut spaces = Vec::with_capacity(tables.len());
    let mut out = Vec::with_capacity(tables.len());
    for (t, key) in tables.iter().zip(keys) {
        spaces.push(id_space(catalog, t, &key).await?);
        let mut mapping = TableMapping::new(t, key).with_types(types.clone());
        if let Some(c) = &t.chunk {
            mapping = mapping.with_splitter(splitter(t, c, embedders)?);
        }
        out.push(mapping);
    }
    refuse_colliding_ids(tables, &spaces)?;
    Ok(out)
}

/// A chunked table's splitter, counting tokens with its embedder's tokenizer (a local model's
/// tokenizer.json, an openai embedder's `tokenizer`; else words).
fn splitter(
    t: &TableConfig,
    c: &crate::config::ChunkConfig,
    embedders: &[EmbedderConfig],
) -> Result<crate::mapping::chunk::Splitter, Error> {
    let name = t.embedded_vectors().pop().map(|v| v.1).unwrap_or_default();
    let tokenizer = embedders
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| match e.kind {
            crate::config::EmbedderKind::Local => Some(e.path.join("tokenizer.json")),
            crate::config::EmbedderKind::Openai => e.tokenizer.clone(),
        });
    crate::mapping::chunk::Splitter::load(c, tokenizer.as_deref())
}

/// Which ids the table's points get (its key columns' types and `id`).
pub async fn id_space(
    catalog: &Catalog,
    t: &TableConfig,
    key: &[String],
) -> Result<key::IdSpace, Error> {
    let types = catalog.column_types(&TableName::parse(&t.table)).await?;
    let key_types: Vec<u32> = key.iter().filter_map(|k| types.get(k).copied()).collect();
    Ok(key::id_space(t.id, &key_types))
}

/// Two tables writing integer (or uuid) keys as ids into one collection would overwrite each
/// other's points: an error naming both and the fix.
pub fn refuse_colliding_ids(tables: &[TableConfig], spaces: &[key::IdSpace]) -> Result<(), Error> {
    let by_collection: Vec<(&str, key::IdSpace)> = tables
        .iter()
        .zip(spaces)
        .map(|(t, s)| (t.collection.as_str(), *s))
        .collect();
    let Some((i, j)) = key::collision(&by_collection) else {
        return Ok(());
    };
    let kind = if spaces[i] == key::IdSpace::Integer {
        "integer"
    } else {
        "uuid"
    };
    Err(Error::prerequisite(
        format!(
            "tables[{i}] {} and tables[{j}] {} both write collection {} with their {kind} keys as point ids: equal keys would overwrite each other",
            tables[i].table, tables[j].table, tables[i].collection
        ),
        format!(
            "set id = \"uuid5\" on one of them (tables[{j}].id; its point ids change, so run `pg2qdrant resync` for it) or give each its own collection"
        ),
    ))
}

/// Checks prerequisites, creates what is missing, and compiles the table mappings.
pub async fn prepare(cfg: &Config) -> Result<Mappings, Error> {
    let (cfg, state) = crate::rebuild::prepare(cfg.clone())?;
    set_up(&cfg, &state, false).await.map(|(m, _)| m)
}

/// [`prepare`]; `had_progress`: the checkpoint shows the connector streamed before, so a
/// missing slot means lost changes (see `Catalog::ensure_slot`). Also returns whether the stream
/// carries binary values (`source::format`).
/// `current`: the snapshot state, for rebuilds in progress (`cfg` already writes their new
/// collections, see `rebuild::prepare`).
async fn set_up(
    cfg: &Config,
    current: &crate::snapshot::state::State,
    had_progress: bool,
) -> Result<(Mappings, bool), Error> {
    let catalog = Catalog::connect(&cfg.source).await?;
    let level = catalog.wal_level().await?;
    if level != "logical" {
        return Err(Error::prerequisite(
            format!("wal_level is {level}"),
            "set wal_level = logical in postgresql.conf and restart PostgreSQL",
        ));
    }
    let mut compiled = compile(&catalog, &cfg.tables, &cfg.embedders).await?;
    let binary = crate::source::format::choose(&catalog, cfg.source.format, &compiled).await?;
    let names: Vec<_> = cfg
        .tables
        .iter()
        .map(|t| crate::event::TableName::parse(&t.table))
        .collect();
    catalog
        .ensure_publication(
            &cfg.source.publication,
            &names,
            cfg.source.create_publication,
        )
        .await?;
    catalog
        .ensure_slot(
            &cfg.source.slot,
            cfg.source.create_slot,
            had_progress,
            cfg.source.snapshot_on_slot_loss,
            || StateFile::new(&cfg.checkpoint.snapshot_path()).recopy_all(&names, "slot lost"),
        )
        .await?;
    if !cfg.qdrant.direct {
        // Kafka only: `pg2qdrant apply` owns the collections.
        return Ok((
            compiled.into_iter().map(|m| (m.table.clone(), m)).collect(),
            binary,
        ));
    }
    let client = qdrant::client(&cfg.qdrant)?;
    let state = StateFile::new(&cfg.checkpoint.snapshot_path());
    ensure_collections(&client, cfg, &compiled, Some(&state)).await?;
    crate::rebuild::attach_shadows(cfg, current, &catalog, &client, &mut compiled).await?;
    Ok((
        compiled.into_iter().map(|m| (m.table.clone(), m)).collect(),
        binary,
    ))
}

/// Creates the tables' missing collections and the payload indexes chunked tables need. With
/// the copy state (`run`), a collection created for a table's first copy is bulk-loaded: no
/// vector index until the copy is done (`snapshot::bulk`); without (`apply`), never.
pub async fn ensure_collections(
    client: &qdrant_client::Qdrant,
    cfg: &Config,
    compiled: &[TableMapping],
    copies: Option<&StateFile>,
) -> Result<(), Error> {
    let copied = copies.map(|s| s.load()).transpose()?;
    for (i, t) in cfg.tables.iter().enumerate() {
        let first_copy = copied.as_ref().is_some_and(|c| {
            cfg.source.snapshot != SnapshotMode::Never
                && !c.tables.contains_key(&compiled[i].table.to_string())
        });
        let ensured = collections::ensure(client, i, t, first_copy).await?;
        if let (Ensured::CreatedForBulk, Some(state)) = (ensured, copies) {
            // Qdrant's bulk-upload practice: build no vector index while the copy fills the
            // collection; `snapshot::bulk` restores the threshold afterwards. Recorded first.
            let threshold = collections::indexing_threshold(client, &t.collection).await?;
            state.record_bulk(&t.collection, threshold)?;
            collections::set_indexing_threshold(client, &t.collection, 0).await?;
            tracing::info!(collection = %t.collection, restore_to_kb = threshold, "bulk load: vector indexing deferred until the first copy is done");
        }
        if compiled[i].chunked() {
            collections::ensure_chunk_indexes(client, &t.collection, &compiled[i].key).await?;
        }
    }
    Ok(())
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `metrics.addr` (unless empty) until
/// `shutdown`; `mode` labels the build info.
pub async fn serve_metrics(
    cfg: &Config,
    shutdown: &CancellationToken,
    health: Arc<crate::health::Health>,
    mode: &'static str,
) -> Result<(), Error> {
    let handle = crate::metrics::server::install();
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "mode" => mode)
        .set(1.0);
    crate::metrics::series::register(cfg, mode);
    if !cfg.metrics.addr.is_empty() {
        let addr =
            crate::metrics::server::serve(&cfg.metrics.addr, handle, health, shutdown.clone())
                .await
                .map_err(|e| {
                    Error::config(
                        "metrics.addr",
                        format!("cannot listen on {}: {e}", cfg.metrics.addr),
                    )
                })?;
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    Ok(())
}

/// Runs the connector until `shutdown` is cancelled (Ok), `snapshot = initial_only` finished
/// its copies (Ok), or a definite error stops it.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let health = crate::health::Health::new(&crate::health::components(&cfg, "run"));
    serve_metrics(&cfg, &shutdown, health.clone(), "run").await?;
    let max_backoff = Duration::from_millis(cfg.qdrant.max_backoff_ms);
    let checkpoint = FileCheckpoint::open(&cfg.checkpoint.path)?;
    let stored = checkpoint.load()?;
    let (cfg, state) = crate::rebuild::prepare(cfg)?;
    let (mappings, binary) =
        match retry_transient("set-up", max_backoff, &shutdown, Duration::ZERO, || {
            set_up(&cfg, &state, stored.is_some())
        })
        .await
        {
            Err(Error::Shutdown) => return Ok(()),
            other => other?,
        };
    let mappings = Arc::new(mappings);
    let start = stored.unwrap_or(Lsn(0));
    let coordinator = Coordinator::start(
        StateFile::new(&cfg.checkpoint.snapshot_path()),
        mappings.clone(),
        &cfg.source.slot,
        cfg.source.snapshot,
        cfg.source.snapshot_chunk_pages,
    )?;
    tracing::info!(start = %start, slot = %cfg.source.slot, tables = mappings.len(), "starting replication");

    let dead_letter = Arc::new(Mutex::new(DeadLetter::new(&cfg.dead_letter.path)));
    let (durable_tx, durable_rx) = watch::channel(start);
    let (tx, rx) = mpsc::channel::<Batch>(WRITER_QUEUE);
    let writer_stop = CancellationToken::new();
    let sink = Arc::new(QdrantSink::new(qdrant::client(&cfg.qdrant)?)?);
    let (topics, publisher) = match publishing(&cfg, &mappings, max_backoff, &shutdown).await {
        Err(Error::Shutdown) => return Ok(()),
        other => other?,
    };
    let direct = cfg.qdrant.direct;
    let mut collections: Vec<&str> = cfg
        .tables
        .iter()
        .filter(|_| direct)
        .map(|t| t.collection.as_str())
        .collect();
    collections.sort_unstable();
    collections.dedup();
    for c in collections {
        let newest = match retry_transient(
            "read newest positions",
            max_backoff,
            &shutdown,
            Duration::ZERO,
            || sink.learn_newest(c),
        )
        .await
        {
            Err(Error::Shutdown) => return Ok(()),
            other => other?,
        };
        tracing::info!(collection = c, newest = %Lsn(newest), "changes committed after this position are written without a fence");
    }
    // Kafka only: the appliers embed.
    let embedders = if direct {
        match crate::pipeline::embedding::Embedders::load_checked(
            &cfg,
            &sink,
            max_backoff,
            &shutdown,
        )
        .await
        {
            Err(Error::Shutdown) => return Ok(()),
            other => other?,
        }
    } else {
        crate::pipeline::embedding::Embedders::load(&[])?
    };
    // Loaded (an unreachable service shows at its first call: down until one succeeds).
    health.up("embedder");
    let pending = Pending::default();
    let writer = Writer {
        embedders: Arc::new(embedders),
        sink: sink.clone(),
        pending: pending.clone(),
        mappings: mappings.clone(),
        source: cfg.source.clone(),
        dead_letter: dead_letter.clone(),
        max_backoff,
        shutdown: writer_stop.clone(),
        publisher,
        direct,
        health: health.clone(),
    };
    if cfg.kafka.is_some() {
        // The producer connected and the topics exist (`publishing`).
        health.up("kafka");
    }
    let lag = Arc::new(crate::pipeline::lag::LagClock::default());
    let progress = crate::pipeline::writer::Progress::new(Box::new(checkpoint), durable_tx)
        .with_lag(lag.clone());
    let writer = tokio::spawn(writer.run(rx, progress));
    tokio::spawn(
        crate::pipeline::sampler::Sampler {
            cfg: cfg.clone(),
            durable: durable_rx.clone(),
            lag: lag.clone(),
            health: health.clone(),
            qdrant: direct.then(|| qdrant::client(&cfg.qdrant)).transpose()?,
        }
        .run(shutdown.clone()),
    );
    let copies_stop = shutdown.child_token();
    for _ in 0..cfg.source.snapshot_workers() {
        tokio::spawn(
            worker::Worker {
                coordinator: coordinator.clone(),
                source: cfg.source.clone(),
                dead_letter: dead_letter.clone(),
                max_backoff,
                shutdown: copies_stop.clone(),
                publish: topics.is_some(),
            }
            .run(),
        );
    }
    tokio::spawn(progress::report(coordinator.clone(), copies_stop.clone()));
    tokio::spawn(bulk::supervise(
        coordinator.clone(),
        qdrant::client(&cfg.qdrant)?,
        copies_stop.clone(),
    ));
    tokio::spawn(crate::rebuild::supervise(
        coordinator.clone(),
        mappings.clone(),
        sink,
        qdrant::client(&cfg.qdrant)?,
        copies_stop.clone(),
    ));

    let mut replicator = Replicator {
        source: cfg.source.clone(),
        binary,
        assembler: Assembler::new(
            mappings,
            cfg.qdrant.batch_size,
            Duration::from_millis(cfg.qdrant.linger_ms),
        )
        .with_topics(topics),
        batches: tx,
        pending,
        writer,
        durable: durable_rx,
        coordinator,
        dead_letter,
        max_backoff,
        shutdown: shutdown.clone(),
        lag,
        health,
    };
    let ended = replicator.run().await;
    copies_stop.cancel();

    // Shutdown: hand over what is buffered, let the writer finish, report the final position.
    let Replicator {
        mut assembler,
        batches: tx,
        mut writer,
        durable: durable_rx,
        ..
    } = replicator;
    // From here the writer's retries get the grace, no more (its sink may be down).
    writer_stop.cancel();
    if ended.outcome.is_ok() {
        if let Some(b) = assembler.take() {
            crate::pipeline::embedding::count_waiting(
                &crate::pipeline::embedding::waiting(&b.ops),
                1.0,
            );
            // No room within the grace: the writer is stuck; the batch is replayed next start.
            let _ = tokio::time::timeout(crate::pipeline::writer::SHUTDOWN_GRACE, tx.send(b)).await;
        }
    }
    drop(tx);
    let writer_result = if ended.writer_done {
        Ok(())
    } else {
        writer_ended((&mut writer).await)
    };
    let durable = *durable_rx.borrow();
    if let Some(mut c) = ended.client {
        // The transport reports progress on its status interval and not when stopping: wait
        // for the final position to go out so the slot does not lag the checkpoint.
        c.update_applied_lsn(durable);
        let reported = c.metrics();
        let wait = Duration::from_millis(cfg.source.status_interval_ms) + Duration::from_secs(2);
        let _ = tokio::time::timeout(wait, async {
            while reported.last_applied_lsn() < durable && c.is_running() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), c.shutdown()).await;
    }
    tracing::info!(durable = %durable, "stopped");
    ended.outcome.and(match writer_result {
        Err(Error::Shutdown) => Ok(()),
        other => other,
    })
}

/// Publish mode (`[kafka]`): each table's topic, created when missing, and the producer.
async fn publishing(
    cfg: &Config,
    mappings: &Mappings,
    max_backoff: Duration,
    shutdown: &CancellationToken,
) -> Result<
    (
        Option<Arc<crate::kafka::Topics>>,
        Option<Arc<crate::kafka::publish::Publisher>>,
    ),
    Error,
> {
    let Some(kafka) = &cfg.kafka else {
        return Ok((None, None));
    };
    let topics = crate::kafka::Topics::new(kafka, mappings.keys());
    let names: Vec<String> = topics.all().iter().map(|t| t.to_string()).collect();
    let publisher = retry_transient(
        "kafka set-up",
        max_backoff,
        shutdown,
        Duration::ZERO,
        || crate::kafka::publish::Publisher::start(kafka, &names),
    )
    .await?;
    tracing::info!(topics = ?names, direct = cfg.qdrant.direct, "publishing change events to Kafka");
    Ok((Some(Arc::new(topics)), Some(Arc::new(publisher))))
}
