//! A row's shard key, for a collection with Qdrant's custom sharding
//! (`collection_config.sharding = { key = "<column>" }`).
//!
//! The key is the column's value in PostgreSQL's text form (a uuid `session_id` names its shard
//! key by its canonical text), stored in the point's metadata as `_pg2qdrant.shard`: the sink
//! writes the point into that shard key, and removes the row's point from every other key (a
//! row whose column changed moves). A row without a value cannot be placed: a mapping error
//! (dead-lettered) naming the column, never a point in some default key.

use super::TableMapping;
use crate::event::{Datum, Row};

/// The metadata field (under `_pg2qdrant`) that holds the point's shard key.
pub const FIELD: &str = crate::event::Meta::SHARD;

impl TableMapping {
    /// Whether rows carry a shard key (`collection_config.sharding`).
    pub fn sharded(&self) -> bool {
        self.shard.is_some()
    }

    /// The row's shard key; `None` when the table is not sharded, or when the column is an
    /// unchanged TOAST value (a merge: the point stays where it is).
    pub(super) fn shard_key(&self, row: &Row) -> Result<Option<String>, super::MappingError> {
        let Some(column) = &self.shard else {
            return Ok(None);
        };
        let why = |what: &str| {
            format!("column {column:?} {what}: collection_config.sharding.key names it, and every row needs a value for its shard key (fill the column, or shard by another)")
        };
        match row.column(column) {
            None => Err(self.error(row, why("is not in the table"))),
            Some((_, Datum::Null)) => Err(self.error(row, why("is NULL"))),
            Some((_, Datum::Unchanged)) => Ok(None),
            Some((col, datum)) => match self.text_of(col, datum) {
                Some(Ok(text)) => Ok(Some(text.into_owned())),
                Some(Err(e)) => Err(self.error(row, format!("column {column:?}: {e}"))),
                None => Ok(None),
            },
        }
    }
}

/// The shard key a document's metadata names (see [`FIELD`]).
pub fn of(doc: &crate::event::Document) -> Option<&str> {
    doc.meta.as_ref()?.shard.as_deref()
}
