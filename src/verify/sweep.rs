//! The copy's closing sweep where Qdrant is written from Kafka (`apply`, `qdrant.direct =
//! false`).
//!
//! # What the sweep must remove, and why not more
//!
//! A copy (resync, re-copy after a lost slot) that started at position `S` rewrites every row
//! that exists at or after `S`: its chunk's READ event, or a streamed change, both positioned
//! after `S`. Points older than `S` therefore belong to rows deleted while no change could be
//! seen (a lost slot) or before the copy. On the direct path the sweep is a fenced delete of
//! every point of the table older than `S`, written after the last chunk by the one writer
//! that wrote every chunk before it.
//!
//! With Kafka the events of one table are spread over partitions, each applied by its owner at
//! its own pace, and the sweep is published to every partition after the table's last READ.
//! When the owner of partition `p` reaches it, every READ of `p` is applied, but another
//! partition may still hold READs of live rows whose points are older than `S`: deleting every
//! point older than `S` there would make live rows vanish from search until that partition
//! catches up. So an applier removes only points older than `S` **whose row does not exist
//! now** (looked up in PostgreSQL by the key each point stores), each delete fenced at `S`:
//!
//! - a point older than `S` whose row exists is left: its row was copied or changed after
//!   `S`, and that event, in its own partition, replaces the point;
//! - a point older than `S` whose row is gone is deleted; if the row existed after `S` and was
//!   deleted since, its delete event follows its READ in the row's one partition, so an older
//!   READ applied after the sweep brings the point back only until that delete is applied;
//! - a point rewritten after `S` meanwhile keeps its newer position, and the fence spares it.
//!
//! Every partition's copy of the sweep does the same idempotent pass (the first removes the
//! orphans; the later ones find none or fewer). Points written without a stored key by a
//! release before keys were stored are left (`verify --repair` removes them).

use super::{Check, TableReport};
use crate::config::{Config, TableConfig};
use crate::error::Error;
use crate::lsn::Position;
use crate::mapping::TableMapping;
use crate::pipeline::embedding::Embedders;
use crate::sink::qdrant::QdrantSink;
use crate::source::catalog::Catalog;

/// Removes the points of `mapping`'s table older than `before` whose row no longer exists
/// (see the module doc). Returns how many were removed.
pub async fn sweep(
    cfg: &Config,
    sink: &QdrantSink,
    table: &TableConfig,
    mapping: &TableMapping,
    before: Position,
) -> Result<u64, Error> {
    // Autocommit: each lookup reads the present, not a snapshot.
    let catalog = Catalog::connect(&cfg.source).await?;
    let layout = catalog.layout(&mapping.table, &mapping.key).await?;
    let embedders = Embedders::default();
    let identities = Default::default();
    let check = Check {
        catalog: &catalog,
        present: &catalog,
        sink,
        embedders: &embedders,
        identities: &identities,
        config: table,
        mapping,
        layout,
        fence: before,
        repair: true,
        keys: None,
        older_only: true,
    };
    let mut r = TableReport::default();
    check.orphans(&mut r).await?;
    Ok(r.orphaned)
}
