//! Durable progress: the LSN up to which every change is durable in the sink ([`FileCheckpoint`]),
//! and the copy state ([`state`]: which tables are copied, their chunks, rebuilds in progress).

mod file;
pub mod state;

pub use file::{write_atomically, FileCheckpoint};

use crate::error::Error;
use crate::lsn::Lsn;

/// Where progress is kept.
///
/// Contract: called from one task at a time. `store` is called only with an LSN whose changes
/// (and those of every earlier transaction) are durable in every sink; Ok means the LSN survives
/// a crash. Stored progress never moves backwards: storing an older LSN is a no-op.
pub trait CheckpointStore: Send + Sync {
    /// The stored LSN, `None` when nothing was stored yet.
    fn load(&self) -> Result<Option<Lsn>, Error>;
    fn store(&mut self, lsn: Lsn) -> Result<(), Error>;
}
