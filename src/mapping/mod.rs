//! Table mapping: a committed [`Change`] of a watched table → sink [`Op`]s.
//!
//! Pure and synchronous. A row that cannot be mapped yields a [`MappingError`] naming the table,
//! the key and the reason; the caller dead-letters it and streams on.

pub mod binary;
pub mod bm25;
pub mod chunk;
pub mod key;
pub mod oid;
mod position;
pub mod schema;
pub mod shard;
pub mod sparsevec;
pub mod types;
pub mod value;
mod vectors;

use crate::config::{TableConfig, META_FIELD};
use crate::event::{Change, ChangeKind, Column, Datum, Document, Op, PointKey, Row, TableName};
use crate::lsn::Position;
pub use position::{meta, payload_json, set_positions, PG_EPOCH_UNIX_MICROS};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use types::{Kind, Types};
use vectors::VectorSpec;

/// Watched tables by name: their compiled mappings.
pub type Mappings = std::collections::HashMap<TableName, TableMapping>;

/// A row that cannot be written, with what to tell the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingError {
    pub table: TableName,
    /// The row's key values (JSON object), when they could be read.
    pub key: Value,
    pub reason: String,
    pub row: Value,
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table {} key {}: {}", self.table, self.key, self.reason)
    }
}

/// A compiled `[[tables]]` entry.
#[derive(Debug, Clone)]
pub struct TableMapping {
    pub table: TableName,
    /// `schema.name`, as each point's metadata stores it.
    name: Arc<str>,
    pub collection: Arc<str>,
    /// Key columns, resolved at start-up (configured, else the primary key).
    pub key: Vec<String>,
    /// `where`: the rows mirrored (the copy and verify read with it; the publication filters
    /// the stream).
    pub row_filter: Option<String>,
    vectors: Vec<VectorSpec>,
    payload: Option<Vec<String>>,
    exclude: HashSet<String>,
    rename: BTreeMap<String, String>,
    unix_seconds: Vec<(String, String)>,
    soft_delete: Option<String>,
    options: value::Options,
    id: crate::config::IdMode,
    /// The database's types (domains map like their base type; enums, pgvector, arrays).
    types: Arc<Types>,
    /// The column naming each row's shard key (`collection_config.sharding.key`; see [`shard`]).
    shard: Option<String>,
    /// Chunked table: how its embedding text is split (see [`chunk`]).
    splitter: Option<Arc<chunk::Splitter>>,
    /// While the table's collection is rebuilt (see `rebuild`): the mapping that keeps the old
    /// collection current, until it is retired at the switch.
    shadow: Option<Arc<Shadow>>,
    /// The columns it cannot do without, with their types at start-up (see [`schema`]).
    needs: Vec<schema::Need>,
}

/// The old collection's mapping during a rebuild.
#[derive(Debug)]
pub struct Shadow {
    pub mapping: TableMapping,
    retired: std::sync::atomic::AtomicBool,
}

impl TableMapping {
    /// `key` is the resolved key column list (see `source::catalog`). Fails on a text template
    /// that does not parse (config validation refuses it first; this keeps a mapping from ever
    /// embedding an empty text instead).
    pub fn new(cfg: &TableConfig, key: Vec<String>) -> Result<Self, crate::error::Error> {
        let vectors = vectors::specs(cfg)?;
        let table = TableName::parse(&cfg.table);
        let mut m = Self {
            name: Arc::from(table.to_string()),
            table,
            collection: Arc::from(cfg.collection.as_str()),
            key,
            vectors,
            payload: cfg.payload.clone(),
            exclude: cfg.exclude.iter().cloned().collect(),
            rename: cfg.rename.clone(),
            unix_seconds: cfg
                .unix_seconds
                .iter()
                .map(|u| (u.column.clone(), u.field.clone()))
                .collect(),
            soft_delete: cfg.soft_delete.clone(),
            row_filter: cfg.row_filter.clone(),
            options: value::Options {
                numeric_string: cfg.numeric == crate::config::NumericMode::String,
            },
            id: cfg.id,
            types: Arc::default(),
            shard: cfg
                .collection_config
                .sharding
                .as_ref()
                .map(|s| s.key.clone()),
            splitter: None,
            shadow: None,
            needs: Vec::new(),
        };
        m.needs = m.needs_of();
        Ok(m)
    }

    /// Keeps `old` (the old collection's mapping) current next to this one during a rebuild.
    pub fn with_shadow(mut self, old: TableMapping) -> Self {
        self.shadow = Some(Arc::new(Shadow {
            mapping: old,
            retired: Default::default(),
        }));
        self
    }

    /// The old collection's ops for a streamed change while a rebuild keeps it current.
    pub fn shadow_ops(&self, change: &Change) -> Option<Result<Vec<Op>, MappingError>> {
        let s = self.shadow.as_ref()?;
        if s.retired.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        Some(s.mapping.ops(change))
    }

    /// The mapping that writes `collection`: this one, or its shadow during a rebuild.
    pub fn writing(&self, collection: &str) -> Option<&TableMapping> {
        if &*self.collection == collection {
            return Some(self);
        }
        self.shadow
            .as_ref()
            .map(|s| &s.mapping)
            .filter(|m| &*m.collection == collection)
    }

    /// The old collection is no longer written (the alias was switched away from it). Returns
    /// its name.
    pub fn retire_shadow(&self) -> Option<Arc<str>> {
        let s = self.shadow.as_ref()?;
        s.retired.store(true, std::sync::atomic::Ordering::SeqCst);
        Some(s.mapping.collection.clone())
    }

    /// Makes the table chunked (its config has `chunk`).
    pub fn with_splitter(mut self, splitter: chunk::Splitter) -> Self {
        self.splitter = Some(Arc::new(splitter));
        self
    }

    /// Whether each row is several chunk points.
    pub fn chunked(&self) -> bool {
        self.splitter.is_some()
    }

    /// Whether its chunks are cut by content, with ids by content (`chunk::content`).
    pub fn chunked_by_content(&self) -> bool {
        self.splitter.as_ref().is_some_and(|s| s.by_content())
    }

    /// The database's types (see `source::catalog::Catalog::types`).
    pub fn with_types(mut self, types: Arc<Types>) -> Self {
        self.types = types;
        self
    }

    pub fn types(&self) -> &Arc<Types> {
        &self.types
    }

    /// How values of this type are read (the database's type registry).
    pub fn kind(&self, type_oid: u32) -> Kind {
        self.types.kind(type_oid)
    }

    /// A value's text form: as sent, or PostgreSQL's text output of a binary scalar. `None` for
    /// NULL and unchanged TOAST.
    pub fn text_of<'a>(
        &self,
        col: &Column,
        datum: &'a Datum,
    ) -> Option<Result<Cow<'a, str>, String>> {
        match datum {
            Datum::Text(t) => Some(Ok(Cow::Borrowed(t))),
            Datum::Binary(b) => Some(self.binary_text(col, b).map(Cow::Owned)),
            Datum::Null | Datum::Unchanged => None,
        }
    }

    fn binary_text(&self, col: &Column, b: &[u8]) -> Result<String, String> {
        match self.kind(col.type_oid) {
            Kind::Scalar(s) => binary::text_form(s, b),
            _ => Err(format!(
                "column {:?} arrived in binary form and is not a scalar pg2qdrant can print",
                col.name
            )),
        }
    }

    /// Whether the vector `name` is one of `sparse_vectors`.
    pub fn is_sparse(&self, name: &str) -> bool {
        self.vectors.iter().any(|v| v.sparse && v.name == name)
    }

    /// Columns that hold vectors (never copied into the payload by default).
    pub fn vector_columns(&self) -> impl Iterator<Item = &str> {
        self.vectors
            .iter()
            .filter(|v| v.embed.is_none())
            .map(|v| v.column.as_str())
    }

    /// The texts to embed for `row`'s vectors computed from text. A vector whose template reads
    /// an unchanged TOAST value is left out: the stored vector stays.
    fn embed_inputs(&self, row: &Row) -> Result<Vec<crate::event::EmbedInput>, MappingError> {
        let mut out = Vec::new();
        for spec in &self.vectors {
            let Some((embedder, tpl)) = &spec.embed else {
                continue;
            };
            let mut unchanged = false;
            let mut failed = None;
            let text = tpl.render(|col| match row.column(col) {
                None => {
                    failed.get_or_insert_with(|| {
                        format!(
                            "text column {col:?} of vector {:?} is not in the table",
                            spec.name
                        )
                    });
                    None
                }
                Some((_, Datum::Unchanged)) => {
                    unchanged = true;
                    None
                }
                Some((c, d)) => match self.text_of(c, d)? {
                    Ok(t) => Some(Cow::Owned(t.into_owned())),
                    Err(e) => {
                        failed.get_or_insert(e);
                        None
                    }
                },
            });
            if let Some(e) = failed {
                return Err(self.error(row, e));
            }
            if !unchanged {
                out.push(crate::event::EmbedInput {
                    vector: spec.name.clone(),
                    embedder: embedder.clone(),
                    text,
                });
            }
        }
        Ok(out)
    }

    /// Maps one change to the operations that bring the collection in step with it.
    pub fn ops(&self, change: &Change) -> Result<Vec<Op>, MappingError> {
        let pos = change.position;
        let commit_time = change.commit_time_micros;
        match &change.kind {
            ChangeKind::Insert { new } => self.write_ops(new, pos, commit_time),
            ChangeKind::Update { old, new } => {
                // Under REPLICA IDENTITY FULL the new tuple may still hold unchanged TOAST
                // values: the old row has them.
                let new = match old {
                    Some(old)
                        if new.has_unchanged()
                            && !old.has_unchanged()
                            && old.columns.len() == new.columns.len() =>
                    {
                        fill_unchanged(new, old)
                    }
                    _ => new.clone(),
                };
                let mut ops = Vec::with_capacity(2);
                if let Some(old) = old {
                    if self.point_key(old)? != self.point_key(&new)? {
                        ops.push(self.delete_op(old, pos)?);
                    }
                }
                ops.extend(self.write_ops(&new, pos, commit_time)?);
                Ok(ops)
            }
            ChangeKind::Delete { old } => Ok(vec![self.delete_op(old, pos)?]),
            // The direct path's sweep: every point of the table older than the copy's start.
            ChangeKind::Truncate | ChangeKind::Sweep => Ok(vec![Op::Truncate {
                collection: self.collection.clone(),
                table: self.table.clone(),
                position: pos,
            }]),
        }
    }

    /// Removes the row's point (a chunked row: all its chunk points).
    fn delete_op(&self, row: &Row, position: Position) -> Result<Op, MappingError> {
        let collection = self.collection.clone();
        if self.chunked() {
            return Ok(Op::DeleteChunks {
                collection,
                table: self.table.clone(),
                key: self.key_json(row),
                anchor: self.point_key(row)?,
                from: 0,
                keep: Vec::new(),
                position,
            });
        }
        Ok(Op::Delete {
            collection,
            key: self.point_key(row)?,
            position,
        })
    }

    /// The ops that write a new row image: one op, or for a chunked row (not a merge) the
    /// removal of chunks past its count and one upsert per chunk.
    fn write_ops(
        &self,
        row: &Row,
        position: Position,
        commit_time: i64,
    ) -> Result<Vec<Op>, MappingError> {
        match self.write_op(row, position, commit_time)? {
            Op::Upsert { doc, copied, .. } if self.chunked() => Ok(self.chunks(row, doc, copied)),
            op => Ok(vec![op]),
        }
    }

    /// A chunked row's ops from its row document (see [`chunk`] for the order).
    pub fn chunks(&self, row: &Row, doc: Document, copied: bool) -> Vec<Op> {
        let splitter = self.splitter.as_ref().expect("a chunked table");
        let Document {
            key: anchor,
            payload,
            meta,
            embed,
            position,
            ..
        } = doc;
        // The dense vector's text is split; each chunk's sparse (BM25) vector is of its piece.
        let Some(input) = embed.iter().find(|e| !self.is_sparse(&e.vector)) else {
            return Vec::new();
        };
        let parts = self.key_parts(row).unwrap_or_default();
        let parts: Vec<(u32, &str)> = parts.iter().map(|(o, t)| (*o, t.as_ref())).collect();
        let pieces = splitter.split(&input.text);
        // Fixed windows: ids by index, the delete trims what is past the new count. Content
        // chunks: ids by content, the delete removes every other chunk point of the row.
        let ids: Vec<PointKey> = if splitter.by_content() {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            pieces
                .iter()
                .map(|p| {
                    let same = seen.entry(p).or_default();
                    *same += 1;
                    key::content_chunk_uuid5(&self.table, &parts, p, *same - 1)
                })
                .collect()
        } else {
            (0..pieces.len())
                .map(|i| key::chunk_uuid5(&self.table, &parts, i))
                .collect()
        };
        let mut ops = Vec::with_capacity(pieces.len() + 1);
        ops.push(Op::DeleteChunks {
            collection: self.collection.clone(),
            table: self.table.clone(),
            key: self.key_json(row),
            anchor: anchor.clone(),
            from: if splitter.by_content() {
                0
            } else {
                pieces.len()
            },
            keep: if splitter.by_content() {
                ids.clone()
            } else {
                Vec::new()
            },
            position,
        });
        for ((i, piece), id) in pieces.iter().enumerate().zip(ids) {
            let mut payload = payload.clone();
            payload.insert(chunk::FIELDS[0].to_owned(), Value::from(i));
            payload.insert(chunk::FIELDS[1].to_owned(), Value::from(pieces.len()));
            payload.insert(chunk::FIELDS[2].to_owned(), Value::from(*piece));
            ops.push(Op::Upsert {
                collection: self.collection.clone(),
                doc: Document {
                    key: id,
                    payload,
                    meta: meta.clone(),
                    vectors: None,
                    embed: embed
                        .iter()
                        .map(|e| crate::event::EmbedInput {
                            text: (*piece).to_owned(),
                            ..e.clone()
                        })
                        .collect(),
                    position,
                    anchor: Some(anchor.clone()),
                },
                copied,
            });
        }
        ops
    }

    /// Upsert, merge (unchanged TOAST present) or delete (soft-deleted) for a new row image.
    fn write_op(
        &self,
        row: &Row,
        position: Position,
        commit_time: i64,
    ) -> Result<Op, MappingError> {
        let collection = self.collection.clone();
        let key = self.point_key(row)?;
        if let Some(col) = &self.soft_delete {
            match row.column(col) {
                Some((c, d)) => match self.text_of(c, d) {
                    Some(Ok(t)) if t == "t" || t == "true" => return self.delete_op(row, position),
                    Some(Err(e)) => return Err(self.error(row, e)),
                    _ => {}
                },
                None => {
                    return Err(self.error(
                        row,
                        format!("soft-delete column {col:?} is not in the table"),
                    ))
                }
            }
        }
        let doc = self.document(row, key, position, commit_time)?;
        if row.has_unchanged() {
            Ok(Op::Merge {
                collection,
                doc,
                table: self.table.clone(),
                row: row.clone(),
            })
        } else {
            Ok(Op::Upsert {
                collection,
                doc,
                copied: false,
            })
        }
    }

    /// The document for a row; unchanged TOAST values are left out (a merge fills them).
    pub fn document(
        &self,
        row: &Row,
        key: PointKey,
        position: Position,
        commit_time: i64,
    ) -> Result<Document, MappingError> {
        let mut payload = Map::new();
        let included = |name: &str| match &self.payload {
            Some(list) => list.iter().any(|c| c == name),
            None => !self.vectors.iter().any(|v| v.column == name) && !self.exclude.contains(name),
        };
        for (col, datum) in row.columns.iter().zip(&row.values) {
            if !included(&col.name) {
                continue;
            }
            let field = self
                .rename
                .get(&col.name)
                .cloned()
                .unwrap_or_else(|| col.name.clone());
            if field == META_FIELD {
                continue; // the metadata's name: the metadata has always taken its place
            }
            let value = match datum {
                Datum::Unchanged => continue,
                Datum::Null => Value::Null,
                Datum::Text(t) => value::to_json_with(self.kind(col.type_oid), t, self.options)
                    .map_err(|e| self.error(row, format!("column {:?}: {e}", col.name)))?,
                Datum::Binary(b) => binary::to_json(self.kind(col.type_oid), b, self.options)
                    .map_err(|e| self.error(row, format!("column {:?}: {e}", col.name)))?,
            };
            payload.insert(field, value);
        }
        for (column, field) in &self.unix_seconds {
            match row.column(column) {
                Some((c, d @ (Datum::Text(_) | Datum::Binary(_)))) => {
                    let kind = self.kind(c.type_oid);
                    let secs = match d {
                        Datum::Binary(b) => binary::unix_seconds(kind, b),
                        Datum::Text(t) => value::unix_seconds(kind, t),
                        _ => unreachable!("matched above"),
                    }
                    .map_err(|e| self.error(row, format!("column {column:?}: {e}")))?;
                    payload.insert(field.clone(), Value::from(secs));
                }
                Some((_, Datum::Null)) => {
                    payload.insert(field.clone(), Value::Null);
                }
                Some((_, Datum::Unchanged)) => {}
                None => {
                    return Err(self.error(
                        row,
                        format!("unix_seconds column {column:?} is not in the table"),
                    ))
                }
            }
        }
        let mut meta = meta(&self.name, commit_time);
        meta.key = self.key_json(row);
        meta.shard = self.shard_key(row)?;
        let vectors = self.vectors(row)?;
        let embed = self.embed_inputs(row)?;
        Ok(Document {
            key,
            payload,
            meta: Some(meta),
            vectors,
            embed,
            position,
            anchor: None,
        })
    }

    /// The row's point id; for a chunked row, its anchor (chunk 0).
    pub fn point_key(&self, row: &Row) -> Result<PointKey, MappingError> {
        // The common key, one integer or uuid column in binary form, is read as it is.
        if let (false, crate::config::IdMode::Auto, [col]) =
            (self.chunked(), self.id, &self.key[..])
        {
            if let Some((c, Datum::Binary(b))) = row.column(col) {
                if let Some(k) = key::binary_point_key(c.type_oid, b) {
                    return Ok(k);
                }
            }
        }
        let parts = self.key_parts(row)?;
        let parts: Vec<(u32, &str)> = parts.iter().map(|(o, t)| (*o, t.as_ref())).collect();
        if self.chunked() {
            return Ok(key::chunk_uuid5(&self.table, &parts, 0));
        }
        Ok(match self.id {
            crate::config::IdMode::Auto => key::point_key(&self.table, &parts),
            crate::config::IdMode::Uuid5 => key::uuid5(&self.table, &parts),
        })
    }

    /// The id of chunk `index` of the row whose key columns have these text forms.
    pub fn chunk_id(&self, key: &[String], index: usize) -> PointKey {
        let parts: Vec<(u32, &str)> = key.iter().map(|k| (0, k.as_str())).collect();
        key::chunk_uuid5(&self.table, &parts, index)
    }

    /// The key columns' type oids and text forms.
    fn key_parts<'r>(&self, row: &'r Row) -> Result<Vec<(u32, Cow<'r, str>)>, MappingError> {
        let mut parts: Vec<(u32, Cow<str>)> = Vec::with_capacity(self.key.len());
        for col in &self.key {
            match row.column(col) {
                Some((c, d)) if matches!(d, Datum::Text(_) | Datum::Binary(_)) => {
                    match self.text_of(c, d).expect("a value") {
                        Ok(t) => parts.push((c.type_oid, t)),
                        Err(e) => return Err(self.error(row, format!("key column {col:?}: {e}"))),
                    }
                }
                Some((_, d)) => {
                    return Err(self.error(
                        row,
                        format!(
                            "key column {col:?} is {}",
                            if *d == Datum::Null {
                                "NULL"
                            } else {
                                "not sent"
                            }
                        ),
                    ))
                }
                None => {
                    return Err(self.error(row, format!("key column {col:?} is not in the table")))
                }
            }
        }
        Ok(parts)
    }

    /// The key columns of `row` as `(column, text value, type oid)`, to look the row up
    /// (`Catalog::fetch_row`); columns without a text value are left out.
    pub fn key_values(&self, row: &Row) -> Vec<(String, String, u32)> {
        self.key
            .iter()
            .filter_map(|k| {
                let (c, d) = row.column(k)?;
                let t = self.text_of(c, d)?.ok()?;
                Some((k.clone(), t.into_owned(), c.type_oid))
            })
            .collect()
    }

    /// The key columns of `row` as a JSON object of text values (`{"id": "42"}`).
    pub fn key_json(&self, row: &Row) -> Value {
        let mut m = Map::new();
        for k in &self.key {
            if let Some((c, d)) = row.column(k) {
                m.insert(
                    k.clone(),
                    match self.text_of(c, d) {
                        Some(Ok(t)) => Value::String(t.into_owned()),
                        _ => Value::Null,
                    },
                );
            }
        }
        Value::Object(m)
    }

    fn error(&self, row: &Row, reason: String) -> MappingError {
        MappingError {
            table: self.table.clone(),
            key: self.key_json(row),
            reason,
            row: row.to_json(|c, b| match self.binary_text(c, b) {
                Ok(t) => t,
                Err(_) => {
                    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                    format!("<binary \\x{hex}>")
                }
            }),
        }
    }
}

/// `new` with its unchanged TOAST values taken from `old` where the old image holds them. An old
/// NULL is not a value: a TOASTed value was never NULL, so a NULL there is a column the old
/// *key* image left out (pgoutput sends the key tuple of a key-changing UPDATE with every
/// non-key column NULL). Such a value stays unchanged, and the merge reads it from the row.
pub(crate) fn fill_unchanged(new: &Row, old: &Row) -> Row {
    if new.values.len() != old.values.len() {
        return new.clone(); // images of two shapes of the table: nothing lines up
    }
    let values = new
        .values
        .iter()
        .zip(&old.values)
        .map(|(n, o)| match (n, o) {
            (Datum::Unchanged, Datum::Null) => Datum::Unchanged,
            (Datum::Unchanged, o) => o.clone(),
            (n, _) => n.clone(),
        })
        .collect();
    Row {
        columns: new.columns.clone(),
        values,
    }
}

/// Fixtures shared with the tests of other modules that map rows (`kafka::event`).
#[cfg(test)]
pub(crate) mod tests;
