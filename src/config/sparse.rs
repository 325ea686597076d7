//! `sparse_vectors`: a pgvector `sparsevec` column kept sparse, or BM25 term weights computed
//! from text (`mapping::bm25`); Qdrant stores them as named sparse vectors beside the dense ones.

use super::TableConfig;
use crate::error::Error;
use serde::{Deserialize, Serialize};

/// How a sparse vector is computed from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SparseKind {
    /// Term frequencies with BM25 saturation; IDF is left to Qdrant (`Modifier::Idf`).
    Bm25,
}

/// One entry of `sparse_vectors`: `{ name, column }` (a pgvector `sparsevec`, kept sparse) or
/// `{ name, kind = "bm25", text = "{content}" }` (see `mapping::bm25`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SparseVectorConfig {
    pub name: String,
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub kind: Option<SparseKind>,
    /// The text template (`{column}` placeholders); a chunked table's chunks are its texts.
    #[serde(default)]
    pub text: Option<String>,
    /// BM25 term-frequency saturation (default 1.2).
    #[serde(default)]
    pub k1: Option<f32>,
    /// BM25 length normalisation, 0..=1 (default 0.75).
    #[serde(default)]
    pub b: Option<f32>,
    /// BM25 average document length in tokens (default 256, as Qdrant's own BM25).
    #[serde(default)]
    pub avg_len: Option<f32>,
    /// Qdrant applies inverse document frequency at query time (`Modifier::Idf`); default: true
    /// for `bm25`, false for a column.
    #[serde(default)]
    pub idf: Option<bool>,
}

impl SparseVectorConfig {
    /// Whether the collection's sparse vector takes Qdrant's IDF modifier.
    pub fn idf(&self) -> bool {
        self.idf.unwrap_or(self.kind == Some(SparseKind::Bm25))
    }
}

/// The name under which the unnamed dense vector's embedding is recorded on a point.
pub const UNNAMED_RECORD: &str = "vector";

/// Checks `tables[i].sparse_vectors` (names unique among all the table's vectors, one source
/// each, BM25 parameters in range, chunked tables' rules).
pub fn validate(i: usize, t: &TableConfig) -> Result<(), Error> {
    let f = |j: usize, name: &str| format!("tables[{i}].sparse_vectors[{j}].{name}");
    let mut names: Vec<&str> = t.vectors.iter().map(|v| v.name.as_str()).collect();
    let embedded = t.embedded_vectors();
    for (j, sv) in t.sparse_vectors.iter().enumerate() {
        // The unnamed dense vector records what it was embedded from under "vector"
        // (`_pg2qdrant.embedded.vector`): a sparse vector of that name would share the record.
        if sv.name == UNNAMED_RECORD && t.vector.is_some() {
            return Err(Error::config(
                f(j, "name"),
                format!("{UNNAMED_RECORD:?} is where the table's unnamed vector records its embedding; name the sparse vector otherwise"),
            ));
        }
        if sv.name.is_empty() || names.contains(&sv.name.as_str()) {
            return Err(Error::config(
                f(j, "name"),
                format!(
                    "{:?} is empty or names another vector of the table",
                    sv.name
                ),
            ));
        }
        names.push(&sv.name);
        match (&sv.column, sv.kind) {
            (Some(c), None) if !c.is_empty() => {
                if t.chunk.is_some() {
                    return Err(Error::config(
                        f(j, "column"),
                        "a chunked table's points are chunks of its text: a sparse vector column cannot be split; use kind = \"bm25\"".to_owned(),
                    ));
                }
                for (field, set) in [("text", sv.text.is_some()), ("k1", sv.k1.is_some()), ("b", sv.b.is_some()), ("avg_len", sv.avg_len.is_some())] {
                    if set {
                        return Err(Error::config(
                            f(j, field),
                            "is for kind = \"bm25\"; a sparse vector read from a column takes only name, column and idf".to_owned(),
                        ));
                    }
                }
            }
            (None, Some(SparseKind::Bm25)) => {
                match (&sv.text, embedded.as_slice()) {
                    (None, [_]) => {}
                    (None, _) => {
                        return Err(Error::config(
                            f(j, "text"),
                            "missing: the text whose words are weighted (e.g. text = \"{content}\")".to_owned(),
                        ))
                    }
                    (Some(text), [dense]) if t.chunk.is_some() && *text != dense.text => {
                        return Err(Error::config(
                            f(j, "text"),
                            format!("{text:?}: a chunked table's sparse vector is of each chunk of the embedded text {:?}; leave text out", dense.text),
                        ))
                    }
                    (Some(text), _) => {
                        crate::config::template::Template::parse(text).map_err(|why| {
                            Error::config(f(j, "text"), format!("{text:?}: {why}"))
                        })?;
                    }
                }
                let range = |field: &str, v: Option<f32>, ok: &dyn Fn(f32) -> bool, want: &str| match v {
                    Some(x) if !(x.is_finite() && ok(x)) => Err(Error::config(f(j, field), format!("{x} is out of range: {want}"))),
                    _ => Ok(()),
                };
                range("k1", sv.k1, &|x| x >= 0.0, "0 or more (1.2 is usual)")?;
                range("b", sv.b, &|x| (0.0..=1.0).contains(&x), "0..=1 (0.75 is usual)")?;
                range("avg_len", sv.avg_len, &|x| x > 0.0, "above 0 tokens (256 by default)")?;
            }
            _ => {
                return Err(Error::config(
                    f(j, "column"),
                    "set either column (a pgvector sparsevec) or kind = \"bm25\" with text, not both or neither".to_owned(),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn err(sparse: &str, extra: &str) -> String {
        crate::config::parse(&format!(
            "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n\
             [[tables]]\ntable = \"m\"\ncollection = \"c\"\n\
             vectors = [{{ name = \"dense\", column = \"v\", size = 2, distance = \"Cosine\" }}]\n\
             sparse_vectors = [{sparse}]\n{extra}"
        ))
        .and_then(|c| c.validate())
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn each_bad_sparse_vector_names_its_field() {
        for (sparse, field) in [
            (
                "{ name = \"dense\", column = \"s\" }",
                "tables[0].sparse_vectors[0].name",
            ),
            ("{ name = \"kw\" }", "tables[0].sparse_vectors[0].column"),
            (
                "{ name = \"kw\", column = \"s\", kind = \"bm25\", text = \"{t}\" }",
                "tables[0].sparse_vectors[0].column",
            ),
            (
                "{ name = \"kw\", kind = \"bm25\" }",
                "tables[0].sparse_vectors[0].text",
            ),
            (
                "{ name = \"kw\", kind = \"bm25\", text = \"{t}\", b = 1.5 }",
                "tables[0].sparse_vectors[0].b",
            ),
            (
                "{ name = \"kw\", column = \"s\", k1 = 1.0 }",
                "tables[0].sparse_vectors[0].k1",
            ),
            (
                "{ name = \"kw\", kind = \"bm25\", text = \"{t\" }",
                "tables[0].sparse_vectors[0].text",
            ),
        ] {
            let e = err(sparse, "");
            assert!(e.contains(field), "{sparse}: {e}");
        }
        // Beside the unnamed vector, "vector" is taken (its embedding record).
        let e = crate::config::parse(
            "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n\
             [[tables]]\ntable = \"m\"\ncollection = \"c\"\n\
             vector = { embed = \"e\", text = \"{t}\", size = 2, distance = \"Cosine\" }\n\
             sparse_vectors = [{ name = \"vector\", kind = \"bm25\" }]\n\
             [[embedders]]\nname = \"e\"\nkind = \"openai\"\nurl = \"http://x\"\nmodel = \"m\"\n",
        )
        .and_then(|c| c.validate())
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tables[0].sparse_vectors[0].name") && e.contains("records its embedding"),
            "{e}"
        );
        assert!(err(
            "{ name = \"kw\", kind = \"bm25\", text = \"{t}\", colour = 1 }",
            ""
        )
        .contains("colour"));
    }
}
