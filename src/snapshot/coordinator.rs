//! The coordinator: what to copy, which chunks are out, and when a table's copy is durable.
//!
//! Shared by the copy workers (they take tasks and hand in chunks they read) and the
//! replication loop (it turns a chunk into ops at the chunk's high watermark, and reports the
//! durable LSN). See the module essay in `snapshot/mod.rs` for why this is consistent.

use super::window::Window;
use crate::checkpoint::state::{CopyReason, State, StateFile, Status, TableCopy};
use crate::config::SnapshotMode;
use crate::error::Error;
use crate::event::{Op, TableName};
use crate::lsn::{Lsn, Position};
use crate::mapping::Mappings;
use crate::metrics::names;
use crate::source::chunk::TableLayout;
use crate::source::control::Control;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{oneshot, Notify};

mod requests;
mod standing;
pub use standing::CopyProgress;

/// Work for a copy worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Read the table's layout and cut it into chunks (or check a resumed plan still holds).
    Plan { table: TableName, generation: u64 },
    /// Read chunk `index` (heap pages `first..end`) between a low and a high watermark.
    /// `end = None` reads to the end of the table; `first = end` is an empty chunk, used to
    /// close a copy whose chunks were all done before a restart.
    Chunk {
        table: TableName,
        generation: u64,
        index: u32,
        first: u32,
        end: Option<u32>,
    },
}

/// A chunk whose rows were read, waiting for its high watermark to come through the stream.
struct ReadChunk {
    table: TableName,
    generation: u64,
    index: u32,
    ops: Vec<Op>,
    /// The rows themselves, kept for their change events (publish mode only).
    kept: Vec<crate::event::Row>,
    rows: u64,
    consumed: Option<oneshot::Sender<()>>,
}

/// A copy running in this process.
struct Live {
    generation: u64,
    layout: Option<TableLayout>,
    /// The rows its chunks read (the row filter and a partial resync's condition), fixed when
    /// the copy is planned, after the condition was checked (`source::condition`).
    selection: Option<String>,
    /// Chunks not yet turned into ops by the stream.
    outstanding: HashSet<u32>,
    /// The stream injected the closing sweep at this commit LSN; the copy is done once durable
    /// passes it.
    sweep_at: Option<u64>,
    started: Instant,
    /// Rows of chunks made durable before this process started (a resumed copy).
    resumed: u64,
    rows_streamed: u64,
}

struct Inner {
    state: State,
    live: HashMap<TableName, Live>,
    queue: VecDeque<Task>,
    pending: HashMap<String, ReadChunk>,
    /// Chunks handed to the writer: done once durable passes their high watermark's commit LSN.
    awaiting: Vec<(u64, TableName, u64, u32, u64)>,
    next_chunk: u64,
    next_generation: u64,
}

pub struct Coordinator {
    inner: Mutex<Inner>,
    wake: Notify,
    /// A copy finished or a bulk load was closed (the replication loop re-checks `finished`).
    settled: Notify,
    /// A chunk or a copy finished: a bulk load may be ready to close.
    copied: Notify,
    slot: String,
    run: String,
    mappings: Arc<Mappings>,
    file: StateFile,
    chunk_pages: u32,
    mode: SnapshotMode,
}

impl Coordinator {
    /// Loads the state and queues the copies this start needs: tables never copied (unless
    /// `snapshot = never`), copies interrupted by a stop, and every table after a slot loss
    /// (recorded in the state by set-up, see `StateFile::recopy_all`).
    pub fn start(
        file: StateFile,
        mappings: Arc<Mappings>,
        slot: &str,
        mode: SnapshotMode,
        chunk_pages: u32,
    ) -> Result<Arc<Self>, Error> {
        let state = file.load()?;
        let c = Arc::new(Self {
            inner: Mutex::new(Inner {
                state,
                live: HashMap::new(),
                queue: VecDeque::new(),
                pending: HashMap::new(),
                awaiting: Vec::new(),
                next_chunk: 0,
                next_generation: 1,
            }),
            wake: Notify::new(),
            settled: Notify::new(),
            copied: Notify::new(),
            slot: slot.to_owned(),
            run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            mappings,
            file,
            chunk_pages,
            mode,
        });
        {
            let mut inner = c.lock();
            let mut tables: Vec<&TableName> = c.mappings.keys().collect();
            tables.sort();
            for t in tables {
                let copy = inner.state.tables.get(&t.to_string()).cloned();
                let wanted = match &copy {
                    None => mode != SnapshotMode::Never,
                    Some(copy) => copy.status == Status::Copying,
                };
                if !wanted {
                    set_state_metric(t, copy.as_ref().map(|c| c.status));
                    continue;
                }
                if copy.is_none() {
                    inner
                        .state
                        .tables
                        .insert(t.to_string(), TableCopy::new(CopyReason::Initial, 0));
                }
                c.launch(&mut inner, t.clone());
            }
            c.persist(&inner)?;
        }
        Ok(c)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("snapshot coordinator lock")
    }

    fn persist(&self, inner: &Inner) -> Result<(), Error> {
        self.file.store(&inner.state)
    }

    /// Starts (or restarts) a table's copy in this process: a new generation, a plan task.
    fn launch(&self, inner: &mut Inner, table: TableName) {
        let generation = inner.next_generation;
        inner.next_generation += 1;
        inner.queue.retain(|t| !matches!(t, Task::Plan { table: x, .. } | Task::Chunk { table: x, .. } if *x == table));
        inner.live.insert(
            table.clone(),
            Live {
                generation,
                layout: None,
                selection: None,
                outstanding: HashSet::new(),
                sweep_at: None,
                started: Instant::now(),
                resumed: 0,
                rows_streamed: 0,
            },
        );
        set_state_metric(&table, Some(Status::Copying));
        inner.queue.push_back(Task::Plan { table, generation });
        self.wake.notify_waiters();
    }

    /// The next task for a worker; waits until there is one.
    pub async fn next_task(&self) -> Task {
        loop {
            let notified = self.wake.notified();
            if let Some(t) = self.lock().queue.pop_front() {
                return t;
            }
            notified.await;
        }
    }

    /// Puts a task back (its worker failed) for another try.
    pub fn retry(&self, task: Task) {
        self.lock().queue.push_back(task);
        self.wake.notify_one();
    }

    fn current(inner: &Inner, table: &TableName, generation: u64) -> bool {
        inner
            .live
            .get(table)
            .is_some_and(|l| l.generation == generation)
    }

    /// A worker read the layout and checked the copy's `condition` (a partial resync's, as the
    /// worker read it: only this generation's reads use it). `now` is the current WAL position
    /// (the start of a copy that has none yet). Queues the chunks still to read.
    pub fn planned(
        &self,
        table: &TableName,
        generation: u64,
        layout: TableLayout,
        now: Lsn,
        condition: Option<String>,
    ) -> Result<(), Error> {
        let mut inner = self.lock();
        if !Self::current(&inner, table, generation) {
            return Ok(());
        }
        let key = table.to_string();
        let copy = inner.state.tables.get_mut(&key).expect("copy state");
        let resumable = copy.chunks.is_some()
            && copy.relfilenode == Some(layout.relfilenode)
            && copy.chunk_pages > 0;
        if !resumable {
            if copy.chunks.is_some() {
                tracing::warn!(table = %table, "table was rewritten (VACUUM FULL, CLUSTER, TRUNCATE) since its copy started; copying it again from the start");
                copy.reason = CopyReason::TableRewritten;
                copy.start_lsn = 0;
            }
            if copy.start_lsn == 0 {
                copy.start_lsn = now.as_u64();
            }
            copy.relfilenode = Some(layout.relfilenode);
            copy.chunk_pages = self.chunk_pages;
            copy.chunks = Some(layout.pages.div_ceil(self.chunk_pages).max(1));
            copy.done.clear();
            copy.rows = 0;
        }
        let (pages, n) = (copy.chunk_pages, copy.chunks.expect("planned"));
        let remaining = copy.remaining();
        tracing::info!(table = %table, reason = %copy.reason, chunks = n, remaining = remaining.len(),
            estimated_rows = layout.estimated_rows, start = %Lsn(copy.start_lsn), "copying existing rows");
        metrics::gauge!(names::SNAPSHOT_ROWS_ESTIMATED, "table" => key.clone())
            .set(layout.estimated_rows as f64);
        metrics::gauge!(names::SNAPSHOT_CHUNKS_DONE, "table" => key.clone())
            .set(copy.done.len() as f64);
        let resumed = copy.rows;
        let live = inner.live.get_mut(table).expect("live copy");
        live.layout = Some(layout);
        live.selection = match (self.mappings[table].row_filter.clone(), condition) {
            (Some(f), Some(c)) => Some(format!("({f}) AND ({c})")),
            (f, c) => f.or(c),
        };
        live.resumed = resumed;
        let tasks: Vec<Task> = if remaining.is_empty() {
            // Every chunk is durable; only the closing sweep is missing: an empty chunk gets
            // a high watermark to carry it.
            live.outstanding.insert(n);
            vec![Task::Chunk {
                table: table.clone(),
                generation,
                index: n,
                first: 0,
                end: Some(0),
            }]
        } else {
            live.outstanding.extend(remaining.iter().copied());
            remaining
                .into_iter()
                .map(|i| Task::Chunk {
                    table: table.clone(),
                    generation,
                    index: i,
                    first: i * pages,
                    end: (i + 1 < n).then_some((i + 1) * pages),
                })
                .collect()
        };
        inner.queue.extend(tasks);
        self.persist(&inner)?;
        drop(inner);
        self.wake.notify_waiters();
        Ok(())
    }

    /// The layout a planned copy uses and the rows it selects (`None`: the copy was restarted
    /// meanwhile).
    pub fn layout(
        &self,
        table: &TableName,
        generation: u64,
    ) -> Option<(TableLayout, Option<String>)> {
        let inner = self.lock();
        let live = inner.live.get(table)?;
        if live.generation != generation {
            return None;
        }
        Some((live.layout.clone()?, live.selection.clone()))
    }

    /// A chunk read found the table rewritten: plan the copy again.
    pub fn rewritten(&self, table: &TableName, generation: u64) {
        let mut inner = self.lock();
        if Self::current(&inner, table, generation) {
            self.launch(&mut inner, table.clone());
        }
    }

    /// Registers a chunk about to be read; its id goes into both watermarks.
    pub fn register(&self, table: &TableName, generation: u64, index: u32) -> Option<String> {
        let mut inner = self.lock();
        if !Self::current(&inner, table, generation) {
            return None;
        }
        inner.next_chunk += 1;
        let id = format!("{}:{}", self.run, inner.next_chunk);
        inner.pending.insert(
            id.clone(),
            ReadChunk {
                table: table.clone(),
                generation,
                index,
                ops: Vec::new(),
                kept: Vec::new(),
                rows: 0,
                consumed: None,
            },
        );
        Some(id)
    }

    /// The chunk's rows, mapped with provisional positions. The returned receiver fires when
    /// the stream has turned them into ops (the worker then takes its next chunk).
    pub fn read(
        &self,
        id: &str,
        ops: Vec<Op>,
        kept: Vec<crate::event::Row>,
        rows: u64,
    ) -> Option<oneshot::Receiver<()>> {
        let mut inner = self.lock();
        let p = inner.pending.get_mut(id)?;
        let (tx, rx) = oneshot::channel();
        p.ops = ops;
        p.kept = kept;
        p.rows = rows;
        p.consumed = Some(tx);
        Some(rx)
    }

    /// Forgets a registered chunk whose read failed.
    pub fn abandon(&self, id: &str) {
        self.lock().pending.remove(id);
    }

    /// The control message for a watermark of chunk `id`.
    pub fn watermark(&self, id: &str, high: bool) -> Control {
        let (slot, chunk) = (self.slot.clone(), id.to_owned());
        if high {
            Control::High { slot, chunk }
        } else {
            Control::Low { slot, chunk }
        }
    }

    /// Stream side, at a low watermark: the table whose window opens, if the chunk is ours.
    pub fn expects(&self, id: &str) -> Option<TableName> {
        self.lock().pending.get(id).map(|p| p.table.clone())
    }

    /// Stream side, at a high watermark in the transaction committed at `commit`: the chunk's
    /// ops at their real positions, minus rows the stream changed inside the window; and, after
    /// the table's last chunk, the sweep that removes points of rows gone before the copy.
    /// `positions(n)` reserves `n` positions in the current transaction. Also the copied rows
    /// kept for publishing, as inserts at the position of their row's first op (rows whose
    /// ops were dropped above are left out with them), then the sweep's own change event.
    pub fn high(
        &self,
        id: &str,
        window: Option<Window>,
        commit: Lsn,
        commit_time: i64,
        mut positions: impl FnMut(usize) -> Position,
    ) -> (Vec<Op>, Vec<crate::event::Change>) {
        let mut inner = self.lock();
        let Some(mut p) = inner.pending.remove(id) else {
            return Default::default(); // a chunk of an earlier run or generation: it is read again
        };
        if let Some(tx) = p.consumed.take() {
            let _ = tx.send(());
        }
        if !Self::current(&inner, &p.table, p.generation) {
            return Default::default();
        }
        let mut ops = std::mem::take(&mut p.ops);
        if let Some(w) = &window {
            let before = ops.len();
            ops.retain(|op| !op.row_key().is_some_and(|k| w.conflicts(k)));
            let dropped = before - ops.len();
            if dropped > 0 {
                tracing::debug!(table = %p.table, chunk = p.index, dropped, "rows changed while their chunk was read: the stream's version wins");
            }
        }
        let first = positions(ops.len());
        crate::mapping::set_positions(&mut ops, first, commit_time);
        for op in &mut ops {
            if let Op::Upsert { copied, .. } = op {
                *copied = true;
            }
        }
        let mut reads = reads(
            &self.mappings[&p.table],
            &p.table,
            std::mem::take(&mut p.kept),
            &ops,
            commit_time,
        );
        metrics::counter!(names::SNAPSHOT_ROWS, "table" => p.table.to_string()).increment(p.rows);
        inner.awaiting.push((
            commit.as_u64(),
            p.table.clone(),
            p.generation,
            p.index,
            p.rows,
        ));
        let (start_lsn, partial) = inner
            .state
            .tables
            .get(&p.table.to_string())
            .map_or((0, false), |c| (c.start_lsn, c.condition.is_some()));
        let live = inner.live.get_mut(&p.table).expect("live copy");
        live.rows_streamed += p.rows;
        live.outstanding.remove(&p.index);
        let last = live.outstanding.is_empty() && live.sweep_at.is_none();
        if last {
            // The copy is done once this commit is durable. A partial one sweeps nothing: the
            // points of rows outside its condition were not rewritten.
            live.sweep_at = Some(commit.as_u64());
        }
        if last && !partial {
            let mapping = &self.mappings[&p.table];
            let position = Position {
                commit_lsn: start_lsn,
                seq: 0,
            };
            ops.push(Op::Truncate {
                collection: mapping.collection.clone(),
                table: p.table.clone(),
                position,
            });
            // Published after the table's last rows, so appliers sweep too (`direct = false`).
            reads.push(crate::event::Change {
                table: p.table.clone(),
                position,
                commit_time_micros: commit_time,
                kind: crate::event::ChangeKind::Sweep,
            });
        }
        (ops, reads)
    }

    /// Stream side: everything up to `durable` is in the sinks. Marks chunks and copies done
    /// and saves the state when it changed.
    pub fn durable(&self, durable: Lsn) -> Result<(), Error> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let d = durable.as_u64();
        let mut changed = false;
        let mut i = 0;
        while i < inner.awaiting.len() {
            if inner.awaiting[i].0 >= d {
                i += 1;
                continue;
            }
            let (_, table, generation, index, rows) = inner.awaiting.swap_remove(i);
            if !Self::current(inner, &table, generation) {
                continue;
            }
            let key = table.to_string();
            if let Some(copy) = inner.state.tables.get_mut(&key) {
                if copy.chunks.is_some_and(|n| index < n) {
                    copy.mark_done(index, rows);
                    changed = true;
                    metrics::gauge!(names::SNAPSHOT_CHUNKS_DONE, "table" => key)
                        .set(copy.done.len() as f64);
                }
            }
        }
        let finished: Vec<TableName> = inner
            .live
            .iter()
            .filter(|(_, l)| l.sweep_at.is_some_and(|s| s < d))
            .map(|(t, _)| t.clone())
            .collect();
        for t in finished {
            let live = inner.live.remove(&t).expect("listed above");
            if let Some(copy) = inner.state.tables.get_mut(&t.to_string()) {
                copy.status = Status::Done;
                let secs = live.started.elapsed().as_secs_f64();
                let rows_per_s = format!("{:.0}", live.rows_streamed as f64 / secs.max(1e-3));
                let seconds = format!("{secs:.1}");
                match &copy.condition {
                    None => tracing::info!(table = %t, rows = copy.rows, seconds, rows_per_s,
                        "copy finished: every row is in Qdrant and points of rows gone before it were removed"),
                    Some(c) => {
                        tracing::info!(table = %t, rows = copy.rows, seconds, rows_per_s, condition = %c,
                        "partial copy finished: every row matching the condition is in Qdrant")
                    }
                }
            }
            set_state_metric(&t, Some(Status::Done));
            changed = true;
        }
        if changed {
            self.file.store(&inner.state)?;
            self.settled.notify_one();
            self.copied.notify_one();
        }
        Ok(())
    }

    /// No copy is running or queued, no bulk load waits to be closed and no rebuild to be
    /// switched.
    pub fn idle(&self) -> bool {
        let inner = self.lock();
        inner.live.is_empty() && inner.state.bulk.is_empty() && inner.state.rebuilds.is_empty()
    }

    /// Rebuilds whose every table's copy into the new collection is durable: `(alias, rebuild)`.
    pub fn rebuilds_ready(&self) -> Vec<(String, crate::checkpoint::state::Rebuild)> {
        let inner = self.lock();
        inner
            .state
            .rebuilds
            .iter()
            .filter(|(_, r)| {
                r.tables.iter().all(|t| {
                    inner.state.tables.get(t).is_some_and(|c| {
                        c.status == Status::Done && c.reason == CopyReason::Rebuild
                    })
                })
            })
            .map(|(a, r)| (a.clone(), r.clone()))
            .collect()
    }

    /// The alias points at the new collection and the old one is dropped: the rebuild is over.
    pub fn rebuild_finished(&self, alias: &str) -> Result<(), Error> {
        let mut inner = self.lock();
        inner.state.rebuilds.remove(alias);
        self.persist(&inner)?;
        self.settled.notify_one();
        Ok(())
    }

    /// Resolves after a copy finished or a bulk load was closed (one waiter).
    pub async fn settled(&self) {
        self.settled.notified().await
    }

    /// Resolves after a chunk or a copy finished (one waiter: the bulk-load supervisor).
    pub async fn copied(&self) {
        self.copied.notified().await
    }

    /// Bulk-loaded collections no running copy writes into: `(collection, indexing threshold
    /// to restore)`.
    pub fn bulk_ready(&self) -> Vec<(String, u64)> {
        let inner = self.lock();
        inner
            .state
            .bulk
            .iter()
            .filter(|(c, _)| {
                !inner.live.keys().any(|t| {
                    self.mappings
                        .get(t)
                        .is_some_and(|m| &*m.collection == c.as_str())
                })
            })
            .map(|(c, t)| (c.clone(), *t))
            .collect()
    }

    /// The collection's indexing is restored and it is green: the bulk load is over.
    pub fn bulk_restored(&self, collection: &str) -> Result<(), Error> {
        let mut inner = self.lock();
        inner.state.bulk.remove(collection);
        self.persist(&inner)?;
        self.settled.notify_one();
        Ok(())
    }

    pub fn mode(&self) -> SnapshotMode {
        self.mode
    }

    pub fn slot(&self) -> &str {
        &self.slot
    }

    pub fn mappings(&self) -> &Arc<Mappings> {
        &self.mappings
    }
}

/// `pg2qdrant_snapshot_state{table}`: 0 not copied, 1 copying, 2 done.
fn set_state_metric(table: &TableName, status: Option<Status>) {
    let v = match status {
        None => 0.0,
        Some(Status::Copying) => 1.0,
        Some(Status::Done) => 2.0,
    };
    metrics::gauge!(names::SNAPSHOT_STATE, "table" => table.to_string()).set(v);
}

/// Copied rows as inserts positioned at their row's first op (see [`Coordinator::high`]).
fn reads(
    mapping: &crate::mapping::TableMapping,
    table: &TableName,
    kept: Vec<crate::event::Row>,
    ops: &[Op],
    commit_time: i64,
) -> Vec<crate::event::Change> {
    if kept.is_empty() {
        return Vec::new();
    }
    let mut at: HashMap<&crate::event::PointKey, Position> = HashMap::with_capacity(ops.len());
    for op in ops {
        if let Some(k) = op.row_key() {
            at.entry(k).or_insert_with(|| op.position());
        }
    }
    kept.into_iter()
        .filter_map(|new| {
            let position = *at.get(&mapping.point_key(&new).ok()?)?;
            Some(crate::event::Change {
                table: table.clone(),
                position,
                commit_time_micros: commit_time,
                kind: crate::event::ChangeKind::Insert { new },
            })
        })
        .collect()
}
