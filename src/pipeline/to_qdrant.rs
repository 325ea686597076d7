//! The Qdrant destination: a batch's ops made durable in a [`Sink`].
//!
//! ```text
//!   ops ─▶ TOAST merges read back (`toast`) ─▶ text embedded (`embedding`) ─▶ sink.write
//!            (retried while PostgreSQL is down)     (retried while the embedder is down)
//!                                                              │ refused for an op's sake
//!                                                              ▼
//!                                              op by op: only the op that fails alone is parked
//! ```
//!
//! A definite error that may be an op's own fault ([`Error::blames_input`]) falls back to op by
//! op, and only an op that fails alone is parked; any other definite error (a missing
//! collection) is the batch's `Err`, not acknowledged. When every op of a batch fails alone for
//! one and the same reason, the sink refuses everything (strict mode, a collection that no
//! longer matches the config), not these rows: that is an outage (nothing parked, `qdrant`
//! down, the batch tried again with backoff).

use super::assemble::Batch;
use super::destination::Destination;
use super::embedding::{Embedders, Pass, Reuse};
use super::retrying::Retrying;
use super::toast::SourceReads;
use crate::deadletter::DeadLetter;
use crate::error::{Backoff, Error};
use crate::event::Op;
use crate::lsn::Lsn;
use crate::mapping::Mappings;
use crate::metrics::names;
use crate::sink::{Sink, Skipped};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct ToQdrant<S: Sink> {
    pub sink: Arc<S>,
    pub mappings: Arc<Mappings>,
    /// Where TOAST merges read the rows they lack.
    pub reads: SourceReads,
    /// Vectors computed from text (see `embedding`).
    pub embedders: Arc<Embedders>,
    pub dead_letter: Arc<Mutex<DeadLetter>>,
    pub retrying: Retrying,
}

impl<S: Sink> Destination for ToQdrant<S> {
    async fn land(&self, batch: Batch) -> Result<(), Error> {
        let ops = batch.ops;
        if ops.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        // The merges below may become other ops: the gauge goes down by what went up.
        let waiting = super::embedding::waiting(&ops);
        let mut ops = self.merged(ops).await?;
        if super::embedding::pending(&ops) {
            self.embed(&mut ops).await?;
        }
        super::embedding::count_waiting(&waiting, -1.0);
        let skipped = self.write(&ops).await?;
        tracing::debug!(ops = ops.len(), "ops durable");
        metrics::histogram!(names::BATCH_SIZE).record(ops.len() as f64);
        metrics::histogram!(names::WRITE_LATENCY).record(started.elapsed().as_secs_f64());
        count_applied(&ops, &skipped);
        Ok(())
    }
}

impl<S: Sink> ToQdrant<S> {
    /// `ops` with their TOAST merges resolved (see `toast`); a merge whose row cannot be mapped
    /// is parked.
    async fn merged(&self, ops: Vec<Op>) -> Result<Vec<Op>, Error> {
        if !ops.iter().any(|o| matches!(o, Op::Merge { .. })) {
            return Ok(ops);
        }
        let (resolved, unmappable) = self
            .retrying
            .run("postgres", || {
                self.reads.resolve(&*self.sink, &self.mappings, ops.clone())
            })
            .await?;
        // Parked once the step succeeded: a retried step would park them again.
        let mut dead = self.dead_letter.lock().expect("dead-letter lock");
        for (e, lsn) in &unmappable {
            dead.row(e, *lsn)?;
        }
        Ok(resolved)
    }

    /// Fills the vectors `ops` embed from text (reusing a point's stored vectors when its text
    /// did not change); an op whose text the embedder refuses is parked.
    async fn embed(&self, ops: &mut Vec<Op>) -> Result<(), Error> {
        let pass = Pass::new(&self.embedders, Reuse::All);
        let ops_now: &[Op] = ops;
        self.retrying
            .run("qdrant", || pass.read(&*self.sink, ops_now))
            .await?;
        self.retrying
            .run("embedder", || pass.compute(ops_now))
            .await?;
        for (op, reason) in pass.finish(ops) {
            self.park(&op, &reason)?;
        }
        Ok(())
    }

    /// Writes the ops (see the module doc); returns the upserts the fence skipped.
    async fn write(&self, ops: &[Op]) -> Result<Skipped, Error> {
        let mut backoff = Backoff::new(self.retrying.max_backoff);
        loop {
            let e = match self.retrying.run("qdrant", || self.sink.write(ops)).await {
                Ok(skipped) => return Ok(skipped),
                Err(e) if e.blames_input() => e,
                Err(e) => return Err(e),
            };
            tracing::warn!(error = %e, ops = ops.len(), "batch refused; writing op by op to isolate the bad one");
            let (skipped, refused) = self.op_by_op(ops).await?;
            let all_alike = refused.len() == ops.len()
                && ops.len() > 1
                && refused.iter().all(|(_, r)| *r == refused[0].1);
            if !all_alike {
                for (op, reason) in &refused {
                    self.park(op, reason)?;
                }
                return Ok(skipped);
            }
            let delay = backoff.next_delay();
            tracing::error!(reason = %refused[0].1, ops = ops.len(), retry_in_ms = delay.as_millis() as u64, "the sink refuses every op of the batch for the same reason: an outage, not bad rows; nothing is parked");
            metrics::counter!(names::WRITE_RETRIES, "sink" => "qdrant").increment(1);
            let health = &self.retrying.health;
            health.down("qdrant", format!("every op refused: {}", refused[0].1));
            tokio::select! {
                _ = self.retrying.shutdown.cancelled() => return Err(Error::Shutdown),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Each op written alone: what the fence skipped, and the ops refused for their own sake
    /// with the reason.
    async fn op_by_op<'o>(&self, ops: &'o [Op]) -> Result<(Skipped, Vec<(&'o Op, String)>), Error> {
        let mut skipped = Skipped::new();
        let mut refused = Vec::new();
        for op in ops {
            let one = std::slice::from_ref(op);
            match self.retrying.run("qdrant", || self.sink.write(one)).await {
                Ok(s) => skipped.extend(s),
                Err(e) if e.blames_input() => refused.push((op, e.to_string())),
                Err(e) => return Err(e),
            }
        }
        Ok((skipped, refused))
    }

    /// Parks `op` in the dead-letter file with `reason`.
    fn park(&self, op: &Op, reason: &str) -> Result<(), Error> {
        let (key, row) = match op {
            Op::Upsert { doc, .. } | Op::Merge { doc, .. } => (
                serde_json::json!(doc.key.to_string()),
                serde_json::Value::Object(crate::mapping::payload_json(doc)),
            ),
            Op::Delete { key, .. } => (serde_json::json!(key.to_string()), serde_json::Value::Null),
            Op::DeleteChunks { key, .. } => (key.clone(), serde_json::Value::Null),
            Op::Truncate { table, .. } => (
                serde_json::json!(table.to_string()),
                serde_json::Value::Null,
            ),
        };
        let table = format!("collection:{}", op.collection());
        let lsn = Lsn(op.position().commit_lsn);
        self.dead_letter
            .lock()
            .expect("dead-letter lock")
            .write(&table, &key, lsn, reason, &row)
    }
}

/// Counts the ops of a written batch: one counter update per (collection, op), not one per op;
/// the upserts the fence skipped are counted as skipped, not applied.
fn count_applied(ops: &[Op], skipped: &Skipped) {
    let mut applied: Vec<(&Arc<str>, &'static str, u64)> = Vec::new();
    for op in ops {
        match applied
            .iter_mut()
            .find(|(c, k, _)| *c == op.collection() && *k == op.kind())
        {
            Some(entry) => entry.2 += 1,
            None => applied.push((op.collection(), op.kind(), 1)),
        }
    }
    for (collection, n) in skipped {
        metrics::counter!(names::CHANGES_SKIPPED, "collection" => collection.to_string())
            .increment(*n);
        if let Some(entry) = applied
            .iter_mut()
            .find(|(c, k, _)| *c == collection && *k == "upsert")
        {
            entry.2 = entry.2.saturating_sub(*n);
        }
    }
    for (collection, kind, n) in applied {
        metrics::counter!(names::CHANGES_APPLIED, "collection" => collection.to_string(), "op" => kind).increment(n);
    }
}

#[cfg(test)]
mod tests;
