//! Wiring: set-up, the replication loop, the writer task, shutdown.
//!
//! One [`CancellationToken`] stops everything: the loop stops taking changes, hands what it
//! buffered to the writer, the writer finishes (or, with Qdrant down, abandons after a grace
//! period) and stores the checkpoint, and the last durable LSN is reported to the slot.

use crate::checkpoint::{CheckpointStore, FileCheckpoint};
use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::error::{retry_transient, Backoff, Disposition, Error};
use crate::lsn::Lsn;
use crate::mapping::TableMapping;
use crate::metrics::names;
use crate::pipeline::assemble::{Assembler, Batch, Mappings};
use crate::pipeline::writer::Writer;
use crate::sink::qdrant::{self, collections, QdrantSink};
use crate::source::catalog::Catalog;
use crate::source::stream;
use pgwire_replication::{ReplicationClient, ReplicationEvent};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Batches queued between the replication loop and the writer (bounds memory).
const WRITER_QUEUE: usize = 4;
/// How often replication lag is sampled.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// Checks prerequisites, creates what is missing, and compiles the table mappings.
pub async fn prepare(cfg: &Config) -> Result<Mappings, Error> {
    let catalog = Catalog::connect(&cfg.source).await?;
    let level = catalog.wal_level().await?;
    if level != "logical" {
        return Err(Error::prerequisite(
            format!("wal_level is {level}"),
            "set wal_level = logical in postgresql.conf and restart PostgreSQL",
        ));
    }
    let keys = catalog.resolve_keys(&cfg.tables).await?;
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
        .ensure_slot(&cfg.source.slot, cfg.source.create_slot)
        .await?;
    let client = qdrant::client(&cfg.qdrant)?;
    for (i, t) in cfg.tables.iter().enumerate() {
        collections::ensure(&client, i, t).await?;
    }
    Ok(cfg
        .tables
        .iter()
        .zip(keys)
        .map(|(t, k)| {
            let m = TableMapping::new(t, k);
            (m.table.clone(), m)
        })
        .collect())
}

/// Runs the connector until `shutdown` is cancelled (Ok) or a definite error stops it.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let handle = crate::metrics::server::install();
    if !cfg.metrics.addr.is_empty() {
        let addr = crate::metrics::server::serve(&cfg.metrics.addr, handle, shutdown.clone())
            .await
            .map_err(|e| {
                Error::config(
                    "metrics.addr",
                    format!("cannot listen on {}: {e}", cfg.metrics.addr),
                )
            })?;
        tracing::info!(%addr, "serving /metrics and /healthz");
    }
    let max_backoff = Duration::from_millis(cfg.qdrant.max_backoff_ms);
    let mappings = match retry_transient("set-up", max_backoff, &shutdown, Duration::ZERO, || {
        prepare(&cfg)
    })
    .await
    {
        Err(Error::Shutdown) => return Ok(()),
        other => Arc::new(other?),
    };
    let checkpoint = FileCheckpoint::open(&cfg.checkpoint.path)?;
    let start = checkpoint.load()?.unwrap_or(Lsn(0));
    tracing::info!(start = %start, slot = %cfg.source.slot, tables = mappings.len(), "starting replication");

    let dead_letter = Arc::new(Mutex::new(DeadLetter::new(&cfg.dead_letter.path)));
    let (durable_tx, mut durable_rx) = watch::channel(start);
    let (tx, rx) = mpsc::channel::<Batch>(WRITER_QUEUE);
    let writer_stop = CancellationToken::new();
    let writer = Writer {
        sink: Arc::new(QdrantSink::new(qdrant::client(&cfg.qdrant)?)),
        mappings: mappings.clone(),
        source: cfg.source.clone(),
        dead_letter: dead_letter.clone(),
        max_backoff,
        shutdown: writer_stop.clone(),
    };
    let progress = crate::pipeline::writer::Progress::new(Box::new(checkpoint), durable_tx);
    let mut writer = tokio::spawn(writer.run(rx, progress));
    tokio::spawn(lag_sampler(
        cfg.clone(),
        durable_rx.clone(),
        shutdown.clone(),
    ));

    let mut assembler = Assembler::new(
        mappings,
        cfg.qdrant.batch_size,
        Duration::from_millis(cfg.qdrant.linger_ms),
    );
    let mut backoff = Backoff::new(max_backoff);
    let mut client: Option<ReplicationClient> = None;
    let mut dead = Vec::new();
    let mut writer_done = false;
    let outcome: Result<(), Error> = 'outer: loop {
        if shutdown.is_cancelled() {
            break Ok(());
        }
        let from = *durable_rx.borrow();
        let c = match stream::connect(&cfg.source, from).await {
            Ok(c) => c,
            Err(e) if e.disposition() == Disposition::Transient => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, hint = e.hint().unwrap_or(""), retry_in_ms = delay.as_millis() as u64, "replication connect failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
            Err(e) => break Err(e),
        };
        metrics::counter!(names::REPLICATION_CONNECTS).increment(1);
        tracing::info!(from = %from, "replication stream open");
        let c = client.insert(c);
        c.update_applied_lsn(from);
        loop {
            let deadline = assembler.deadline();
            let linger = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break 'outer Ok(()),
                res = &mut writer => { writer_done = true; break 'outer writer_ended(res) }
                Ok(()) = durable_rx.changed() => c.update_applied_lsn(*durable_rx.borrow_and_update()),
                _ = linger => {
                    if let Some(b) = assembler.take() {
                        if tx.send(b).await.is_err() { writer_done = true; break 'outer writer_ended((&mut writer).await) }
                    }
                }
                ev = c.recv() => {
                    let ev = match ev {
                        Ok(Some(ev)) => ev,
                        Ok(None) => { tracing::warn!("replication stream ended; reconnecting"); break }
                        Err(e) => {
                            let e = Error::replication("stream")(e);
                            if e.disposition() == Disposition::Definite { break 'outer Err(e) }
                            tracing::warn!(error = %e, hint = e.hint().unwrap_or(""), "replication stream broke; reconnecting");
                            break;
                        }
                    };
                    backoff.reset();
                    let full = match ev {
                        ReplicationEvent::Begin { final_lsn, commit_time_micros, .. } => { assembler.begin(final_lsn, commit_time_micros); None }
                        ReplicationEvent::XLogData { data, .. } => match assembler.data(&data, &mut dead) {
                            Ok(b) => b,
                            Err(e) => break 'outer Err(e),
                        },
                        ReplicationEvent::Commit { end_lsn, .. } => { assembler.commit(end_lsn); None }
                        ReplicationEvent::KeepAlive { wal_end, .. } => { assembler.keepalive(wal_end); None }
                        _ => None,
                    };
                    for (e, lsn) in dead.drain(..) {
                        if let Err(err) = dead_letter.lock().expect("dead-letter lock").row(&e, lsn) {
                            break 'outer Err(err);
                        }
                    }
                    if let Some(b) = full {
                        if tx.send(b).await.is_err() { writer_done = true; break 'outer writer_ended((&mut writer).await) }
                    }
                }
            }
        }
        assembler.reset_stream();
        if let Some(mut c) = client.take() {
            c.abort();
        }
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    };

    // Shutdown: hand over what is buffered, let the writer finish, report the final position.
    if outcome.is_ok() {
        if let Some(b) = assembler.take() {
            let _ = tx.send(b).await;
        }
    }
    drop(tx);
    writer_stop.cancel();
    let writer_result = if writer_done {
        Ok(())
    } else {
        writer_ended((&mut writer).await)
    };
    let durable = *durable_rx.borrow();
    if let Some(mut c) = client.take() {
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
    outcome.and(match writer_result {
        Err(Error::Shutdown) => Ok(()),
        other => other,
    })
}

fn writer_ended(res: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    match res {
        Ok(r) => r,
        Err(e) => Err(Error::prerequisite(
            format!("writer task failed: {e}"),
            "this is a bug; please report it with the log",
        )),
    }
}

/// Samples `pg_current_wal_lsn() - durable` into the lag gauge.
async fn lag_sampler(cfg: Config, durable: watch::Receiver<Lsn>, shutdown: CancellationToken) {
    let mut catalog: Option<Catalog> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(LAG_EVERY) => {}
        }
        if catalog.is_none() {
            catalog = Catalog::connect(&cfg.source).await.ok();
        }
        let Some(c) = &catalog else { continue };
        match c.current_wal_lsn().await {
            Ok(now) => {
                let acked = *durable.borrow();
                metrics::gauge!(names::REPLICATION_LAG_BYTES)
                    .set(now.as_u64().saturating_sub(acked.as_u64()) as f64);
            }
            Err(_) => catalog = None,
        }
    }
}
