//! Where a batch becomes durable: the seam between the writer (order and acks) and the sinks.
//!
//! The writer (`writer`) decides *when* a batch is written and *when* its progress may be told;
//! a [`Destination`] decides *how* it becomes durable. Two are real: `to_qdrant` (TOAST merges
//! read back, text embedded, fenced writes, op-by-op isolation of a bad row) and `to_kafka`
//! (change events published, a refused event dead-lettered). A `Fanout` puts them side by side
//! as `[kafka]` and `qdrant.direct` ask (`fanout`); the writer's unit tests put an in-memory one in their
//! place.

use super::assemble::Batch;
use crate::error::Error;
use std::future::Future;

/// Makes batches durable.
///
/// Contract:
/// - **Who calls, and how concurrently.** The writer, with batches in commit order, up to
///   `qdrant.parallel` of them at once (1–16, default 2). Two batches in flight never touch the
///   same row, and a batch with a truncate or a TOAST merge is in flight alone
///   (`writer`'s conflict sets); `writer/tests.rs` holds the writer to both.
/// - **What `Ok` means.** Everything the batch carries for this destination is durable (it
///   survives a crash of the service holding it). Only then may the batch's progress be told.
/// - **What `Err` means.** The batch could not be made durable and will not be: the writer ends
///   without acknowledging it, so a restart replays it. Transient failures (an outage, a
///   refused key) are retried inside `land`, for as long as it takes, and never park anything;
///   rows that are bad for good are parked in the dead-letter file and count as landed.
///   After shutdown was requested, retries give up after `retrying::SHUTDOWN_GRACE` with
///   [`Error::Shutdown`].
/// - **What may be repeated.** A batch may be landed again (after a restart, or part of it
///   after a failed attempt). In Qdrant every write is idempotent and fenced by its position,
///   so a replay never regresses a point; to Kafka delivery is at least once (an event may be
///   published twice) and the consumers fence by the position each event carries.
pub trait Destination: Send + Sync + 'static {
    /// Makes `batch` durable here (see the trait's contract).
    fn land(&self, batch: Batch) -> impl Future<Output = Result<(), Error>> + Send;
}
