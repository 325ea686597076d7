//! Sinks: where ops become durable.

pub mod qdrant;

use crate::error::Error;
use crate::event::{Op, PointKey, Vectors};
use std::collections::HashMap;
use std::future::Future;

/// Upserts per collection a write left out as superseded (see [`Sink::write`]).
pub type Skipped = Vec<(std::sync::Arc<str>, u64)>;

/// A destination for ops.
///
/// Contract:
/// - **Who calls, and how concurrently.** The Qdrant destination (`pipeline::to_qdrant`) under
///   the writer (`pipeline::writer`, one per process) calls `write` with batches in commit order,
///   up to `qdrant.parallel` calls in flight at once (1–16, default 2); two calls in flight never
///   touch the same point (a truncate or a TOAST merge runs alone). `pipeline::writer`'s unit
///   tests hold the writer to both. Repairs
///   (`verify --repair`, dead-letter replay) call it from their own task while the connector
///   runs, fenced below every change they might not have seen. Implementations are shared
///   (`Send + Sync`) and must not assume one caller.
/// - **What may be repeated.** A call may be repeated (after a transient error) or replayed
///   (after a restart) with ops the sink already applied: every op must be idempotent and fenced
///   by its position, so replaying old ops never regresses newer data.
/// - **What `Ok` means.** Every op of the call is durable (it survives a crash of the sink), and
///   the returned [`Skipped`] says how many upserts per collection the fence left out because
///   their point already held that change or a later one (not counted as applied). Progress is
///   acknowledged to the slot only after `Ok`.
/// - **Errors** are classified by [`Error::disposition`]: transient ones are retried by the
///   caller with the same ops. A definite one that may be an op's own fault
///   ([`Error::blames_input`]) makes the caller write op by op and park only the ops that fail
///   alone (unless every op fails alone for one reason: then the sink refuses everything, an
///   outage, and nothing is parked); any other definite one fails the batch, unacknowledged.
pub trait Sink: Send + Sync + 'static {
    /// Makes `ops` durable (see the trait's contract).
    fn write(&self, ops: &[Op]) -> impl Future<Output = Result<Skipped, Error>> + Send;

    /// Which of `keys` have no point in `collection` (for TOAST merges that need a full row).
    fn missing(
        &self,
        collection: &str,
        keys: &[PointKey],
    ) -> impl Future<Output = Result<Vec<PointKey>, Error>> + Send;

    /// For the points of `keys` in `collection` that record what their vectors were embedded
    /// from: that record (`_pg2qdrant.embedded`, vector name → `{model, hash}`) and the stored
    /// vectors. A change whose text is unchanged keeps those vectors instead of embedding again.
    /// A read only: errors are retried by the caller like a write's.
    fn embedded(
        &self,
        collection: &str,
        keys: &[PointKey],
    ) -> impl Future<Output = Result<HashMap<PointKey, (serde_json::Value, Vectors)>, Error>> + Send;
}
