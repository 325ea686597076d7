//! The orphans pass: every point of the table, in pages, looked up by its stored key in the
//! check's snapshot; points without a row are orphans.

use super::{point_key, sample, stored_position, Check, TableReport, PAGE};
use crate::config::META_FIELD;
use crate::error::Error;
use crate::event::{Op, TableName};
use crate::mapping::TableMapping;
use crate::source::catalog::Catalog;
use qdrant_client::qdrant::{
    point_id::PointIdOptions, Condition, Filter, PointId, ScrollPointsBuilder,
};
use serde_json::Value;
use std::collections::HashSet;

impl Check<'_> {
    pub async fn orphans(&self, r: &mut TableReport) -> Result<(), Error> {
        let key_types = key_types(self.catalog, &self.layout.columns, &self.mapping.key).await?;
        let mut offset: Option<PointId> = None;
        loop {
            let table = self.table().to_string();
            let filter = if self.older_only {
                crate::sink::qdrant::fence::table_older_than(&table, self.fence)
            } else {
                Filter::must([Condition::matches(format!("{META_FIELD}.table"), table)])
            };
            let mut b = ScrollPointsBuilder::new(self.mapping.collection.as_ref())
                .filter(filter)
                .limit(PAGE as u32)
                .with_payload(true)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                b = b.offset(o);
            }
            let page = self
                .sink
                .client()
                .scroll(b)
                .await
                .map_err(Error::qdrant(format!("scroll {}", self.mapping.collection)))?;
            let mut candidates: Vec<(PointId, Vec<String>, Value)> = Vec::new();
            // Chunk points past chunk 0: (id, key, index), checked against the row's count.
            let mut chunks: Vec<(PointId, Vec<String>, u64)> = Vec::new();
            for p in page.result {
                r.points += 1;
                let payload = Value::from(qdrant_client::Payload::from(p.payload));
                if stored_position(&payload).is_some_and(|pos| pos >= self.fence) {
                    continue;
                }
                let Some(id) = p.id else { continue };
                let Some(key) = stored_key(&payload, &id, self.mapping, &self.layout.columns)
                else {
                    continue;
                };
                let shown = payload[META_FIELD]["key"].clone();
                // Content-defined chunks have ids by content, not by index: the rows pass
                // checks them against their row (`left_over_chunks`).
                let by_index = self.mapping.chunked() && !self.mapping.chunked_by_content();
                if let Some(i) = payload[crate::mapping::chunk::FIELDS[0]]
                    .as_u64()
                    .filter(|i| *i > 0 && by_index)
                {
                    chunks.push((id.clone(), key.clone(), i));
                }
                candidates.push((id, key, shown));
            }
            self.chunks_past_count(&chunks, r).await?;
            if !candidates.is_empty() {
                let present = existing_keys(
                    self.catalog.client(),
                    self.table(),
                    &self.mapping.key,
                    &key_types,
                    self.mapping.row_filter.as_deref(),
                    &candidates,
                )
                .await
                .map_err(self.pg("look up keys"))?;
                let mut repairs = Vec::new();
                for (id, key, shown) in candidates {
                    if !present.contains(&key) {
                        r.orphaned += 1;
                        sample(&mut r.orphaned_keys, shown);
                        repairs.push(Op::Delete {
                            collection: self.mapping.collection.clone(),
                            key: point_key(&self.mapping.collection, &id)?,
                            position: self.fence,
                        });
                    }
                }
                self.repair(&repairs).await?;
            }
            match page.next_page_offset {
                Some(o) => offset = Some(o),
                None => break,
            }
        }
        Ok(())
    }
}

impl Check<'_> {
    /// Chunk points whose index is at or past the count their row's chunk 0 holds (left over by
    /// a longer version of the row) are orphans too. Rows without a chunk 0 are the rows pass's.
    async fn chunks_past_count(
        &self,
        chunks: &[(PointId, Vec<String>, u64)],
        r: &mut TableReport,
    ) -> Result<(), Error> {
        if chunks.is_empty() {
            return Ok(());
        }
        let anchors: Vec<PointId> = chunks
            .iter()
            .map(|(_, key, _)| {
                crate::sink::qdrant::mapping::point_id(&self.mapping.chunk_id(key, 0))
            })
            .collect();
        let found = self.points(anchors.clone(), false).await?;
        let mut repairs = Vec::new();
        for ((id, key, index), anchor) in chunks.iter().zip(&anchors) {
            let count = found
                .iter()
                .find(|p| p.id.as_ref() == Some(anchor))
                .and_then(|p| p.payload.get(crate::mapping::chunk::FIELDS[1]))
                .and_then(|v| v.as_integer());
            if count.is_some_and(|n| *index as i64 >= n) {
                r.orphaned += 1;
                sample(
                    &mut r.orphaned_keys,
                    serde_json::json!({"key": key, "chunk_index": index}),
                );
                repairs.push(Op::Delete {
                    collection: self.mapping.collection.clone(),
                    key: point_key(&self.mapping.collection, id)?,
                    position: self.fence,
                });
            }
        }
        self.repair(&repairs).await
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
    use crate::mapping::oid as o;
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
    row_filter: Option<&str>,
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
    // A row outside the table's `where` has no point: its point is an orphan too.
    let only = row_filter
        .map(|f| format!(" AND ({f})"))
        .unwrap_or_default();
    let sql = format!(
        "SELECT {} FROM {} WHERE ({}) IN (SELECT {} FROM unnest({}) AS u({})){only}",
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
