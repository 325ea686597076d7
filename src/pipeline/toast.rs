//! TOAST merges read back from PostgreSQL.
//!
//! An UPDATE that leaves a TOASTed column unchanged carries no value for it, so the change is a
//! merge into the stored point (its other fields and vectors). A merge cannot stand alone when
//! the point is missing, when the row is chunked (its chunks are cut from the whole text) or
//! custom-sharded (a merge cannot move a point to another shard key), or when it sets a field
//! to NULL (Qdrant's set-payload removes a key given null, where an upsert stores it): then the
//! row is read as it is now and written whole, at the change's position. A row gone by then is
//! dropped (its delete follows in the stream); one that no longer maps comes back to be parked.

use crate::config::SourceConfig;
use crate::error::Error;
use crate::event::Op;
use crate::lsn::Lsn;
use crate::mapping::{MappingError, Mappings};
use crate::metrics::names;
use crate::sink::Sink;
use crate::source::catalog::Catalog;

/// The connection merges read rows with, opened on first use and dropped after a failure (the
/// next read opens another).
pub struct SourceReads {
    source: SourceConfig,
    catalog: tokio::sync::Mutex<Option<Catalog>>,
}

impl SourceReads {
    pub fn new(source: SourceConfig) -> Self {
        Self {
            source,
            catalog: tokio::sync::Mutex::new(None),
        }
    }

    /// `ops` with each merge that cannot stand alone replaced by an upsert of the current row
    /// (or dropped when the row is gone), and the rows read back that cannot be mapped.
    pub async fn resolve<S: Sink>(
        &self,
        sink: &S,
        mappings: &Mappings,
        ops: Vec<Op>,
    ) -> Result<(Vec<Op>, Vec<(MappingError, Lsn)>), Error> {
        let mut out = Vec::with_capacity(ops.len());
        let mut unmappable = Vec::new();
        for op in ops {
            let Op::Merge {
                collection,
                doc,
                table,
                row,
            } = &op
            else {
                out.push(op);
                continue;
            };
            // During a rebuild the old collection's merges map with its own (shadow) mapping.
            let Some(mapping) = mappings.get(table).and_then(|m| m.writing(collection)) else {
                out.push(op);
                continue;
            };
            if !mapping.chunked()
                && !mapping.sharded()
                && !doc.payload.values().any(serde_json::Value::is_null)
                && sink
                    .missing(collection, std::slice::from_ref(&doc.key))
                    .await?
                    .is_empty()
            {
                out.push(op);
                continue;
            }
            metrics::counter!(names::TOAST_FETCHES, "table" => table.to_string()).increment(1);
            let key = mapping.key_values(row);
            let Some(now) = self.fetch(table, &row.columns, &key).await? else {
                tracing::debug!(table = %table, key = %doc.key, "row gone before its TOAST merge; its delete follows");
                continue;
            };
            match mapping.document(&now, doc.key.clone(), doc.position, 0) {
                Ok(mut full) => {
                    // Keep the change's own commit time.
                    if doc.meta.is_some() {
                        full.meta = doc.meta.clone();
                    }
                    if mapping.chunked() {
                        out.extend(mapping.chunks(&now, full, false));
                    } else {
                        out.push(Op::Upsert {
                            collection: collection.clone(),
                            doc: full,
                            copied: false,
                        });
                    }
                }
                Err(e) => unmappable.push((e, Lsn(doc.position.commit_lsn))),
            }
        }
        Ok((out, unmappable))
    }

    /// The row of `table` with `key` as it is now (`None`: gone).
    async fn fetch(
        &self,
        table: &crate::event::TableName,
        columns: &[crate::event::Column],
        key: &[(String, String, u32)],
    ) -> Result<Option<crate::event::Row>, Error> {
        let mut catalog = self.catalog.lock().await;
        if catalog.is_none() {
            *catalog = Some(Catalog::connect(&self.source).await?);
        }
        let fetched = catalog
            .as_ref()
            .expect("connected above")
            .fetch_row(table, columns, key)
            .await;
        if fetched.is_err() {
            *catalog = None;
        }
        fetched
    }
}
