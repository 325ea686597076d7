//! Copying existing rows while streaming: one mechanism for the initial copy, its resume after a
//! stop, and the online resync of a table.
//!
//! # The design: chunked copy between watermarks (DBLog / Flink CDC incremental snapshots)
//!
//! A table's copy starts at a position `S` (a WAL position at least as new as where the stream
//! resumes; for a resync, the commit of the request message) and cuts the table into chunks
//! of heap pages. Per chunk, a worker:
//!
//! ```text
//!   1. emits LOW  (pg_logical_emit_message, transactional, committed)
//!   2. waits until every transaction running at that moment has ended
//!   3. reads the chunk's rows (one statement, one snapshot)
//!   4. emits HIGH
//! stream:  ... changes ... LOW ... changes in the window ... HIGH(commit H) ... later changes
//!                               └─ keys recorded ───────────┘  chunk rows written at (H, i)
//! ```
//!
//! The stream is the only writer of order: when HIGH arrives, the chunk's rows become upserts
//! positioned in HIGH's transaction, minus every key a streamed change touched between LOW and
//! HIGH (a TRUNCATE in the window drops the chunk). They enter the same batches, the same
//! in-order writer and the same position fences as streamed changes.
//!
//! **No older row comes back.** A copied row is the row's state in the chunk's snapshot. Every
//! change visible to that snapshot committed before HIGH (the read ends before HIGH is
//! emitted). Take a change `c` of a row the chunk holds. (a) `c` committed before LOW: step 2
//! makes it visible to the snapshot, so the chunk holds `c` or newer. Without step 2 a
//! transaction whose commit record precedes LOW but which is not yet visible would be missed by
//! both the chunk and the window. (b) `c` committed between LOW and HIGH: its key is in the
//! window and the chunk's row is dropped; the stream writes `c`. (c) `c` committed after HIGH:
//! its position is above `H`, it is written after the chunk, and a replay of the chunk cannot
//! pass the fence over it. So every point ends at the newest state, whatever the interleaving.
//!
//! **No committed row is missed.** A row whose last change committed after `S` reaches Qdrant
//! through the stream (the stream covers everything after `S`). A row unchanged since `S` keeps
//! its heap page (only an UPDATE moves a row; VACUUM FULL, CLUSTER and TRUNCATE rewrite the
//! table: a chunk read checks the table's file under its lock and the copy is planned again)
//! and the last chunk is open-ended, so exactly one chunk reads it, and its key is not in that
//! chunk's window (it did not change).
//!
//! **No ghosts.** After the last chunk, the stream adds a sweep: delete the table's points whose
//! position is older than `S`. Every live row's point was rewritten after `S` (by its chunk or by
//! the stream), so what is older than `S` belongs to rows deleted before or during the copy
//! (a resync's orphans). Rows that could not be mapped are dead-lettered; their old points are
//! swept too.
//!
//! **Resumable.** A chunk counts as done when the stream's durable LSN passes its HIGH; the
//! state file lists done chunks (atomic, fsynced). After a crash the stream replays from the
//! checkpoint, the copy keeps its `S` and its plan, and only unfinished chunks are read again.
//! A resync request is saved as soon as the stream sees it, before anything after it can be
//! acknowledged.
//!
//! Parallel workers each hold one chunk; windows of concurrent chunks are independent. The
//! price: a long-running transaction holds step 2 up (logged), and a row updated during the
//! copy is written twice (copy, then stream) or once (dropped from its chunk).

pub mod bulk;
pub mod coordinator;
pub mod progress;
pub mod switch;
pub mod window;
pub mod worker;

pub use coordinator::Coordinator;

use crate::config::Config;
use crate::error::Error;
use crate::event::TableName;
use crate::lsn::Lsn;

/// `pg2qdrant resync`: asks the connector of `cfg`'s slot to copy `table` again while it keeps
/// streaming, through the WAL (ordered with the data, durable, no extra port): every row, or
/// with `condition` only the rows matching it (checked first, see `source::condition`). With no
/// connector running, the next start takes the request. Returns the request's LSN and, for a
/// condition, the rows matching it now.
pub async fn request_resync(
    cfg: &Config,
    table: &str,
    condition: Option<&str>,
) -> Result<(Lsn, Option<u64>), Error> {
    let name = TableName::parse(table);
    let filter = cfg.tables_named("--table", table)?[0].row_filter.clone();
    let catalog = crate::source::catalog::Catalog::connect(&cfg.source).await?;
    let matching = match condition {
        Some(c) => Some(catalog.matching_rows(&name, filter.as_deref(), c).await?),
        None => None,
    };
    if catalog.slot_info(&cfg.source.slot).await?.is_none() {
        return Err(Error::prerequisite(
            format!("slot {} does not exist", cfg.source.slot),
            "start the connector first (`pg2qdrant run`): its first start copies every table anyway",
        ));
    }
    let at = catalog
        .emit(&crate::source::control::Control::Resync {
            slot: cfg.source.slot.clone(),
            table: name.to_string(),
            condition: condition.map(str::to_owned),
        })
        .await?;
    Ok((at, matching))
}
