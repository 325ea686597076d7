//! Schema changes under a running connector: which columns a table's mapping cannot do
//! without, and whether a new column list still gives them.
//!
//! # What follows a change, and what stops the table
//!
//! pgoutput sends a table's Relation message (its columns, their types) before the table's first
//! change of each session and again after every change of its schema, and rows are decoded
//! against the newest one (`source::relations`). So a **payload column** added, dropped, renamed
//! or retyped just follows: rows written after the change carry the new shape, and
//! `verify --repair` brings older points to it.
//!
//! Some columns are not payload: the **key** (the point id), a **vector** read from a column,
//! the columns of an **embedded text** template (and of a BM25 text), the **row filter**'s
//! columns, the **shard key** column and the **soft-delete** column. Without one of them no row
//! of the table can be written as configured, and with one retyped the rows would be read in a
//! way nobody chose (a key retyped changes every point id; a vector retyped cannot be read). Row
//! by row each would be a mapping error parked in the dead-letter file: thousands of records for
//! one DDL statement, none of them the row's fault. So the table is **stopped** instead: a
//! Relation message missing one of these columns, or giving it another type (or, for a vector,
//! another type modifier: another size) than it had when the connector started, stops the
//! table for the rest of the process, with one error naming the column, what the mapping uses
//! it for, the config field, and the fix. Its later changes are skipped (not written, not
//! parked, counted in `pg2qdrant_changes_stopped_total`; `pg2qdrant_table_stopped` is 1), the other tables go on, and the slot
//! moves on. The fix: make the config name the column as it is now (or undo the change),
//! restart, and `pg2qdrant resync --table T`: the whole-table copy writes every row and sweeps
//! the points of rows deleted while the table was stopped. The same check runs on each session's
//! first Relation message, so a restart with the config unchanged stops the table again.
//!
//! Renamed and dropped look alike here (the Relation message has names, no column numbers).
//! A rename of a row filter's column is followed by PostgreSQL's publication (it stores the
//! filter by column number) but not by the config's `where`, which the copy and `verify` run.

use super::TableMapping;
use crate::event::Column;
use std::collections::HashMap;

/// A column the mapping needs, what for, and its type when the connector started.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub column: String,
    /// What the mapping uses it for, in words ("the vector column").
    pub role: &'static str,
    /// The config field naming it (`vector.column`).
    pub field: String,
    /// Its type oid and type modifier at start-up (`None`: not in the table then).
    pub was: Option<(u32, i32)>,
    /// Whether a new type modifier is a retype too (vectors: the size).
    pub modifier_matters: bool,
}

/// A needed column gone or retyped in a table's new column list.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    pub need: Need,
    /// Its type now (`None`: gone).
    pub now: Option<(u32, i32)>,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = &self.need;
        let what = match (self.now, n.was) {
            (None, _) => "is gone (dropped or renamed)".to_owned(),
            (Some((oid, m)), Some((was, was_m))) if oid == was => {
                format!("changed its type modifier ({was_m} → {m}: another size)")
            }
            (Some((oid, _)), Some((was, _))) => format!("changed type (oid {was} → {oid})"),
            (Some(_), None) => "changed type".to_owned(),
        };
        write!(f, "column {:?}, {} ({}), {what}", n.column, n.role, n.field)
    }
}

impl TableMapping {
    /// The columns this mapping cannot do without (see the module doc), their types unknown.
    pub(super) fn needs_of(&self) -> Vec<Need> {
        let mut out = Vec::new();
        let mut need = |column: &str, role: &'static str, field: String, modifier: bool| {
            if column.is_empty() || out.iter().any(|n: &Need| n.column == column) {
                return;
            }
            out.push(Need {
                column: column.to_owned(),
                role,
                field,
                was: None,
                modifier_matters: modifier,
            });
        };
        for k in &self.key {
            need(k, "a key column (the point id)", "key".into(), false);
        }
        for v in &self.vectors {
            let at = match (v.sparse, v.name.is_empty()) {
                (true, _) => format!("sparse_vectors ({})", v.name),
                (false, true) => "vector".to_owned(),
                (false, false) => format!("vectors.{}", v.name),
            };
            match &v.embed {
                Some((_, template)) => {
                    for c in template.columns() {
                        need(
                            c,
                            "a column of the embedded text",
                            format!("{at}.text"),
                            false,
                        );
                    }
                }
                None => need(&v.column, "the vector column", format!("{at}.column"), true),
            }
        }
        if let Some(s) = &self.shard {
            need(
                s,
                "the shard key column",
                "collection_config.sharding.key".into(),
                false,
            );
        }
        if let Some(s) = &self.soft_delete {
            need(s, "the soft-delete column", "soft_delete".into(), false);
        }
        out
    }

    /// Adds the row filter's columns (as PostgreSQL names them, `source::filter`) to what the
    /// mapping needs.
    pub fn need_filter_columns(&mut self, columns: &[String]) {
        for c in columns {
            if !self.needs.iter().any(|n| &n.column == c) {
                self.needs.push(Need {
                    column: c.clone(),
                    role: "a column of the row filter",
                    field: "where".into(),
                    was: None,
                    modifier_matters: false,
                });
            }
        }
    }

    /// Records the types the needed columns have now (start-up: `atttypid`, `atttypmod` by
    /// column name).
    pub fn pin_types(&mut self, types: &HashMap<String, (u32, i32)>) {
        for n in &mut self.needs {
            n.was = types.get(&n.column).copied();
        }
    }

    /// What the mapping needs of the table's columns.
    pub fn needs(&self) -> &[Need] {
        &self.needs
    }

    /// The first needed column that `columns` (a new Relation message's, or a copy's) lacks or
    /// gives another type; `None` when the table can go on.
    pub fn schema_break(&self, columns: &[Column]) -> Option<Break> {
        self.needs.iter().find_map(|n| {
            let now = columns
                .iter()
                .find(|c| c.name == n.column)
                .map(|c| (c.type_oid, c.type_modifier));
            let broken = match (now, n.was) {
                (None, _) => true,
                (Some(_), None) => false, // unknown at start: only its absence is checked
                (Some((oid, m)), Some((was, was_m))) => {
                    oid != was || (n.modifier_matters && m != was_m)
                }
            };
            broken.then(|| Break {
                need: n.clone(),
                now,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::event::Column;
    use crate::mapping::oid;
    use crate::mapping::tests::mapping;
    use std::collections::HashMap;

    fn columns(cols: &[(&str, u32, i32)]) -> Vec<Column> {
        cols.iter()
            .map(|(n, t, m)| Column {
                name: (*n).into(),
                type_oid: *t,
                type_modifier: *m,
                is_key: *n == "id",
            })
            .collect()
    }

    #[test]
    fn payload_changes_go_on_needed_columns_gone_or_retyped_stop() {
        let mut m = mapping("soft_delete = \"gone\"");
        m.need_filter_columns(&["region".into()]);
        let at_start = [
            ("id", oid::INT8, -1),
            ("body", 25, -1),
            ("v", oid::FLOAT4_ARRAY, -1),
            ("gone", oid::BOOL, -1),
            ("region", 25, -1),
        ];
        let types: HashMap<String, (u32, i32)> = at_start
            .iter()
            .map(|(n, t, m)| ((*n).to_owned(), (*t, *m)))
            .collect();
        m.pin_types(&types);
        let needed: Vec<&str> = m.needs().iter().map(|n| n.column.as_str()).collect();
        assert_eq!(needed, ["id", "v", "gone", "region"]);
        assert_eq!(m.schema_break(&columns(&at_start)), None);
        // A payload column renamed, retyped, dropped, one added: the table goes on.
        let payload_changed = [
            ("id", oid::INT8, -1),
            ("text", oid::INT8, -1),
            ("v", oid::FLOAT4_ARRAY, -1),
            ("gone", oid::BOOL, -1),
            ("region", 25, -1),
            ("added", 25, -1),
        ];
        assert_eq!(m.schema_break(&columns(&payload_changed)), None);
        let gone = |name: &str| {
            let cols: Vec<(&str, u32, i32)> =
                at_start.iter().copied().filter(|c| c.0 != name).collect();
            m.schema_break(&columns(&cols)).map(|b| b.to_string())
        };
        let v = gone("v").expect("the vector column");
        assert!(
            v.contains("\"v\"") && v.contains("vector.column") && v.contains("gone"),
            "{v}"
        );
        assert!(gone("id").unwrap().contains("key"));
        assert!(gone("gone").unwrap().contains("soft_delete"));
        assert!(gone("region").unwrap().contains("where"));
        assert_eq!(gone("body"), None);
        let retyped = m
            .schema_break(&columns(&[
                ("id", 25, -1),
                ("v", oid::FLOAT4_ARRAY, -1),
                ("gone", oid::BOOL, -1),
                ("region", 25, -1),
            ]))
            .expect("the key retyped");
        assert!(
            retyped.to_string().contains("changed type (oid 20 → 25)"),
            "{retyped}"
        );
        // A vector's size is its type modifier (pgvector's vector(n)).
        let mut pg = mapping("");
        pg.pin_types(&HashMap::from([
            ("id".into(), (oid::INT8, -1)),
            ("v".into(), (9999, 2)),
        ]));
        let resized = pg
            .schema_break(&columns(&[("id", oid::INT8, -1), ("v", 9999, 3)]))
            .expect("vector(2) → vector(3)");
        assert!(resized.to_string().contains("another size"), "{resized}");
    }

    #[test]
    fn an_embedded_texts_columns_are_needed() {
        let m = mapping(
            "sparse_vectors = [{ name = \"kw\", kind = \"bm25\", text = \"{title}: {body}\" }]",
        );
        let needs: Vec<(&str, &str)> = m
            .needs()
            .iter()
            .map(|n| (n.column.as_str(), n.field.as_str()))
            .collect();
        assert_eq!(
            needs,
            [
                ("id", "key"),
                ("v", "vector.column"),
                ("title", "sparse_vectors (kw).text"),
                ("body", "sparse_vectors (kw).text")
            ]
        );
    }
}
