//! What a point records of its computed vectors (`_pg2qdrant.embedded.<vector>` = the model
//! identity and a hash of the input), so a later change, `verify` and a rebuild can tell whether
//! a vector is still the one its text and model give, without embedding again.

use crate::config::{EmbedderConfig, EmbedderKind, META_FIELD};
use crate::error::Error;
use crate::event::Document;
use serde_json::Value;
use std::collections::HashMap;

/// The model identity of each configured embedder, without loading the models.
pub fn identities(cfgs: &[EmbedderConfig]) -> Result<HashMap<String, String>, Error> {
    cfgs.iter()
        .enumerate()
        .map(|(i, c)| {
            let id = match c.kind {
                EmbedderKind::Local => {
                    super::LocalEmbedder::identity_of(&c.path, super::precision(c))
                        .map_err(|e| Error::config(format!("embedders[{i}].path"), e.to_string()))?
                }
                EmbedderKind::Openai => super::openai::identity(c),
            };
            Ok((c.name.clone(), id))
        })
        .collect()
}

/// Whether the stored point (its payload as JSON) records, for every computed vector of `doc`,
/// the input and model `doc` would be embedded with; `None` when it does, else the vector name.
pub fn stale_embedding<'a>(
    doc: &'a Document,
    stored_payload: &Value,
    identities: &HashMap<String, String>,
) -> Option<&'a str> {
    doc.embed
        .iter()
        .find(|input| {
            // A BM25 encoder's identity is its name (see `bm25`).
            let identity = match identities.get(&*input.embedder) {
                Some(i) => i.as_str(),
                None if crate::mapping::bm25::Bm25::parse(&input.embedder).is_some() => {
                    &input.embedder
                }
                None => return true,
            };
            stored_payload
                .get(META_FIELD)
                .and_then(|m| m.get("embedded"))
                .and_then(|e| e.get(record_name(&input.vector)))
                .and_then(|r| r.get("hash"))
                .and_then(Value::as_str)
                != Some(hash(identity, &input.text).as_str())
        })
        .map(|input| record_name(&input.vector))
}

/// The name a vector's record has under `_pg2qdrant.embedded`.
pub fn record_name(vector: &str) -> &str {
    if vector.is_empty() {
        crate::config::sparse::UNNAMED_RECORD
    } else {
        vector
    }
}

/// The hash of an input as embedded by the model `identity`.
pub fn hash(identity: &str, text: &str) -> String {
    let mut input = identity.as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(text.as_bytes());
    uuid::Uuid::new_v5(&crate::mapping::key::NAMESPACE, &input)
        .simple()
        .to_string()
}
