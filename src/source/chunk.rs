//! Reads for the copy: a table's layout (file, pages, columns), chunks of rows by heap-page
//! range (`ctid`, a TID range scan), control messages into the WAL, and the visibility wait that
//! must follow a low watermark. The rows come back in PostgreSQL's text output form, the same
//! form pgoutput sends, so they go through the same mapping as streamed rows.

use super::catalog::Catalog;
use crate::error::Error;
use crate::event::{quote_ident, Column, Datum, Row, TableName};
use crate::lsn::{parse_lsn, Lsn};
use crate::source::control::{Control, PREFIX};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::SimpleQueryMessage;

/// What a copy needs to know about a table.
#[derive(Debug, Clone)]
pub struct TableLayout {
    pub oid: u32,
    pub relfilenode: u32,
    /// Heap pages when the layout was read.
    pub pages: u32,
    /// `pg_class.reltuples` (0 when the table was never analyzed).
    pub estimated_rows: u64,
    /// The columns pgoutput sends (not dropped, not generated), in order.
    pub columns: Arc<[Column]>,
}

/// A row of a simple query (text values) as a [`Row`] of `columns`.
pub fn text_row(r: &tokio_postgres::SimpleQueryRow, columns: &Arc<[Column]>) -> Row {
    Row {
        columns: columns.clone(),
        values: (0..columns.len())
            .map(|i| r.get(i).map_or(Datum::Null, |v| Datum::Text(v.to_owned())))
            .collect(),
    }
}

impl Catalog {
    /// Session settings the copy's text values depend on (the parsers expect these forms), and
    /// synchronous commit: a watermark reaches the walsender only once its commit is flushed,
    /// and with `synchronous_commit = off` that waits for the WAL writer (`wal_writer_delay`,
    /// 200 ms by default) on every chunk.
    pub async fn set_copy_session(&self) -> Result<(), Error> {
        self.client()
            .batch_execute(
                "SET DateStyle = 'ISO, MDY'; SET bytea_output = 'hex'; SET extra_float_digits = 1; \
                 SET IntervalStyle = 'postgres'; SET synchronous_commit = on; \
                 SET application_name = 'pg2qdrant copy'",
            )
            .await
            .map_err(Error::pg("set copy session"))
    }

    pub async fn layout(&self, table: &TableName, key: &[String]) -> Result<TableLayout, Error> {
        let row = self
            .client()
            .query_opt(
                "SELECT c.oid, c.relfilenode, \
                        (pg_relation_size(c.oid) / current_setting('block_size')::int)::int8, \
                        greatest(c.reltuples, 0)::int8 \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(Error::pg(format!("read the layout of {table}")))?
            .ok_or_else(|| {
                Error::prerequisite(
                    format!("table {table} does not exist"),
                    "create it or remove it from the config",
                )
            })?;
        let oid: u32 = row.get(0);
        let columns = self
            .client()
            .query(
                "SELECT attname::text, atttypid, atttypmod FROM pg_attribute \
                 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' \
                 ORDER BY attnum",
                &[&oid],
            )
            .await
            .map_err(Error::pg(format!("read the columns of {table}")))?;
        Ok(TableLayout {
            oid,
            relfilenode: row.get(1),
            pages: u32::try_from(row.get::<_, i64>(2)).unwrap_or(u32::MAX),
            estimated_rows: row.get::<_, i64>(3) as u64,
            columns: columns
                .iter()
                .map(|r| {
                    let name: String = r.get(0);
                    Column {
                        is_key: key.contains(&name),
                        name,
                        type_oid: r.get(1),
                        type_modifier: r.get(2),
                    }
                })
                .collect::<Vec<_>>()
                .into(),
        })
    }

    /// Writes a control message into the WAL (transactional, committed at once). Returns the
    /// message's LSN.
    pub async fn emit(&self, control: &Control) -> Result<Lsn, Error> {
        let row = self
            .client()
            .query_one(
                "SELECT pg_logical_emit_message(true, $1, $2)::text",
                &[&PREFIX, &control.encode()],
            )
            .await
            .map_err(Error::pg("pg_logical_emit_message"))?;
        parse_lsn(row.get(0)).map_err(|e| Error::prerequisite("pg_logical_emit_message", e))
    }

    /// Writes a tiny non-transactional logical message (prefix `pg2qdrant.verify`, which the
    /// connector ignores), so the WAL position read after it is strictly past any position read
    /// before it. A check's fence then lies above the repairs of an earlier check.
    pub async fn advance_wal(&self) -> Result<(), Error> {
        self.client()
            .execute(
                "SELECT pg_logical_emit_message(false, 'pg2qdrant.verify', '')",
                &[],
            )
            .await
            .map(|_| ())
            .map_err(Error::pg("pg_logical_emit_message"))
    }

    /// Waits until every transaction that was running when this is called has ended.
    ///
    /// A transaction's commit record can precede a watermark in the WAL while the transaction
    /// is not yet visible to snapshots taken after the watermark committed: a chunk read then
    /// would miss a change that the stream also does not count as inside the window. Reading
    /// only after these transactions ended closes that gap.
    pub async fn wait_running_transactions(&self) -> Result<(), Error> {
        let row = self
            .client()
            .query_one("SELECT pg_current_snapshot()::text", &[])
            .await
            .map_err(Error::pg("pg_current_snapshot"))?;
        let snapshot: String = row.get(0);
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        let mut warned = false;
        loop {
            let done: bool = self
                .client()
                .query_one(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= pg_snapshot_xmax($1::text::pg_snapshot)",
                    &[&snapshot],
                )
                .await
                .map_err(Error::pg("wait for running transactions"))?
                .get(0);
            if done {
                return Ok(());
            }
            if !warned && started.elapsed() > Duration::from_secs(10) {
                warned = true;
                tracing::warn!(snapshot = %snapshot, "copy waits for transactions older than its watermark to end (a long-running or idle-in-transaction session holds it up)");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The rows in heap pages `[first, end)` (`end = None`: to the end of the table), or `None`
    /// when the table was rewritten since `layout` was read (its rows moved between pages).
    /// `binary`: read with `COPY ... (FORMAT binary)`, values in their binary form (the caller
    /// checked every column has a binary decoder); else a query in text form. `filter`: the
    /// table's `where` (only those rows).
    pub async fn read_chunk(
        &self,
        table: &TableName,
        layout: &TableLayout,
        first: u32,
        end: Option<u32>,
        binary: bool,
        filter: Option<&str>,
    ) -> Result<Option<Vec<Row>>, Error> {
        let select = chunk_select(table, layout, first, end, filter);
        let relfilenode_sql = format!(
            "SELECT relfilenode::text FROM pg_class WHERE oid = {}",
            layout.oid
        );
        let ctx = || format!("read rows of {table} in pages {first}..{end:?}");
        // The chunk's read takes a lock that keeps the table from being rewritten until the
        // transaction ends, so the file check after it covers the rows it read.
        let read = async {
            match binary {
                true => {
                    self.read_binary(&select, &relfilenode_sql, layout, &ctx)
                        .await
                }
                false => {
                    self.read_text(&select, &relfilenode_sql, layout, &ctx)
                        .await
                }
            }
        };
        let (rows, relfilenode) = match read.await {
            Ok(r) => r,
            Err(e) => {
                // The caller drops this connection on any error (`snapshot::worker`), so a
                // chunk read never reuses a snapshot; a failed ROLLBACK is only told.
                if let Err(r) = self.client().batch_execute("ROLLBACK").await {
                    tracing::warn!(error = %r, "ROLLBACK after a failed chunk read failed; the connection is dropped");
                }
                return Err(e);
            }
        };
        let relfilenode = relfilenode.and_then(|v| v.parse::<u32>().ok());
        Ok((relfilenode == Some(layout.relfilenode)).then_some(rows))
    }

    /// The chunk's rows by `COPY ... (FORMAT binary)` in a read-only transaction, and the
    /// table's file read in the same transaction (text).
    async fn read_binary(
        &self,
        select: &str,
        relfilenode_sql: &str,
        layout: &TableLayout,
        ctx: &impl Fn() -> String,
    ) -> Result<(Vec<Row>, Option<String>), Error> {
        self.client()
            .batch_execute("BEGIN READ ONLY")
            .await
            .map_err(Error::pg(ctx()))?;
        let rows = self
            .copy_binary(select, layout)
            .await
            .map_err(|e| match e {
                CopyError::Pg(e) => Error::pg(ctx())(e),
                CopyError::Parse(e) => Error::prerequisite(
                    format!("{}: {e}", ctx()),
                    "this is a bug; set source.format = \"text\" and report it",
                ),
            })?;
        let messages = self
            .client()
            .simple_query(&format!("{relfilenode_sql}; COMMIT"))
            .await
            .map_err(Error::pg(ctx()))?;
        Ok((rows, first_value(&messages, 0)))
    }

    /// The chunk's rows by a query in text form in a read-only transaction, and the table's
    /// file read in the same transaction (text).
    async fn read_text(
        &self,
        select: &str,
        relfilenode_sql: &str,
        layout: &TableLayout,
        ctx: &impl Fn() -> String,
    ) -> Result<(Vec<Row>, Option<String>), Error> {
        let messages = self
            .client()
            .simple_query(&format!(
                "BEGIN READ ONLY; {select}; {relfilenode_sql}; COMMIT"
            ))
            .await
            .map_err(Error::pg(ctx()))?;
        let mut rows = Vec::new();
        let mut statement = 0;
        for m in &messages {
            match m {
                SimpleQueryMessage::CommandComplete(_) => statement += 1,
                SimpleQueryMessage::Row(r) if statement == 1 => {
                    rows.push(text_row(r, &layout.columns))
                }
                _ => {}
            }
        }
        Ok((rows, first_value(&messages, 2)))
    }

    async fn copy_binary(&self, select: &str, layout: &TableLayout) -> Result<Vec<Row>, CopyError> {
        use futures_util::StreamExt as _;
        let stream = self
            .client()
            .copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
            .await
            .map_err(CopyError::Pg)?;
        let mut stream = std::pin::pin!(stream);
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(CopyError::Pg)?);
        }
        super::copy_binary::parse(&bytes.into(), &layout.columns).map_err(CopyError::Parse)
    }
}

enum CopyError {
    Pg(tokio_postgres::Error),
    Parse(String),
}

/// The first value of the first row after `statement` statements of a simple query.
fn first_value(messages: &[SimpleQueryMessage], statement: usize) -> Option<String> {
    let mut seen = 0;
    for m in messages {
        match m {
            SimpleQueryMessage::CommandComplete(_) => seen += 1,
            SimpleQueryMessage::Row(r) if seen == statement => return r.get(0).map(str::to_owned),
            _ => {}
        }
    }
    None
}

/// The query of the rows in heap pages `[first, end)` of `table` (only those matching `filter`).
fn chunk_select(
    table: &TableName,
    layout: &TableLayout,
    first: u32,
    end: Option<u32>,
    filter: Option<&str>,
) -> String {
    let cols: Vec<String> = layout
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let mut upper = end
        .map(|e| format!(" AND ctid < '({e},0)'::tid"))
        .unwrap_or_default();
    if let Some(f) = filter {
        upper.push_str(&format!(" AND ({f})"));
    }
    format!(
        "SELECT {} FROM {} WHERE ctid >= '({first},0)'::tid{upper}",
        if cols.is_empty() {
            "1".to_owned()
        } else {
            cols.join(", ")
        },
        table.quoted(),
    )
}
