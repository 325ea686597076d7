//! A copy worker: takes tasks from the coordinator and reads chunks between watermarks.
//!
//! ```text
//!  register chunk ─▶ emit LOW ─▶ wait for transactions running then ─▶ read pages a..b
//!        ─▶ map rows (provisional positions) ─▶ hand to coordinator ─▶ emit HIGH
//!        ─▶ wait until the stream consumed HIGH ─▶ next task
//! ```
//!
//! Each worker has its own connection. At most one chunk per worker is held in memory. A failed
//! task is logged (naming the table and pages) and put back; it is never skipped.

use super::coordinator::{Coordinator, Task};
use crate::config::SourceConfig;
use crate::deadletter::DeadLetter;
use crate::error::{Backoff, Disposition, Error};
use crate::event::{Change, ChangeKind, TableName};
use crate::lsn::{Lsn, Position};
use crate::metrics::names;
use crate::source::catalog::Catalog;
use crate::source::chunk::TableLayout;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Worker {
    pub coordinator: Arc<Coordinator>,
    pub source: SourceConfig,
    pub dead_letter: Arc<Mutex<DeadLetter>>,
    pub max_backoff: Duration,
    pub shutdown: CancellationToken,
    /// Keep the rows for their change events (publish mode).
    pub publish: bool,
}

impl Worker {
    pub async fn run(self) {
        let mut catalog: Option<Catalog> = None;
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            let task = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                t = self.coordinator.next_task() => t,
            };
            let result = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = self.run_task(&mut catalog, &task) => r,
            };
            match result {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    catalog = None;
                    let delay = backoff.next_delay();
                    let (table, what) = describe(&task);
                    if e.disposition() == Disposition::Definite {
                        tracing::error!(table = %table, task = %what, error = %e, hint = e.hint().unwrap_or(""), retry_in_ms = delay.as_millis() as u64, "copy task failed; it is retried and the copy of this table cannot finish until it succeeds");
                    } else {
                        tracing::warn!(table = %table, task = %what, error = %e, retry_in_ms = delay.as_millis() as u64, "copy task failed; retrying");
                    }
                    metrics::counter!(names::SNAPSHOT_ERRORS, "table" => table.to_string())
                        .increment(1);
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    self.coordinator.retry(task);
                }
            }
        }
    }

    async fn connection<'a>(&self, catalog: &'a mut Option<Catalog>) -> Result<&'a Catalog, Error> {
        if catalog.is_none() {
            let c = Catalog::connect(&self.source).await?;
            c.set_copy_session().await?;
            *catalog = Some(c);
        }
        Ok(catalog.as_ref().expect("connected"))
    }

    async fn run_task(&self, catalog: &mut Option<Catalog>, task: &Task) -> Result<(), Error> {
        let c = self.connection(catalog).await?;
        match task {
            Task::Plan { table, generation } => {
                // A partial resync's condition came through the WAL: checked again here, and
                // only this generation's reads use it (`Coordinator::planned`).
                let condition = self.coordinator.condition(table);
                if let Some(condition) = &condition {
                    if let Err(why) = c.allowed_condition(table, condition).await? {
                        return self.coordinator.refuse(table, *generation, &why);
                    }
                }
                let mapping = &self.coordinator.mappings()[table];
                let layout = c.layout(table, &mapping.key).await?;
                let now = c.current_wal_lsn().await?;
                self.coordinator
                    .planned(table, *generation, layout, now, condition)
            }
            Task::Chunk {
                table,
                generation,
                index,
                first,
                end,
            } => {
                let Some((layout, selection)) = self.coordinator.layout(table, *generation) else {
                    return Ok(()); // the copy was restarted; its new plan has its own tasks
                };
                let Some(id) = self.coordinator.register(table, *generation, *index) else {
                    return Ok(());
                };
                let result = self
                    .chunk(
                        c,
                        &id,
                        table,
                        (&layout, selection.as_deref()),
                        *generation,
                        (*first, *end),
                    )
                    .await;
                if result.is_err() {
                    self.coordinator.abandon(&id);
                }
                result
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn chunk(
        &self,
        c: &Catalog,
        id: &str,
        table: &TableName,
        (layout, selection): (&TableLayout, Option<&str>),
        generation: u64,
        (first, end): (u32, Option<u32>),
    ) -> Result<(), Error> {
        let empty = end == Some(first);
        let (ops, kept, rows) = if empty {
            (Vec::new(), Vec::new(), 0)
        } else {
            let mapping = &self.coordinator.mappings()[table];
            // The columns as they are now: a column added or dropped since the plan is read
            // (or not) like the stream's rows after its Relation message. A column the mapping
            // needs, gone or retyped, holds the copy with an error instead of parking every row
            // (`mapping::schema`).
            let now = c.layout(table, &mapping.key).await?.columns;
            if let Some(b) = mapping.schema_break(&now) {
                return Err(Error::prerequisite(
                    format!("{table}: {b}: its copy waits"),
                    format!("make tables ({table}) {} name the column as it is now (or undo the change) and restart", b.need.field),
                ));
            }
            let layout = &TableLayout {
                columns: now,
                ..layout.clone()
            };
            let low = c.emit(&self.coordinator.watermark(id, false)).await?;
            c.wait_running_transactions().await?;
            // Binary wherever every column has a binary decoder (any server version has binary
            // COPY); the stream's choice does not matter, both forms map alike.
            let binary = self.source.format != crate::config::Format::Text
                && crate::source::format::blocker(mapping, &layout.columns).is_none();
            let Some(rows) = c
                .read_chunk(table, layout, first, end, binary, selection)
                .await?
            else {
                self.coordinator.rewritten(table, generation);
                return Ok(());
            };
            let n = rows.len() as u64;
            // Publish mode: the rows become change events at the high watermark too.
            let kept = if self.publish {
                rows.clone()
            } else {
                Vec::new()
            };
            (self.map(table, rows, low)?, kept, n)
        };
        let Some(consumed) = self.coordinator.read(id, ops, kept, rows) else {
            return Ok(());
        };
        c.emit(&self.coordinator.watermark(id, true)).await?;
        // The stream turns the chunk into ops at its high watermark; until then it is held here.
        let _ = consumed.await;
        Ok(())
    }

    /// Maps rows to ops like inserts (provisional positions); rows that cannot be mapped go to
    /// the dead-letter file, naming table and key.
    fn map(
        &self,
        table: &TableName,
        rows: Vec<crate::event::Row>,
        low: Lsn,
    ) -> Result<Vec<crate::event::Op>, Error> {
        let mapping = &self.coordinator.mappings()[table];
        let mut ops = Vec::with_capacity(rows.len());
        for new in rows {
            let change = Change {
                table: table.clone(),
                position: Position::default(),
                commit_time_micros: 0,
                kind: ChangeKind::Insert { new },
            };
            match mapping.ops(&change) {
                Ok(o) => ops.extend(o),
                Err(e) => self
                    .dead_letter
                    .lock()
                    .expect("dead-letter lock")
                    .row(&e, low)?,
            }
        }
        Ok(ops)
    }
}

fn describe(task: &Task) -> (TableName, String) {
    match task {
        Task::Plan { table, .. } => (table.clone(), "plan".to_owned()),
        Task::Chunk {
            table,
            index,
            first,
            end,
            ..
        } => (
            table.clone(),
            format!(
                "chunk {index} (pages {first}..{})",
                end.map_or("end".to_owned(), |e| e.to_string())
            ),
        ),
    }
}
