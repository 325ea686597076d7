//! The domain change model shared by every stage after the decoder.
//!
//! Nothing here knows pgoutput, Qdrant or Kafka types: the source produces [`Change`]s, the
//! mapping turns them into [`Op`]s on [`Document`]s, and each sink translates `Op`s into its own
//! protocol.

use crate::lsn::Position;
use serde_json::{Map, Value};
use std::sync::Arc;

/// A source table, `schema.name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// Parses `schema.table` or `table` (schema `public`).
    pub fn parse(s: &str) -> Self {
        match s.split_once('.') {
            Some((schema, name)) => Self {
                schema: schema.to_owned(),
                name: name.to_owned(),
            },
            None => Self {
                schema: "public".to_owned(),
                name: s.to_owned(),
            },
        }
    }
    /// The name quoted for SQL: `"schema"."table"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A column as the source described it most recently.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    /// Part of the replica identity key.
    pub is_key: bool,
}

/// One value of a row, in PostgreSQL's text output form or its binary (send) form; which one
/// is the source's choice (`source.format`), and the mapping decodes both alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// An unchanged TOASTed value the server did not send: keep what the sink has.
    Unchanged,
    Text(String),
    /// The value's bytes: from the stream or a copy, a slice of the message or copy data they
    /// came in (shared, not copied); from a Kafka event, bytes of their own.
    Binary(bytes::Bytes),
}

/// A row image: values aligned with `columns`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub columns: Arc<[Column]>,
    pub values: Vec<Datum>,
}

impl Row {
    pub fn get(&self, column: &str) -> Option<&Datum> {
        self.columns
            .iter()
            .position(|c| c.name == column)
            .and_then(|i| self.values.get(i))
    }
    pub fn column(&self, column: &str) -> Option<(&Column, &Datum)> {
        let i = self.columns.iter().position(|c| c.name == column)?;
        Some((&self.columns[i], self.values.get(i)?))
    }
    pub fn has_unchanged(&self) -> bool {
        self.values.contains(&Datum::Unchanged)
    }
    /// The row as a JSON object for dead-letter records: text values as they are, binary ones
    /// as `text(column, bytes)` writes them.
    pub fn to_json(&self, text: impl Fn(&Column, &[u8]) -> String) -> Value {
        let mut m = Map::new();
        for (c, v) in self.columns.iter().zip(&self.values) {
            let v = match v {
                Datum::Null => Value::Null,
                Datum::Unchanged => Value::String("<unchanged toast>".into()),
                Datum::Text(s) => Value::String(s.clone()),
                Datum::Binary(b) => Value::String(text(c, b)),
            };
            m.insert(c.name.clone(), v);
        }
        Value::Object(m)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    Insert {
        new: Row,
    },
    /// `old` is the old key (or whole old row under REPLICA IDENTITY FULL) when the server sent it.
    Update {
        old: Option<Row>,
        new: Row,
    },
    Delete {
        old: Row,
    },
    Truncate,
    /// A copy of the table (resync, re-copy after a lost slot) that started at this change's
    /// position is complete: every existing row was written again at or after it, so points
    /// older than it belong to rows that are gone. Never decoded from pgoutput: the copy
    /// publishes it (`snapshot`), and it reaches appliers as a change event.
    Sweep,
}

/// One committed change of a watched table.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub table: TableName,
    pub position: Position,
    /// Commit time, microseconds since 2000-01-01 (PostgreSQL epoch).
    pub commit_time_micros: i64,
    pub kind: ChangeKind,
}

/// A point identity, independent of any sink client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointKey {
    Num(u64),
    Uuid(uuid::Uuid),
}

impl std::fmt::Display for PointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointKey::Num(n) => write!(f, "{n}"),
            PointKey::Uuid(u) => write!(f, "{u}"),
        }
    }
}

/// Vectors of a document: the unnamed default vector, or named vectors (the unnamed one, when
/// sparse vectors sit beside it, is named `""`: Qdrant's name for it).
#[derive(Debug, Clone, PartialEq)]
pub enum Vectors {
    Default(Vec<f32>),
    Named(Vec<(String, Vector)>),
}

/// One vector of a point.
#[derive(Debug, Clone, PartialEq)]
pub enum Vector {
    Dense(Vec<f32>),
    Sparse(Sparse),
}

/// A sparse vector: dimension indices (from 0, distinct) and their values, in index order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sparse {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Sparse {
    /// From pairs in any order (indices distinct): sorted by index.
    pub fn from_pairs(mut pairs: Vec<(u32, f32)>) -> Self {
        pairs.sort_unstable_by_key(|(i, _)| *i);
        let (indices, values) = pairs.into_iter().unzip();
        Self { indices, values }
    }
}

impl Vectors {
    /// The vector named `name` (`""`: the unnamed one).
    pub fn get(&self, name: &str) -> Option<Vector> {
        match self {
            Vectors::Default(v) if name.is_empty() => Some(Vector::Dense(v.clone())),
            Vectors::Default(_) => None,
            Vectors::Named(list) => list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()),
        }
    }

    /// Adds (or replaces) the vector `name`.
    pub fn put(slot: &mut Option<Vectors>, name: &str, v: Vector) {
        match (slot.take(), v) {
            (None, Vector::Dense(d)) if name.is_empty() => *slot = Some(Vectors::Default(d)),
            (None, v) => *slot = Some(Vectors::Named(vec![(name.to_owned(), v)])),
            (Some(Vectors::Default(_)), Vector::Dense(d)) if name.is_empty() => {
                *slot = Some(Vectors::Default(d))
            }
            (Some(Vectors::Default(d)), v) => {
                *slot = Some(Vectors::Named(vec![
                    (String::new(), Vector::Dense(d)),
                    (name.to_owned(), v),
                ]))
            }
            (Some(Vectors::Named(mut list)), v) => {
                list.retain(|(n, _)| n != name);
                list.push((name.to_owned(), v));
                *slot = Some(Vectors::Named(list));
            }
        }
    }
}

/// A vector still to be computed from text (see `embed`): the writer fills it in before the
/// document is written.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedInput {
    /// The vector's name (empty: the unnamed vector).
    pub vector: String,
    /// The `[[embedders]]` name.
    pub embedder: Arc<str>,
    pub text: String,
}

/// The connector's metadata of a point (stored as `_pg2qdrant`), kept typed from the mapping
/// to the request: the Qdrant sink writes it straight into the point, without a JSON object per
/// row. What the position says (its LSN, ordinal and LSN text) is taken from the document's
/// position when written, so it cannot disagree with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    /// The source table, `schema.name`.
    pub table: Arc<str>,
    /// The commit's time: PostgreSQL's microseconds since 2000-01-01.
    pub commit_time: i64,
    /// The row's key columns as text (`{"id": "42"}`); `Null`: left out.
    pub key: Value,
    /// The point's shard key (custom sharding), if any.
    pub shard: Option<String>,
    /// What each vector was built from: `<vector>` → `{model, hash}` (left out when empty).
    pub embedded: Map<String, Value>,
}

/// One field of [`Meta`] as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaField<'a> {
    Text(&'a str),
    /// A text shared by the rows of a commit (`crate::lsn::commit_texts`).
    Shared(Arc<str>),
    Number(u64),
    Json(&'a Value),
    Object(&'a Map<String, Value>),
}

impl Meta {
    /// The field that holds the shard key.
    pub const SHARD: &'static str = "shard";
    /// The field that holds what each vector was built from.
    pub const EMBEDDED: &'static str = "embedded";

    /// The stored fields of a point at position `at`, in the one order every writer uses.
    pub fn fields(&self, at: Position) -> impl Iterator<Item = (&'static str, MetaField<'_>)> {
        let (commit_lsn, commit_time) = crate::lsn::commit_texts(at.commit_lsn, self.commit_time);
        [
            Some(("table", MetaField::Text(&self.table))),
            Some(("lsn", MetaField::Number(at.commit_lsn))),
            Some(("seq", MetaField::Number(at.seq))),
            Some(("commit_lsn", MetaField::Shared(commit_lsn))),
            Some(("commit_time", MetaField::Shared(commit_time))),
            (!self.key.is_null()).then_some(("key", MetaField::Json(&self.key))),
            self.shard
                .as_deref()
                .map(|s| (Self::SHARD, MetaField::Text(s))),
            (!self.embedded.is_empty())
                .then_some((Self::EMBEDDED, MetaField::Object(&self.embedded))),
        ]
        .into_iter()
        .flatten()
    }

    /// The stored object at position `at`, as JSON.
    pub fn to_json(&self, at: Position) -> Value {
        let mut m = Map::new();
        for (k, f) in self.fields(at) {
            let v = match f {
                MetaField::Text(t) => Value::String(t.to_owned()),
                MetaField::Shared(t) => Value::String(t.to_string()),
                MetaField::Number(n) => Value::from(n),
                MetaField::Json(v) => v.clone(),
                MetaField::Object(o) => Value::Object(o.clone()),
            };
            m.insert(k.to_owned(), v);
        }
        Value::Object(m)
    }
}

/// What a point should hold after a change: payload fields, vectors, and the change's position.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub key: PointKey,
    /// The row's fields (the connector's metadata is `meta`).
    pub payload: Map<String, Value>,
    /// The connector's metadata; `None` for a point that carries none (tests and benches).
    pub meta: Option<Meta>,
    /// `None` in a merge whose vector column was an unchanged TOAST value.
    pub vectors: Option<Vectors>,
    /// Vectors to compute from text before writing (the writer moves them into `vectors`).
    pub embed: Vec<EmbedInput>,
    pub position: Position,
    /// One chunk of a chunked row (see `mapping::chunk`): the row's anchor, its chunk 0 point.
    pub anchor: Option<PointKey>,
}

/// A sink operation, produced by the mapping in commit order.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Replace the whole point (if the stored one is older).
    Upsert {
        collection: Arc<str>,
        doc: Document,
        /// A copied row (snapshot): always written fenced, whatever its position.
        copied: bool,
    },
    /// Merge the given fields into the stored point (unchanged TOAST values were left out). If
    /// the point is missing, the writer reads the current row from the source instead (`row`
    /// is the new row image, with `Datum::Unchanged` where TOAST values were not sent).
    Merge {
        collection: Arc<str>,
        doc: Document,
        table: TableName,
        row: Row,
    },
    /// Delete the point (if the stored one is older).
    Delete {
        collection: Arc<str>,
        key: PointKey,
        position: Position,
    },
    /// Delete the chunk points of one row (`key`: its key columns as text, as stored in
    /// `_pg2qdrant.key`) from chunk `from` on, except the points `keep`, if older than
    /// `position`. `anchor`: the point that stands for the row when batches are ordered.
    DeleteChunks {
        collection: Arc<str>,
        table: TableName,
        key: serde_json::Value,
        anchor: PointKey,
        from: usize,
        /// Content-defined chunks (`mapping::chunk::content`): the row's chunk points now,
        /// which the delete leaves to their upserts (and their stored vectors to be reused).
        keep: Vec<PointKey>,
        position: Position,
    },
    /// Delete every point of `table` older than `position`.
    Truncate {
        collection: Arc<str>,
        table: TableName,
        position: Position,
    },
}

impl Op {
    pub fn collection(&self) -> &Arc<str> {
        match self {
            Op::Upsert { collection, .. }
            | Op::Merge { collection, .. }
            | Op::Delete { collection, .. }
            | Op::DeleteChunks { collection, .. }
            | Op::Truncate { collection, .. } => collection,
        }
    }
    pub fn position(&self) -> Position {
        match self {
            Op::Upsert { doc, .. } | Op::Merge { doc, .. } => doc.position,
            Op::Delete { position, .. }
            | Op::DeleteChunks { position, .. }
            | Op::Truncate { position, .. } => *position,
        }
    }

    /// The point that stands for the row this op changes (a chunk's anchor); `None` for a
    /// truncate. Ops of one row share it, so ordering by it keeps a row's changes in order.
    pub fn row_key(&self) -> Option<&PointKey> {
        match self {
            Op::Upsert { doc, .. } | Op::Merge { doc, .. } => {
                Some(doc.anchor.as_ref().unwrap_or(&doc.key))
            }
            Op::Delete { key, .. } => Some(key),
            Op::DeleteChunks { anchor, .. } => Some(anchor),
            Op::Truncate { .. } => None,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Upsert { .. } => "upsert",
            Op::Merge { .. } => "merge",
            Op::Delete { .. } | Op::DeleteChunks { .. } => "delete",
            Op::Truncate { .. } => "truncate",
        }
    }
}
