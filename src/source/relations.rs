//! The relation cache: pgoutput sends a Relation message before the first change of a table in
//! each session and again after every schema change, so rows are always decoded against the
//! newest column list (ADD/DROP COLUMN mid-stream keep streaming).

use super::pgoutput::{Cell, Relation};
use crate::event::{Column, Datum, Row, TableName};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct CachedRelation {
    pub table: TableName,
    pub columns: Arc<[Column]>,
}

#[derive(Debug, Default)]
pub struct RelationCache {
    by_id: HashMap<u32, CachedRelation>,
}

impl RelationCache {
    /// Replaces whatever was cached for this relation id.
    pub fn update(&mut self, rel: &Relation) {
        let columns: Vec<Column> = rel
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                type_oid: c.type_oid,
                type_modifier: c.type_modifier,
                is_key: c.is_key(),
            })
            .collect();
        self.by_id.insert(
            rel.id,
            CachedRelation {
                table: TableName {
                    schema: rel.namespace.clone(),
                    name: rel.name.clone(),
                },
                columns: columns.into(),
            },
        );
    }

    pub fn get(&self, id: u32) -> Option<&CachedRelation> {
        self.by_id.get(&id)
    }

    /// Turns a wire tuple into a row of this relation. Errors when the column counts disagree
    /// (a protocol violation: the server always sends the Relation first).
    pub fn row(&self, id: u32, tuple: Vec<Cell>) -> Result<(TableName, Row), String> {
        let rel = self.by_id.get(&id).ok_or_else(|| {
            format!("change for relation {id} arrived before its Relation message")
        })?;
        if tuple.len() != rel.columns.len() {
            return Err(format!(
                "relation {} has {} columns but the tuple has {}",
                rel.table,
                rel.columns.len(),
                tuple.len()
            ));
        }
        let values = tuple
            .into_iter()
            .map(|c| match c {
                Cell::Null => Datum::Null,
                Cell::UnchangedToast => Datum::Unchanged,
                Cell::Text(t) => Datum::Text(t),
                Cell::Binary(b) => Datum::Binary(b),
            })
            .collect();
        Ok((
            rel.table.clone(),
            Row {
                columns: rel.columns.clone(),
                values,
            },
        ))
    }
}
