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

use crate::config::{Config, Distance, TableConfig, META_FIELD};
use crate::error::Error;
use crate::event::{Change, ChangeKind, Datum, Op, PointKey, Row, TableName, Vectors};
use crate::lsn::{Lsn, Position};
use crate::mapping::TableMapping;
use crate::metrics::names;
use crate::sink::qdrant::{self, mapping as qmap, QdrantSink};
use crate::sink::Sink;
use crate::source::catalog::Catalog;
use qdrant_client::qdrant::{
    point_id::PointIdOptions, vector_output, vectors_output, Condition, Filter, GetPointsBuilder,
    PointId, ScrollPointsBuilder, VectorOutput,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const PAGE: usize = 500;
const SAMPLES: usize = 10;
/// How long verify waits for the connector to apply what its snapshot shows.
const CATCH_UP: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TableReport {
    pub table: String,
    pub collection: String,
    pub rows: u64,
    pub points: u64,
    pub missing: u64,
    pub orphaned: u64,
    pub stale: u64,
    /// Points changed while the check ran (not compared).
    pub skipped_changed: u64,
    /// Rows the mapping rejects (the connector dead-letters them); not counted as drift.
    pub unmappable: u64,
    pub missing_keys: Vec<Value>,
    pub orphaned_keys: Vec<Value>,
    pub stale_keys: Vec<Value>,
    pub repaired: u64,
    /// The connector had not applied everything the snapshot shows within the wait.
    pub lagging: bool,
    /// Unix seconds when the check ended.
    pub checked_at: i64,
}

impl TableReport {
    pub fn drift(&self) -> u64 {
        self.missing + self.orphaned + self.stale
    }
}

/// Verifies (and with `repair`, fixes then re-verifies) the config's tables, or `only`.
pub async fn run(
    cfg: &Config,
    only: Option<&str>,
    repair: bool,
) -> Result<Vec<TableReport>, Error> {
    let tables: Vec<&TableConfig> = match only {
        Some(t) => {
            let name = TableName::parse(t);
            let found: Vec<_> = cfg
                .tables
                .iter()
                .filter(|c| TableName::parse(&c.table) == name)
                .collect();
            if found.is_empty() {
                return Err(Error::config(
                    "--table",
                    format!("{name} is not one of the config's [[tables]]"),
                ));
            }
            found
        }
        None => cfg.tables.iter().collect(),
    };
    let catalog = Catalog::connect(&cfg.source).await?;
    catalog.set_copy_session().await?;
    let keys = catalog
        .resolve_keys(&tables.iter().map(|t| (*t).clone()).collect::<Vec<_>>())
        .await?;
    // A second connection reads the present while the check's snapshot is open on the first.
    let present = Catalog::connect(&cfg.source).await?;
    let sink = QdrantSink::new(qdrant::client(&cfg.qdrant)?);
    let mut out = Vec::new();
    for (t, key) in tables.into_iter().zip(keys) {
        let mapping = TableMapping::new(t, key);
        let mut report = verify_table(cfg, &catalog, &present, &sink, t, &mapping, repair).await?;
        if repair && report.drift() > 0 {
            let repaired = report.drift();
            report = verify_table(cfg, &catalog, &present, &sink, t, &mapping, false).await?;
            report.repaired = repaired;
        }
        report.checked_at = chrono::Utc::now().timestamp();
        out.push(report);
    }
    // The running connector exports the last result (see `export_last`).
    let path = cfg.checkpoint.verify_path();
    let bytes = serde_json::to_vec_pretty(&out).expect("report serializes");
    crate::checkpoint::write_atomically(&path, &bytes)
        .map_err(Error::io(format!("write verify report {}", path.display())))?;
    Ok(out)
}

/// Sets the `pg2qdrant_verify_*` gauges from the last report `verify` wrote beside the
/// checkpoint, when it changed since `seen` (its modification time). Called by the connector.
pub fn export_last(cfg: &Config, seen: &mut Option<std::time::SystemTime>) {
    let path = cfg.checkpoint.verify_path();
    let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
        return;
    };
    if *seen == Some(modified) {
        return;
    }
    *seen = Some(modified);
    match std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<TableReport>>(&b).ok())
    {
        Some(reports) => reports.iter().for_each(record_metrics),
        None => tracing::warn!(path = %path.display(), "cannot read the last verify report"),
    }
}

fn record_metrics(r: &TableReport) {
    let t = r.table.clone();
    metrics::gauge!(names::VERIFY_ROWS, "table" => t.clone()).set(r.rows as f64);
    metrics::gauge!(names::VERIFY_MISSING, "table" => t.clone()).set(r.missing as f64);
    metrics::gauge!(names::VERIFY_ORPHANED, "table" => t.clone()).set(r.orphaned as f64);
    metrics::gauge!(names::VERIFY_STALE, "table" => t.clone()).set(r.stale as f64);
    metrics::gauge!(names::VERIFY_TIMESTAMP, "table" => t).set(r.checked_at as f64);
}

fn sample(list: &mut Vec<Value>, key: Value) {
    if list.len() < SAMPLES {
        list.push(key);
    }
}

async fn verify_table(
    cfg: &Config,
    catalog: &Catalog,
    present: &Catalog,
    sink: &QdrantSink,
    t: &TableConfig,
    mapping: &TableMapping,
    repair: bool,
) -> Result<TableReport, Error> {
    let table = mapping.table.clone();
    let collection = mapping.collection.clone();
    let mut r = TableReport {
        table: table.to_string(),
        collection: collection.to_string(),
        ..Default::default()
    };
    let layout = catalog.layout(&table, &mapping.key).await?;
    let client = catalog.client();
    let pg = |what: &str| Error::pg(format!("verify {table}: {what}"));
    let start = catalog.current_wal_lsn().await?;
    catalog.wait_running_transactions().await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(pg("begin"))?;
    let result = async {
        let cols: Vec<String> = layout
            .columns
            .iter()
            .map(|c| crate::event::quote_ident(&c.name))
            .collect();
        client
            .batch_execute(&format!(
                "DECLARE verify_rows NO SCROLL CURSOR FOR SELECT {} FROM {}",
                cols.join(", "),
                table.quoted()
            ))
            .await
            .map_err(pg("open cursor"))?;
        r.lagging = !catch_up(catalog, &cfg.source.slot).await?;
        if r.lagging {
            tracing::warn!(table = %table, "the connector has not applied everything this check sees (not running, or lagging): missing and stale counts may include changes not applied yet");
        }
        let fence = Position {
            commit_lsn: start.as_u64(),
            seq: 0,
        };
        let bar = progress_bar(&table, layout.estimated_rows);
        let distance_of = |name: &str| -> Distance {
            t.vector_columns()
                .into_iter()
                .find(|(n, ..)| n == name)
                .map_or(Distance::Dot, |(.., d)| d)
        };
        // Rows pass.
        loop {
            let rows = fetch(client, &layout.columns).await.map_err(pg("fetch rows"))?;
            if rows.is_empty() {
                break;
            }
            r.rows += rows.len() as u64;
            bar.set_length(bar.length().unwrap_or(0).max(r.rows));
            bar.set_position(r.rows);
            let mut expected = Vec::with_capacity(rows.len());
            for row in rows {
                let change = Change {
                    table: table.clone(),
                    position: fence,
                    commit_time_micros: 0,
                    kind: ChangeKind::Insert { new: row.clone() },
                };
                match mapping.ops(&change) {
                    Ok(mut ops) => expected.push((ops.pop().expect("one op per insert"), row)),
                    Err(_) => r.unmappable += 1,
                }
            }
            let ids: Vec<PointId> = expected
                .iter()
                .map(|(op, _)| qmap::point_id(op_key(op)))
                .collect();
            let stored = sink
                .client()
                .get_points(
                    GetPointsBuilder::new(collection.as_ref(), ids)
                        .with_payload(true)
                        .with_vectors(true),
                )
                .await
                .map_err(Error::qdrant(format!("read points of {collection}")))?
                .result;
            let mut repairs = Vec::new();
            for (op, row) in expected {
                let id = qmap::point_id(op_key(&op));
                let point = stored.iter().find(|p| p.id.as_ref() == Some(&id));
                let key = mapping.key_json(&row);
                match (&op, point) {
                    (Op::Upsert { .. }, None) => {
                        if still_exists(present, &table, mapping, &row).await? {
                            r.missing += 1;
                            sample(&mut r.missing_keys, key);
                            repairs.push(op);
                        }
                    }
                    (Op::Upsert { doc, .. }, Some(p)) => {
                        let payload = Value::from(qdrant_client::Payload::from(p.payload.clone()));
                        if stored_position(&payload).is_some_and(|pos| pos >= fence) {
                            r.skipped_changed += 1;
                            continue;
                        }
                        let vectors = p.vectors.clone().and_then(stored_vectors);
                        if compare::difference(&doc.payload, doc.vectors.as_ref(), &payload, vectors.as_ref(), distance_of).is_some() {
                            r.stale += 1;
                            sample(&mut r.stale_keys, key);
                            repairs.push(op);
                        }
                    }
                    // A soft-deleted row: its point must not exist.
                    (Op::Delete { .. }, Some(_)) => {
                        r.orphaned += 1;
                        sample(&mut r.orphaned_keys, key);
                        repairs.push(op);
                    }
                    _ => {}
                }
            }
            if repair && !repairs.is_empty() {
                sink.write(&repairs).await?;
            }
        }
        bar.finish_and_clear();
        // Orphans pass.
        let key_types = key_types(catalog, &layout.columns, &mapping.key).await?;
        let mut offset: Option<PointId> = None;
        loop {
            let mut b = ScrollPointsBuilder::new(collection.as_ref())
                .filter(Filter::must([Condition::matches(
                    format!("{META_FIELD}.table"),
                    table.to_string(),
                )]))
                .limit(PAGE as u32)
                .with_payload(true)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                b = b.offset(o);
            }
            let page = sink
                .client()
                .scroll(b)
                .await
                .map_err(Error::qdrant(format!("scroll {collection}")))?;
            let mut candidates: Vec<(PointId, Vec<String>, Value)> = Vec::new();
            for p in page.result {
                r.points += 1;
                let payload = Value::from(qdrant_client::Payload::from(p.payload));
                if stored_position(&payload).is_some_and(|pos| pos >= fence) {
                    continue;
                }
                let Some(id) = p.id else { continue };
                let Some(key) = stored_key(&payload, &id, mapping, &layout.columns) else {
                    continue;
                };
                let shown = payload[META_FIELD]["key"].clone();
                candidates.push((id, key, shown));
            }
            if !candidates.is_empty() {
                let present = existing_keys(client, &table, &mapping.key, &key_types, &candidates)
                    .await
                    .map_err(pg("look up keys"))?;
                let mut repairs = Vec::new();
                for (id, key, shown) in candidates {
                    if !present.contains(&key) {
                        r.orphaned += 1;
                        sample(&mut r.orphaned_keys, shown);
                        repairs.push(Op::Delete {
                            collection: collection.clone(),
                            key: point_key(&id),
                            position: fence,
                        });
                    }
                }
                if repair && !repairs.is_empty() {
                    sink.write(&repairs).await?;
                }
            }
            match page.next_page_offset {
                Some(o) => offset = Some(o),
                None => break,
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    let _ = client.batch_execute("ROLLBACK").await;
    result?;
    if repair {
        r.repaired = r.drift();
    }
    Ok(r)
}

/// Rows checked against the estimate, on stderr when it is a terminal (hidden otherwise).
fn progress_bar(table: &TableName, estimated: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(estimated.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "verify {prefix} [{bar:30}] {pos}/{len} rows  {per_sec}  ETA {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_prefix(table.to_string());
    bar
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

async fn fetch(
    client: &tokio_postgres::Client,
    columns: &Arc<[crate::event::Column]>,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let messages = client
        .simple_query(&format!("FETCH {PAGE} FROM verify_rows"))
        .await?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(Row {
                columns: columns.clone(),
                values: (0..columns.len())
                    .map(|i| r.get(i).map_or(Datum::Null, |v| Datum::Text(v.to_owned())))
                    .collect(),
            }),
            _ => None,
        })
        .collect())
}

fn op_key(op: &Op) -> &PointKey {
    match op {
        Op::Upsert { doc, .. } | Op::Merge { doc, .. } => &doc.key,
        Op::Delete { key, .. } => key,
        Op::Truncate { .. } => unreachable!("inserts map to upserts or deletes"),
    }
}

fn stored_position(payload: &Value) -> Option<Position> {
    let m = payload.get(META_FIELD)?;
    Some(Position {
        commit_lsn: m.get("lsn")?.as_u64()?,
        seq: m.get("seq")?.as_u64()?,
    })
}

fn point_key(id: &PointId) -> PointKey {
    match &id.point_id_options {
        Some(PointIdOptions::Num(n)) => PointKey::Num(*n),
        Some(PointIdOptions::Uuid(u)) => PointKey::Uuid(u.parse().unwrap_or_default()),
        None => PointKey::Num(0),
    }
}

/// The row key a point belongs to: `_pg2qdrant.key`, else the id itself when the key is one
/// integer or uuid column. `None`: unknown (a point written before keys were stored).
fn stored_key(
    payload: &Value,
    id: &PointId,
    mapping: &TableMapping,
    columns: &[crate::event::Column],
) -> Option<Vec<String>> {
    if let Some(Value::Object(k)) = payload.get(META_FIELD).and_then(|m| m.get("key")) {
        return mapping
            .key
            .iter()
            .map(|c| k.get(c).and_then(Value::as_str).map(str::to_owned))
            .collect();
    }
    let [only] = mapping.key.as_slice() else {
        return None;
    };
    let oid = columns.iter().find(|c| &c.name == only)?.type_oid;
    use crate::mapping::value::oid as o;
    match (&id.point_id_options, oid) {
        (Some(PointIdOptions::Num(n)), o::INT2 | o::INT4 | o::INT8 | o::OID) => {
            Some(vec![n.to_string()])
        }
        (Some(PointIdOptions::Uuid(u)), o::UUID) => Some(vec![u.clone()]),
        _ => None,
    }
}

async fn key_types(
    catalog: &Catalog,
    columns: &[crate::event::Column],
    key: &[String],
) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for k in key {
        let c = columns.iter().find(|c| &c.name == k).ok_or_else(|| {
            Error::prerequisite(
                format!("key column {k} is not in the table"),
                "fix tables[].key",
            )
        })?;
        let row = catalog
            .client()
            .query_one(
                "SELECT format_type($1, $2)",
                &[&c.type_oid, &c.type_modifier],
            )
            .await
            .map_err(Error::pg("key column type"))?;
        out.push(row.get(0));
    }
    Ok(out)
}

/// Which of the candidates' keys have a row (in the current transaction's snapshot).
async fn existing_keys(
    client: &tokio_postgres::Client,
    table: &TableName,
    key: &[String],
    types: &[String],
    candidates: &[(PointId, Vec<String>, Value)],
) -> Result<HashSet<Vec<String>>, tokio_postgres::Error> {
    let cols: Vec<String> = key.iter().map(|k| crate::event::quote_ident(k)).collect();
    let casts: Vec<String> = (0..key.len())
        .map(|i| format!("u.c{i}::{}", types[i]))
        .collect();
    let args: Vec<String> = (0..key.len())
        .map(|i| format!("${}::text[]", i + 1))
        .collect();
    let names: Vec<String> = (0..key.len()).map(|i| format!("c{i}")).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE ({}) IN (SELECT {} FROM unnest({}) AS u({}))",
        cols.iter()
            .map(|c| format!("{c}::text"))
            .collect::<Vec<_>>()
            .join(", "),
        table.quoted(),
        cols.join(", "),
        casts.join(", "),
        args.join(", "),
        names.join(", ")
    );
    let params: Vec<Vec<String>> = (0..key.len())
        .map(|i| candidates.iter().map(|(_, k, _)| k[i].clone()).collect())
        .collect();
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let rows = client.query(&sql, &refs).await?;
    Ok(rows
        .iter()
        .map(|r| (0..key.len()).map(|i| r.get::<_, String>(i)).collect())
        .collect())
}

/// Whether the row still exists now (outside the check's snapshot).
async fn still_exists(
    catalog: &Catalog,
    table: &TableName,
    mapping: &TableMapping,
    row: &Row,
) -> Result<bool, Error> {
    let key = mapping.key_values(row);
    Ok(catalog
        .fetch_row(table, &row.columns, &key)
        .await?
        .is_some())
}

#[allow(deprecated)]
fn stored_vectors(v: qdrant_client::qdrant::VectorsOutput) -> Option<Vectors> {
    fn dense(v: VectorOutput) -> Option<Vec<f32>> {
        match v.vector {
            Some(vector_output::Vector::Dense(d)) => Some(d.data),
            Some(_) => None,
            None => Some(v.data),
        }
    }
    match v.vectors_options? {
        vectors_output::VectorsOptions::Vector(v) => dense(v).map(Vectors::Default),
        vectors_output::VectorsOptions::Vectors(named) => Some(Vectors::Named(
            named
                .vectors
                .into_iter()
                .filter_map(|(n, v)| dense(v).map(|d| (n, d)))
                .collect(),
        )),
    }
}
