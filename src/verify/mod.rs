//! `pg2qdrant verify [--repair]`: every row against its point, in pages (memory stays bounded).
//!
//! ```text
//!  S = pg_current_wal_lsn(); wait for transactions running then; one REPEATABLE READ snapshot
//!  wait until the slot confirmed everything up to the snapshot (the connector caught up)
//!  rows pass:    cursor over the table ─▶ map each row ─▶ get its point ─▶ missing / stale
//!  orphans pass: scroll the table's points ─▶ look their keys up in the snapshot ─▶ orphaned
//! ```
//!
//! A point whose stored position is at or after `S` changed while the check ran: it is skipped
//! (counted), never reported as drift. A row without a point is looked up again outside the
//! snapshot (a delete applied meanwhile is not drift). Repairs are fenced at position `(S, 0)`:
//! they replace only points older than every change the snapshot may not show, so a repair
//! never overwrites a newer streamed change. After a repair the table is verified again.

pub mod compare;
mod orphans;
pub mod replay;
mod rows;
pub mod sweep;

use crate::config::{Config, TableConfig};
use crate::error::Error;
use crate::event::{Op, PointKey, TableName};
use crate::lsn::{Lsn, Position};
use crate::mapping::TableMapping;
use crate::pipeline::embedding::{Embedders, Pass, Reuse};
use crate::sink::qdrant::{self, QdrantSink};
use crate::sink::Sink;
use crate::source::catalog::Catalog;
use crate::source::chunk::TableLayout;
use qdrant_client::qdrant::{point_id::PointIdOptions, PointId};

use serde_json::Value;
use std::time::Duration;

const PAGE: usize = 500;
const SAMPLES: usize = 10;
/// How long verify waits for the connector to apply what its snapshot shows.
const CATCH_UP: Duration = Duration::from_secs(30);

pub use crate::report::TableReport;

/// Verifies (and with `repair`, fixes then re-verifies) the config's tables, or `only`.
pub async fn run(
    cfg: &Config,
    only: Option<&str>,
    repair: bool,
) -> Result<Vec<TableReport>, Error> {
    let tables: Vec<&TableConfig> = match only {
        Some(t) => cfg.tables_named("--table", t)?,
        None => cfg.tables.iter().collect(),
    };
    let owned: Vec<TableConfig> = tables.iter().map(|t| (*t).clone()).collect();
    let (session, mappings) = Session::open(cfg, &owned, repair).await?;
    let mut out = Vec::new();
    for (t, mapping) in tables.into_iter().zip(mappings) {
        let mut report = verify_table(cfg, &session, t, &mapping, repair, None).await?;
        if repair && report.drift() > 0 {
            let repaired = report.drift();
            report = verify_table(cfg, &session, t, &mapping, false, None).await?;
            report.repaired = repaired;
        }
        report.checked_at = chrono::Utc::now().timestamp();
        out.push(report);
    }
    // The running connector exports the last result (see `report::export_last`).
    crate::report::store(&cfg.checkpoint.verify_path(), &out)?;
    Ok(out)
}

/// `dead-letter replay`: repairs the rows of `t` with these `keys` (fenced, like `verify
/// --repair`, at a position above every change committed before it started), checks them again,
/// and says for each key whether its row now maps (`Ok`; also when the row is gone: nothing to
/// apply) or why not. The second check's report comes back too: drift 0 means every mappable
/// row's point is right.
pub async fn repair_keys(
    cfg: &Config,
    t: &TableConfig,
    keys: &[Value],
) -> Result<(TableReport, Vec<Result<(), String>>), Error> {
    let (session, mut mappings) = Session::open(cfg, std::slice::from_ref(t), true).await?;
    let mapping = mappings.remove(0);
    verify_table(cfg, &session, t, &mapping, true, Some(keys)).await?;
    let report = verify_table(cfg, &session, t, &mapping, false, Some(keys)).await?;
    // The check mapped every row of those keys that still exists: a key it did not reject
    // maps now, or its row is gone (nothing to apply).
    let outcomes = keys
        .iter()
        .map(
            |k| match report.unmappable_reasons.iter().find(|(u, _)| u == k) {
                Some((_, reason)) => Err(reason.clone()),
                None => Ok(()),
            },
        )
        .collect();
    Ok((report, outcomes))
}

fn sample(list: &mut Vec<Value>, key: Value) {
    if list.len() < SAMPLES {
        list.push(key);
    }
}

/// One table's check: its connections, mapping and layout, and the check's fence: points at
/// or after `fence` changed while it ran and are not compared; repairs are written at `fence`.
pub(crate) struct Check<'a> {
    /// Holds the check's REPEATABLE READ snapshot (and its row cursor).
    pub catalog: &'a Catalog,
    /// Reads the present, outside the snapshot.
    pub present: &'a Catalog,
    pub sink: &'a QdrantSink,
    pub embedders: &'a Embedders,
    /// Model identity by embedder name.
    pub identities: &'a std::collections::HashMap<String, String>,
    pub config: &'a TableConfig,
    pub mapping: &'a TableMapping,
    pub layout: TableLayout,
    pub fence: Position,
    pub repair: bool,
    /// Only the rows with these keys (`TableMapping::key_json` objects; `dead-letter replay`).
    pub keys: Option<&'a [Value]>,
    /// The orphans pass reads only points older than `fence` (a copy's sweep: Qdrant filters,
    /// and `points` counts only those).
    pub older_only: bool,
}

impl Check<'_> {
    /// The points `ids` of the checked collection (payload; vectors when `vectors`).
    async fn points(
        &self,
        ids: Vec<PointId>,
        vectors: bool,
    ) -> Result<Vec<qdrant_client::qdrant::RetrievedPoint>, Error> {
        Ok(self
            .sink
            .client()
            .get_points(
                qdrant_client::qdrant::GetPointsBuilder::new(self.mapping.collection.as_ref(), ids)
                    .with_payload(true)
                    .with_vectors(vectors),
            )
            .await
            .map_err(Error::qdrant(format!(
                "read points of {}",
                self.mapping.collection
            )))?
            .result)
    }

    pub fn table(&self) -> &TableName {
        &self.mapping.table
    }

    pub fn pg(&self, what: &str) -> impl FnOnce(tokio_postgres::Error) -> Error {
        Error::pg(format!("verify {}: {what}", self.mapping.table))
    }

    /// Writes repairs when asked to (fenced like every write), embedding vectors computed from
    /// text first; a row whose text cannot be embedded is left out (logged).
    pub async fn repair(&self, ops: &[Op]) -> Result<(), Error> {
        if !self.repair || ops.is_empty() {
            return Ok(());
        }
        if !crate::pipeline::embedding::pending(ops) {
            return self.sink.write(ops).await.map(drop);
        }
        let mut ops = ops.to_vec();
        // verify compared the sparse vectors with the row's: they may be what drifted.
        let pass = Pass::new(self.embedders, Reuse::DenseOnly);
        for (_, reason) in pass.run(self.sink, &mut ops).await? {
            tracing::warn!(table = %self.mapping.table, reason = %reason, "repair left out: its text cannot be embedded");
        }
        self.sink.write(&ops).await.map(drop)
    }
}

/// What a verify (or a replay) works with: the check's connection (its snapshot), a second one
/// reading the present, the sink, and the embedders repairs need.
struct Session {
    catalog: Catalog,
    present: Catalog,
    sink: QdrantSink,
    embedders: Embedders,
    /// Model identity by embedder name: what computed vectors must have been embedded with
    /// (their points record it).
    identities: std::collections::HashMap<String, String>,
}

impl Session {
    /// Opens it and compiles `tables`; embedders are loaded only to `repair`.
    async fn open(
        cfg: &Config,
        tables: &[TableConfig],
        repair: bool,
    ) -> Result<(Self, Vec<TableMapping>), Error> {
        let catalog = Catalog::connect(&cfg.source).await?;
        catalog.set_copy_session().await?;
        let mappings = crate::setup::compile::compile(&catalog, tables, &cfg.embedders).await?;
        // A second connection reads the present while the check's snapshot is open on the first.
        let present = Catalog::connect(&cfg.source).await?;
        let sink = QdrantSink::new(qdrant::client(&cfg.qdrant)?)?;
        // Repairs of vectors computed from text are embedded like the connector's writes.
        let embedders = if repair && !cfg.embedders.is_empty() {
            Embedders::load_blocking(&cfg.embedders).await?
        } else {
            Embedders::default()
        };
        let identities = crate::embed::record::identities(&cfg.embedders)?;
        Ok((
            Session {
                catalog,
                present,
                sink,
                embedders,
                identities,
            },
            mappings,
        ))
    }
}

async fn verify_table(
    cfg: &Config,
    session: &Session,
    t: &TableConfig,
    mapping: &TableMapping,
    repair: bool,
    keys: Option<&[Value]>,
) -> Result<TableReport, Error> {
    let Session {
        catalog,
        present,
        sink,
        embedders,
        identities,
    } = session;
    let table = &mapping.table;
    let mut r = TableReport {
        table: table.to_string(),
        collection: mapping.collection.to_string(),
        ..Default::default()
    };
    let layout = catalog.layout(table, &mapping.key).await?;
    // Repairs are written at their check's start: this check's start must lie above them, or
    // it would skip the points it should verify as "changed during the check".
    catalog.advance_wal().await?;
    let start = catalog.wal_insert_lsn().await?;
    catalog.wait_running_transactions().await?;
    let check = Check {
        catalog,
        present,
        sink,
        embedders,
        identities,
        config: t,
        mapping,
        layout,
        fence: Position {
            commit_lsn: start.as_u64(),
            seq: 0,
        },
        repair,
        keys,
        older_only: false,
    };
    catalog
        .client()
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(check.pg("begin"))?;
    let result = async {
        check.open_cursor().await?;
        // A replay of some rows writes them as they are now whatever the connector applied.
        r.lagging = keys.is_none() && !catch_up(catalog, &cfg.source.slot).await?;
        if r.lagging {
            tracing::warn!(table = %table, "the connector has not applied everything this check sees (not running, or lagging): missing and stale counts may include changes not applied yet");
        }
        check.rows(&mut r).await?;
        if keys.is_some() {
            // Some rows only: every other point would look orphaned.
            return Ok(());
        }
        check.orphans(&mut r).await
    }
    .await;
    // The check's snapshot must end here: a failed ROLLBACK would leave the next table's
    // BEGIN inside it (PostgreSQL only warns), comparing against old rows.
    let rollback = catalog.client().batch_execute("ROLLBACK").await;
    result?;
    rollback.map_err(Error::pg(
        "end the check's snapshot (ROLLBACK); run verify again",
    ))?;
    if repair {
        r.repaired = r.drift();
    }
    Ok(r)
}

/// Waits until the slot confirmed the current WAL position (bounded); false if it did not.
async fn catch_up(catalog: &Catalog, slot: &str) -> Result<bool, Error> {
    let target = catalog.current_wal_lsn().await?;
    let deadline = std::time::Instant::now() + CATCH_UP;
    loop {
        let confirmed = catalog
            .slot_info(slot)
            .await?
            .and_then(|s| s.confirmed_flush)
            .unwrap_or(Lsn(0));
        if confirmed >= target {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn op_key(op: &Op) -> &PointKey {
    match op {
        Op::Upsert { doc, .. } | Op::Merge { doc, .. } => &doc.key,
        Op::Delete { key, .. } | Op::DeleteChunks { anchor: key, .. } => key,
        Op::Truncate { .. } => unreachable!("inserts map to upserts or deletes"),
    }
}

pub(crate) use crate::sink::qdrant::mapping::stored_position;

/// The key of a point Qdrant returned. An id that is neither a number nor a UUID is an error
/// (deleting a guessed id, the nil UUID or 0, would hit another point).
fn point_key(collection: &str, id: &PointId) -> Result<PointKey, Error> {
    match &id.point_id_options {
        Some(PointIdOptions::Num(n)) => Ok(PointKey::Num(*n)),
        Some(PointIdOptions::Uuid(u)) => u.parse().map(PointKey::Uuid).map_err(|e| {
            Error::prerequisite(
                format!(
                    "collection {collection} returned point id {u:?}, which is not a UUID ({e})"
                ),
                "inspect that point in Qdrant; verify cannot repair it",
            )
        }),
        None => Err(Error::prerequisite(
            format!("collection {collection} returned a point without an id"),
            "check the Qdrant server's version against the client's; verify cannot repair it",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_id_that_is_not_a_key_is_an_error_not_a_guess() {
        let uuid = |u: &str| PointId {
            point_id_options: Some(PointIdOptions::Uuid(u.into())),
        };
        assert_eq!(
            point_key("c", &PointId::from(7u64)).unwrap(),
            PointKey::Num(7)
        );
        let good = "6f1c0ab4-3c1e-4a59-9b8e-0e0c5a1f2d3e";
        assert_eq!(
            point_key("c", &uuid(good)).unwrap(),
            PointKey::Uuid(good.parse().unwrap())
        );
        let bad = point_key("c", &uuid("not-a-uuid")).unwrap_err();
        assert!(bad.to_string().contains("not-a-uuid"), "{bad}");
        let none = point_key(
            "c",
            &PointId {
                point_id_options: None,
            },
        )
        .unwrap_err();
        assert!(none.to_string().contains("without an id"), "{none}");
    }
}
