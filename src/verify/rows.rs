//! The rows pass: every row of the snapshot, in pages, against its point (missing, stale, and
//! points of soft-deleted rows).

use super::{compare, op_key, sample, stored_position, Check, TableReport, PAGE};
use crate::config::Distance;
use crate::error::Error;
use crate::event::{Change, ChangeKind, Op, PointKey, Row, TableName};
use crate::mapping::TableMapping;
use crate::sink::qdrant::mapping as qmap;
use crate::source::catalog::Catalog;
use crate::source::chunk::text_row;
use qdrant_client::qdrant::PointId;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

impl Check<'_> {
    pub async fn open_cursor(&self) -> Result<(), Error> {
        let cols: Vec<String> = self
            .layout
            .columns
            .iter()
            .map(|c| crate::event::quote_ident(&c.name))
            .collect();
        let only = match self.keys {
            None => String::new(),
            // Keys as `key_json` gives them: each key column's text form.
            Some(keys) => {
                let literal = |v: Option<&Value>| match v {
                    Some(Value::String(s)) => format!("'{}'", s.replace('\'', "''")),
                    Some(v) if !v.is_null() => format!("'{}'", v.to_string().replace('\'', "''")),
                    _ => "NULL".to_owned(),
                };
                let columns: Vec<String> = self
                    .mapping
                    .key
                    .iter()
                    .map(|k| format!("{}::text", crate::event::quote_ident(k)))
                    .collect();
                let rows: Vec<String> = keys
                    .iter()
                    .map(|key| {
                        let values: Vec<String> = self
                            .mapping
                            .key
                            .iter()
                            .map(|k| literal(key.get(k)))
                            .collect();
                        format!("ROW({})", values.join(", "))
                    })
                    .collect();
                if rows.is_empty() {
                    " WHERE false".to_owned()
                } else {
                    format!(
                        " WHERE ROW({}) IN ({})",
                        columns.join(", "),
                        rows.join(", ")
                    )
                }
            }
        };
        // Only the rows the table's `where` mirrors: the others must have no point.
        let only = match (&self.mapping.row_filter, only.is_empty()) {
            (Some(f), true) => format!(" WHERE ({f})"),
            (Some(f), false) => format!("{only} AND ({f})"),
            (None, _) => only,
        };
        self.catalog
            .client()
            .batch_execute(&format!(
                "DECLARE verify_rows NO SCROLL CURSOR FOR SELECT {} FROM {}{only}",
                cols.join(", "),
                self.table().quoted()
            ))
            .await
            .map_err(self.pg("open cursor"))
    }

    pub async fn rows(&self, r: &mut TableReport) -> Result<(), Error> {
        let client = self.catalog.client();
        let bar = progress_bar(self.table(), self.layout.estimated_rows);
        loop {
            let rows = fetch(client, &self.layout.columns)
                .await
                .map_err(self.pg("fetch rows"))?;
            if rows.is_empty() {
                break;
            }
            r.rows += rows.len() as u64;
            bar.set_length(bar.length().unwrap_or(0).max(r.rows));
            bar.set_position(r.rows);
            let Expected { ops, mut trims } = self.expected(rows, r);
            let ids: Vec<PointId> = ops
                .iter()
                .map(|(op, _)| qmap::point_id(op_key(op)))
                .collect();
            let stored = self.points(ids, true).await?;
            let mut repairs = Vec::new();
            self.left_over_chunks(&mut trims, r, &mut repairs).await?;
            for (op, row) in ops {
                let id = qmap::point_id(op_key(&op));
                let point = stored.iter().find(|p| p.id.as_ref() == Some(&id));
                let key = self.mapping.key_json(&row);
                let keys = match (&op, point) {
                    (Op::Upsert { .. }, None) => {
                        if !still_exists(self.present, self.table(), self.mapping, &row).await? {
                            continue;
                        }
                        r.missing += 1;
                        &mut r.missing_keys
                    }
                    (Op::Upsert { doc, .. }, Some(p)) => {
                        let payload = Value::from(qdrant_client::Payload::from(p.payload.clone()));
                        if stored_position(&payload).is_some_and(|pos| pos >= self.fence) {
                            r.skipped_changed += 1;
                            continue;
                        }
                        let Some(why) = self.stale(doc, p, &payload) else {
                            continue;
                        };
                        tracing::debug!(table = %self.table(), key = %key, "stale point: {why}");
                        r.stale += 1;
                        &mut r.stale_keys
                    }
                    // A soft-deleted row: its point must not exist.
                    (Op::Delete { .. } | Op::DeleteChunks { .. }, Some(_)) => {
                        r.orphaned += 1;
                        sample(&mut r.orphaned_keys, key);
                        repairs.push(op);
                        continue;
                    }
                    _ => continue,
                };
                sample(keys, key);
                // A chunked row's removal of chunks past its count, before its repairs.
                if let Some(t) = op.row_key().and_then(|a| trims.remove(a)) {
                    repairs.push(t);
                }
                repairs.push(op);
            }
            self.repair(&repairs).await?;
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Content-defined chunks (`mapping::chunk::content`): a row's chunk points other than
    /// those its text gives now (the trim's `keep`; none for a soft-deleted row), older than
    /// the check, are left over from an earlier version: orphans. The trim itself is their
    /// repair (it deletes exactly them).
    async fn left_over_chunks(
        &self,
        trims: &mut HashMap<PointKey, Op>,
        r: &mut TableReport,
        repairs: &mut Vec<Op>,
    ) -> Result<(), Error> {
        if !self.mapping.chunked_by_content() {
            return Ok(());
        }
        let mut found = Vec::new();
        for (anchor, trim) in trims.iter() {
            let Op::DeleteChunks {
                table, key, keep, ..
            } = trim
            else {
                continue;
            };
            let filter = crate::sink::qdrant::fence::row_chunks_older_than(
                &table.to_string(),
                key,
                0,
                keep,
                self.fence,
            );
            let n = self
                .sink
                .client()
                .count(
                    qdrant_client::qdrant::CountPointsBuilder::new(
                        self.mapping.collection.as_ref(),
                    )
                    .filter(filter)
                    .exact(true),
                )
                .await
                .map_err(Error::qdrant(format!("count {}", self.mapping.collection)))?
                .result
                .map_or(0, |c| c.count);
            if n > 0 {
                r.orphaned += n;
                sample(
                    &mut r.orphaned_keys,
                    serde_json::json!({"key": key, "left_over_chunks": n}),
                );
                found.push(anchor.clone());
            }
        }
        for anchor in found {
            repairs.extend(trims.remove(&anchor));
        }
        Ok(())
    }

    /// The ops a page of rows maps to, each with its row, and the chunk trims apart; rows that
    /// cannot be mapped are counted in `r`.
    fn expected(&self, rows: Vec<Row>, r: &mut TableReport) -> Expected {
        let mut out = Expected::default();
        for row in rows {
            let change = Change {
                table: self.table().clone(),
                position: self.fence,
                commit_time_micros: 0,
                kind: ChangeKind::Insert { new: row.clone() },
            };
            match self.mapping.ops(&change) {
                Ok(ops) => {
                    for op in ops {
                        match op {
                            Op::DeleteChunks {
                                from,
                                ref anchor,
                                ref keep,
                                ..
                            } if from > 0
                                || !keep.is_empty()
                                || self.mapping.chunked_by_content() =>
                            {
                                out.trims.insert(anchor.clone(), op);
                            }
                            op => out.ops.push((op, row.clone())),
                        }
                    }
                }
                Err(e) => {
                    r.unmappable += 1;
                    if self.keys.is_some() {
                        r.unmappable_reasons
                            .push((self.mapping.key_json(&row), e.reason));
                    }
                }
            }
        }
        out
    }

    /// Why the stored point `p` (its payload `payload`) differs from `doc`, the row's document:
    /// a payload field, a vector, or a computed vector whose point records other text or another
    /// model than the row would be embedded with now.
    fn stale(
        &self,
        doc: &crate::event::Document,
        p: &qdrant_client::qdrant::RetrievedPoint,
        payload: &Value,
    ) -> Option<String> {
        let distance_of = |name: &str| -> Distance {
            self.config
                .vector_columns()
                .into_iter()
                .find(|v| v.name == name)
                .map_or(Distance::Dot, |v| v.distance)
        };
        let vectors = p.vectors.clone().and_then(qmap::stored_vectors);
        compare::difference(
            &doc.payload,
            crate::mapping::bm25::with_computed(doc).as_ref(),
            payload,
            vectors.as_ref(),
            distance_of,
        )
        .or_else(|| {
            crate::embed::record::stale_embedding(doc, payload, self.identities)
                .map(|name| format!("{name} was embedded from other text or by another model"))
        })
    }
}

/// What a page of rows maps to: (op, its row), and a chunked row's removal of chunks past its
/// count by the row's key (written before that row's repairs).
#[derive(Default)]
struct Expected {
    ops: Vec<(Op, Row)>,
    trims: HashMap<PointKey, Op>,
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
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(text_row(&r, columns)),
            _ => None,
        })
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
