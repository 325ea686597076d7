//! A table's vectors: dense ones (`vector`/`vectors`, read from a column or computed from text)
//! and sparse ones (`sparse_vectors`: a pgvector `sparsevec` column, or BM25 of a text), compiled
//! from the config, and read from a row.

use super::{binary, bm25, types, value, MappingError, TableMapping};
use crate::config::template::Template;
use crate::config::TableConfig;
use crate::event::{Column, Datum, Row, Sparse, Vector, Vectors};
use std::sync::Arc;
use types::Kind;

#[derive(Debug, Clone)]
pub(super) struct VectorSpec {
    /// Empty for the unnamed default vector.
    pub(super) name: String,
    pub(super) column: String,
    pub(super) size: usize,
    /// Computed from text instead of read from `column`: the embedder and the template.
    pub(super) embed: Option<(Arc<str>, Template)>,
    /// A sparse vector (`sparse_vectors`): a `sparsevec` column, or BM25 of a text.
    pub(super) sparse: bool,
}

/// The table's vector specs, dense first (fails on a text template that does not parse).
pub(super) fn specs(cfg: &TableConfig) -> Result<Vec<VectorSpec>, crate::error::Error> {
    let embedded = cfg.embedded_vectors();
    let mut vectors = Vec::new();
    for v in cfg.vector_columns() {
        let embed = match embedded.iter().find(|e| e.name == v.name) {
            Some(e) => Some((
                Arc::from(e.embedder.as_str()),
                Template::parse(&e.text).map_err(|why| {
                    let at = if v.name.is_empty() {
                        "vector".to_owned()
                    } else {
                        format!("vectors.{}", v.name)
                    };
                    crate::error::Error::config(
                        format!("tables ({}) {at}.text", cfg.table),
                        format!("{:?}: {why}", e.text),
                    )
                })?,
            )),
            None => None,
        };
        vectors.push(VectorSpec {
            embed,
            name: v.name,
            column: v.column,
            size: v.size as usize,
            sparse: false,
        });
    }
    for (j, sv) in cfg.sparse_vectors.iter().enumerate() {
        let embed = match sv.kind {
            Some(crate::config::SparseKind::Bm25) => {
                let text = sv
                    .text
                    .clone()
                    .or_else(|| embedded.first().map(|e| e.text.clone()))
                    .unwrap_or_default();
                let tpl = Template::parse(&text).map_err(|why| {
                    crate::error::Error::config(
                        format!("tables ({}) sparse_vectors[{j}].text", cfg.table),
                        format!("{text:?}: {why}"),
                    )
                })?;
                let name = bm25::Bm25::from_config(sv).name();
                Some((Arc::from(name.as_str()), tpl))
            }
            None => None,
        };
        vectors.push(VectorSpec {
            name: sv.name.clone(),
            column: sv.column.clone().unwrap_or_default(),
            size: 0,
            embed,
            sparse: true,
        });
    }
    Ok(vectors)
}

impl TableMapping {
    /// The row's vectors read from columns (those computed from text are the embedding stage's).
    pub(super) fn vectors(&self, row: &Row) -> Result<Option<Vectors>, MappingError> {
        let mut out = None;
        for spec in self.vectors.iter().filter(|s| s.embed.is_none()) {
            let v = match row.column(&spec.column) {
                None => {
                    return Err(self.error(
                        row,
                        format!("vector column {:?} is not in the table", spec.column),
                    ))
                }
                // A NULL sparse vector has no terms.
                Some((_, Datum::Null)) if spec.sparse => Ok(Vector::Sparse(Default::default())),
                Some((_, Datum::Null)) => {
                    return Err(self.error(row, format!("vector column {:?} is NULL", spec.column)))
                }
                Some((_, Datum::Unchanged)) => continue,
                Some((c, d)) if spec.sparse => self.sparse(c, d).map(Vector::Sparse),
                Some((c, Datum::Text(t))) => match self.kind(c.type_oid) {
                    Kind::Scalar(types::Scalar::SparseVec) => super::sparsevec::parse(t)
                        .and_then(|(dim, i, v)| super::sparsevec::densify(dim, &i, &v, spec.size)),
                    _ => value::parse_vector(t, spec.size),
                }
                .map(Vector::Dense),
                Some((c, Datum::Binary(b))) => {
                    binary::vector(self.kind(c.type_oid), b, spec.size).map(Vector::Dense)
                }
            }
            .map_err(|e| self.error(row, format!("vector column {:?}: {e}", spec.column)))?;
            Vectors::put(&mut out, &spec.name, v);
        }
        Ok(out)
    }

    /// A `sparsevec` column's value, kept sparse.
    fn sparse(&self, c: &Column, d: &Datum) -> Result<Sparse, String> {
        if !matches!(
            self.kind(c.type_oid),
            Kind::Scalar(types::Scalar::SparseVec)
        ) {
            return Err(
                "is not a pgvector sparsevec (a sparse vector reads sparsevec columns)".to_owned(),
            );
        }
        let (_, indices, values) = match d {
            Datum::Text(t) => super::sparsevec::parse(t)?,
            Datum::Binary(b) => binary::sparse(b)?,
            Datum::Null | Datum::Unchanged => return Ok(Sparse::default()),
        };
        Ok(Sparse::from_pairs(
            indices.into_iter().zip(values).collect(),
        ))
    }
}
