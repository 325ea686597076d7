//! The run mode's source side: prerequisites (`wal_level`), the compiled mappings, the value
//! format, the publication and the slot, the tables' collections (with the shadows of rebuilds
//! in progress), and where the stream resumes.

use crate::checkpoint::state::{State, StateFile};
use crate::config::Config;
use crate::error::Error;
use crate::event::TableName;
use crate::lsn::Lsn;
use crate::mapping::Mappings;
use crate::sink::qdrant;
use crate::source::catalog::Catalog;

/// What the source set-up found.
pub struct Source {
    pub mappings: Mappings,
    /// The stream carries binary values (`source::format`).
    pub binary: bool,
    /// Where the slot resumes: its confirmed position (a fresh slot's creation point). The
    /// stream cannot start before it, so durable progress starts there too.
    pub resume: Lsn,
}

/// Checks prerequisites, creates what is missing, and compiles the table mappings.
pub async fn prepare(cfg: &Config) -> Result<Mappings, Error> {
    let (cfg, state) = super::rebuild::prepare(cfg.clone())?;
    connect(&cfg, &state, false).await.map(|s| s.mappings)
}

/// [`prepare`]; `had_progress`: the checkpoint shows the connector streamed before, so a
/// missing slot means lost changes (see `Catalog::ensure_slot`).
/// `current`: the snapshot state, for rebuilds in progress (`cfg` already writes their new
/// collections, see `rebuild::prepare`).
pub async fn connect(cfg: &Config, current: &State, had_progress: bool) -> Result<Source, Error> {
    let catalog = Catalog::connect(&cfg.source).await?;
    let level = catalog.wal_level().await?;
    if level != "logical" {
        return Err(Error::prerequisite(
            format!("wal_level is {level}"),
            "set wal_level = logical in postgresql.conf and restart PostgreSQL",
        ));
    }
    let mut compiled = super::compile::compile(&catalog, &cfg.tables, &cfg.embedders).await?;
    let binary = crate::source::format::choose(&catalog, cfg.source.format, &compiled).await?;
    let names: Vec<_> = cfg
        .tables
        .iter()
        .map(|t| TableName::parse(&t.table))
        .collect();
    let mut filtered = Vec::with_capacity(names.len());
    for (i, (t, name)) in cfg.tables.iter().zip(&names).enumerate() {
        let filter = catalog.row_filter(i, t).await?;
        if let Some(f) = &filter {
            // The filter's columns are needed too (`mapping::schema`).
            let m = &mut compiled[i];
            m.need_filter_columns(&f.columns);
            m.pin_types(&catalog.column_shapes(name).await?);
        }
        filtered.push((name.clone(), filter));
    }
    catalog
        .ensure_publication(
            &cfg.source.publication,
            &filtered,
            cfg.source.create_publication,
        )
        .await?;
    catalog
        .ensure_slot(
            &cfg.source.slot,
            cfg.source.create_slot,
            had_progress,
            cfg.source.snapshot_on_slot_loss,
            || {
                StateFile::new(&cfg.checkpoint.snapshot_path())
                    .recopy_all(&names, crate::checkpoint::state::CopyReason::SlotLost)
            },
        )
        .await?;
    let resume = catalog
        .slot_info(&cfg.source.slot)
        .await?
        .and_then(|s| s.confirmed_flush)
        .unwrap_or(Lsn(0));
    // Kafka only (`qdrant.direct = false`): `pg2qdrant apply` owns the collections.
    if cfg.qdrant.direct {
        let client = qdrant::client(&cfg.qdrant)?;
        let state = StateFile::new(&cfg.checkpoint.snapshot_path());
        super::ensure_collections(&client, cfg, &compiled, Some(&state)).await?;
        super::rebuild::attach_shadows(cfg, current, &catalog, &client, &mut compiled).await?;
    }
    Ok(Source {
        mappings: compiled.into_iter().map(|m| (m.table.clone(), m)).collect(),
        binary,
        resume,
    })
}
