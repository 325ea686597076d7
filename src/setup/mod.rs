//! Set-up that every mode shares, below the modes and the stages they wire: compiling the
//! `[[tables]]` against the database ([`compile`]), the run mode's source side ([`source`]),
//! the tables' collections ([`ensure_collections`]), Kafka topics and the producer
//! ([`publishing`]), rebuild requests and shadows ([`rebuild`]), the metrics endpoint
//! ([`serve_metrics`]) and task supervision ([`tasks`]).

pub mod compile;
pub mod rebuild;
pub mod source;
pub mod tasks;

pub use source::prepare;

use crate::checkpoint::state::StateFile;
use crate::config::{Config, SnapshotMode};
use crate::error::{retry_until_stopped, Error};
use crate::kafka::{publish::Publisher, Topics};
use crate::mapping::{Mappings, TableMapping};
use crate::metrics::names;
use crate::sink::qdrant::collections::{self, Ensured};
use std::sync::Arc;
use std::time::Duration;
use tasks::Tasks;
use tokio_util::sync::CancellationToken;

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
    if let (Some(state), Some(c)) = (copies, &copied) {
        recopy_into_missing(client, cfg, compiled, state, c).await?;
    }
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

/// A collection missing although tables writing it were copied before was deleted (under a
/// running connector, which stopped for it, or while none ran): every table writing it is
/// marked to be copied again *before* the collection is created, so the new collection gets
/// every row, not only the changes from now on, whatever fails between the creation and the
/// copy (a retried start finds the collection there and the mark already made).
async fn recopy_into_missing(
    client: &qdrant_client::Qdrant,
    cfg: &Config,
    compiled: &[TableMapping],
    state: &StateFile,
    copied: &crate::checkpoint::state::State,
) -> Result<(), Error> {
    if cfg.source.snapshot == SnapshotMode::Never {
        return Ok(());
    }
    let mut collections: Vec<&str> = cfg.tables.iter().map(|t| t.collection.as_str()).collect();
    collections.sort_unstable();
    collections.dedup();
    for collection in collections {
        let tables: Vec<crate::event::TableName> = cfg
            .tables
            .iter()
            .zip(compiled)
            .filter(|(t, m)| {
                t.collection == collection && copied.tables.contains_key(&m.table.to_string())
            })
            .map(|(_, m)| m.table.clone())
            .collect();
        if tables.is_empty() {
            continue;
        }
        let exists = client
            .collection_exists(collection)
            .await
            .map_err(Error::qdrant(format!("look up collection {collection}")))?;
        if !exists {
            tracing::warn!(collection, tables = ?tables.iter().map(ToString::to_string).collect::<Vec<_>>(), "the collection is missing and is created again; its tables are copied again");
            state.recopy_all(
                &tables,
                crate::checkpoint::state::CopyReason::CollectionRecreated,
            )?;
        }
    }
    Ok(())
}

/// Serves `/metrics`, `/healthz`, `/readyz`, `/wait` (with `waiters`) and `/status` (from
/// `status`, once filled) on `metrics.addr` (unless empty) until `shutdown`, as a task of `tasks`; `mode` labels the build info.
pub async fn serve_metrics(
    cfg: &Config,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    mode: crate::config::Mode,
    waiters: crate::metrics::wait::Waiters,
    status: Option<crate::metrics::status::StatusSlot>,
) -> Result<(), Error> {
    let handle = crate::metrics::server::install();
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "mode" => mode.as_str())
        .set(1.0);
    crate::metrics::series::register(cfg, mode);
    if cfg.metrics.addr.is_empty() {
        return Ok(());
    }
    let served = crate::metrics::server::serve(
        &cfg.metrics.addr,
        handle,
        crate::metrics::server::Endpoints {
            health: tasks.health().clone(),
            waiters,
            status,
        },
        shutdown.clone(),
    )
    .await;
    let (addr, server) = served.map_err(|e| {
        Error::config(
            "metrics.addr",
            format!("cannot listen on {}: {e}", cfg.metrics.addr),
        )
    })?;
    tasks.spawn_quiet("metrics server", server);
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz, /wait and /status");
    Ok(())
}

/// The direct path writes changes committed after the newest position a collection's points hold
/// without a fence: learns that position for each collection (retried until `shutdown`).
pub async fn learn_newest(
    cfg: &Config,
    sink: &crate::sink::qdrant::QdrantSink,
    max_backoff: Duration,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let mut collections: Vec<&str> = cfg.tables.iter().map(|t| t.collection.as_str()).collect();
    collections.sort_unstable();
    collections.dedup();
    for c in collections {
        let newest = retry_until_stopped("read newest positions", max_backoff, shutdown, || {
            sink.learn_newest(c)
        })
        .await?;
        tracing::info!(collection = c, newest = %crate::lsn::Lsn(newest), "changes committed after this position are written without a fence");
    }
    Ok(())
}

/// Publish mode (`[kafka]`): each table's topic, created when missing, and the producer.
pub async fn publishing(
    cfg: &Config,
    mappings: &Mappings,
    max_backoff: Duration,
    shutdown: &CancellationToken,
) -> Result<(Option<Arc<Topics>>, Option<Arc<Publisher>>), Error> {
    let Some(kafka) = &cfg.kafka else {
        return Ok((None, None));
    };
    let topics = Topics::new(kafka, mappings.keys());
    let names: Vec<String> = topics.all().iter().map(|t| t.to_string()).collect();
    let publisher = retry_until_stopped("kafka set-up", max_backoff, shutdown, || {
        Publisher::start(kafka, &names)
    })
    .await?;
    tracing::info!(topics = ?names, direct = cfg.qdrant.direct, "publishing change events to Kafka");
    Ok((Some(Arc::new(topics)), Some(Arc::new(publisher))))
}
