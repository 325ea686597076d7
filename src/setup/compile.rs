//! Compiling the `[[tables]]` against the database: key columns (configured, else the primary
//! key), the database's types, chunk splitters, and which ids each table's points get.

use crate::config::{ChunkConfig, EmbedderConfig, EmbedderKind, TableConfig};
use crate::error::Error;
use crate::event::TableName;
use crate::mapping::chunk::Splitter;
use crate::mapping::{key, TableMapping};
use crate::source::catalog::Catalog;
use std::sync::Arc;

/// Compiles the `[[tables]]` against the database: key columns (configured, else the primary
/// key), the database's types; and refuses two tables whose point ids can collide in one collection.
pub async fn compile(
    catalog: &Catalog,
    tables: &[TableConfig],
    embedders: &[EmbedderConfig],
) -> Result<Vec<TableMapping>, Error> {
    let keys = catalog.resolve_keys(tables).await?;
    let types = Arc::new(catalog.types().await?);
    let mut spaces = Vec::with_capacity(tables.len());
    let mut out = Vec::with_capacity(tables.len());
    for (t, key) in tables.iter().zip(keys) {
        let shapes = catalog.column_shapes(&TableName::parse(&t.table)).await?;
        spaces.push(space_of(t, &key, &shapes));
        let mut mapping = TableMapping::new(t, key)?.with_types(types.clone());
        mapping.pin_types(&shapes);
        if let Some(c) = &t.chunk {
            mapping = mapping.with_splitter(splitter(t, c, embedders)?);
        }
        out.push(mapping);
    }
    refuse_colliding_ids(tables, &spaces)?;
    Ok(out)
}

/// A chunked table's splitter, counting tokens with its embedder's tokenizer (a local model's
/// tokenizer.json, an openai embedder's `tokenizer`; else words).
fn splitter(
    t: &TableConfig,
    c: &ChunkConfig,
    embedders: &[EmbedderConfig],
) -> Result<Splitter, Error> {
    let name = t
        .embedded_vectors()
        .pop()
        .map(|v| v.embedder)
        .unwrap_or_default();
    let tokenizer = embedders
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| match e.kind {
            EmbedderKind::Local => Some(e.path.join("tokenizer.json")),
            EmbedderKind::Openai => e.tokenizer.clone(),
        });
    Splitter::load(c, tokenizer.as_deref())
}

/// Which ids the table's points get (its key columns' types and `id`).
pub async fn id_space(
    catalog: &Catalog,
    t: &TableConfig,
    key: &[String],
) -> Result<key::IdSpace, Error> {
    let shapes = catalog.column_shapes(&TableName::parse(&t.table)).await?;
    Ok(space_of(t, key, &shapes))
}

/// [`id_space`] from the table's column types and modifiers as already read.
fn space_of(
    t: &TableConfig,
    key: &[String],
    shapes: &std::collections::HashMap<String, (u32, i32)>,
) -> key::IdSpace {
    let key_types: Vec<u32> = key
        .iter()
        .filter_map(|k| shapes.get(k).map(|s| s.0))
        .collect();
    key::id_space(t.id, &key_types)
}

/// Two tables writing integer (or uuid) keys as ids into one collection would overwrite each
/// other's points: an error naming both and the fix.
pub fn refuse_colliding_ids(tables: &[TableConfig], spaces: &[key::IdSpace]) -> Result<(), Error> {
    let by_collection: Vec<(&str, key::IdSpace)> = tables
        .iter()
        .zip(spaces)
        .map(|(t, s)| (t.collection.as_str(), *s))
        .collect();
    let Some((i, j)) = key::collision(&by_collection) else {
        return Ok(());
    };
    let kind = if spaces[i] == key::IdSpace::Integer {
        "integer"
    } else {
        "uuid"
    };
    Err(Error::prerequisite(
        format!(
            "tables[{i}] {} and tables[{j}] {} both write collection {} with their {kind} keys as point ids: equal keys would overwrite each other",
            tables[i].table, tables[j].table, tables[i].collection
        ),
        format!(
            "set id = \"uuid5\" on one of them (tables[{j}].id; its point ids change, so run `pg2qdrant resync` for it) or give each its own collection"
        ),
    ))
}
