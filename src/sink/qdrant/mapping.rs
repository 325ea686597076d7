//! Domain documents → Qdrant points.

use crate::event::{Document, PointKey, Sparse, Vector, Vectors};
use qdrant_client::qdrant::{
    NamedVectors, PointId, PointStruct, PointVectors, Value as QValue, Vectors as QVectors,
};
use qdrant_client::Payload;

/// The position a point stores in `_pg2qdrant.{lsn,seq}` (its payload as JSON); `None` for a
/// point without one (written by someone else).
pub fn stored_position(payload: &serde_json::Value) -> Option<crate::lsn::Position> {
    let m = payload.get(crate::config::META_FIELD)?;
    Some(crate::lsn::Position {
        commit_lsn: m.get("lsn")?.as_u64()?,
        seq: m.get("seq")?.as_u64()?,
    })
}

pub fn point_id(key: &PointKey) -> PointId {
    match key {
        PointKey::Num(n) => PointId::from(*n),
        PointKey::Uuid(u) => PointId::from(u.to_string()),
    }
}

pub fn vectors(v: &Vectors) -> QVectors {
    match v {
        Vectors::Default(v) => QVectors::from(qdrant_client::qdrant::Vector::from(v.clone())),
        Vectors::Named(list) => {
            let mut named = NamedVectors::default();
            for (name, v) in list {
                named = named.add_vector(name.clone(), vector(v));
            }
            QVectors::from(named)
        }
    }
}

fn vector(v: &Vector) -> qdrant_client::qdrant::Vector {
    match v {
        Vector::Dense(d) => qdrant_client::qdrant::Vector::from(d.clone()),
        Vector::Sparse(s) => {
            qdrant_client::qdrant::Vector::new_sparse(s.indices.clone(), s.values.clone())
        }
    }
}

/// The document's payload as Qdrant values: the stored payload `mapping::payload_json` gives
/// (its fields and its metadata), converted value by value. Tests only: upserts are encoded
/// from the document (`encode`), and merges set their parts ([`merge_payload`]).
pub fn payload(doc: &Document) -> Payload {
    payload_of(&crate::mapping::payload_json(doc))
}

/// JSON fields as a Qdrant payload, value by value.
fn payload_of(fields: &serde_json::Map<String, serde_json::Value>) -> Payload {
    Payload::from(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect::<std::collections::HashMap<String, QValue>>(),
    )
}

/// A merge's payload in the parts it is set in, each fenced (`operations`): the row's fields
/// (at the top level), the records of the vectors the merge embedded (under
/// `_pg2qdrant.embedded`, next to the records of the vectors it left alone, which setting
/// `_pg2qdrant` whole would erase), and the rest of its metadata (under `_pg2qdrant`).
pub struct MergePayload {
    pub fields: Payload,
    pub embedded: Option<Payload>,
    pub meta: Option<Payload>,
}

pub fn merge_payload(doc: &Document) -> MergePayload {
    let (embedded, meta) = match doc.meta.as_ref().map(|m| m.to_json(doc.position)) {
        Some(serde_json::Value::Object(mut meta)) => {
            let embedded = match meta.remove(crate::event::Meta::EMBEDDED) {
                Some(serde_json::Value::Object(e)) => Some(payload_of(&e)),
                _ => None,
            };
            (embedded, Some(payload_of(&meta)))
        }
        _ => (None, None),
    };
    MergePayload {
        fields: payload_of(&doc.payload),
        embedded,
        meta,
    }
}

/// A JSON value as a Qdrant payload value (numbers: integer when it fits i64, else double —
/// as qdrant-client's own conversion).
fn value(v: &serde_json::Value) -> QValue {
    use qdrant_client::qdrant::value::Kind;
    use qdrant_client::qdrant::{ListValue, Struct};
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
        }),
    };
    QValue { kind: Some(kind) }
}

/// A whole point (the document must carry its vectors).
pub fn point(doc: &Document) -> PointStruct {
    PointStruct {
        id: Some(point_id(&doc.key)),
        payload: payload(doc).into(),
        vectors: doc.vectors.as_ref().map(vectors),
    }
}

pub fn point_vectors(doc: &Document) -> Option<PointVectors> {
    doc.vectors.as_ref().map(|v| PointVectors {
        id: Some(point_id(&doc.key)),
        vectors: Some(vectors(v)),
    })
}

#[allow(deprecated)]
/// A point's stored vectors as ours (dense and sparse).
pub fn stored_vectors(v: qdrant_client::qdrant::VectorsOutput) -> Option<Vectors> {
    use qdrant_client::qdrant::vector_output::Vector as Out;
    fn one(v: qdrant_client::qdrant::VectorOutput) -> Option<Vector> {
        match v.vector {
            Some(Out::Dense(d)) => Some(Vector::Dense(d.data)),
            Some(Out::Sparse(s)) => Some(Vector::Sparse(Sparse::from_pairs(
                s.indices.into_iter().zip(s.values).collect(),
            ))),
            Some(Out::MultiDense(_)) => None,
            None => match v.indices {
                Some(i) => Some(Vector::Sparse(Sparse::from_pairs(
                    i.data.into_iter().zip(v.data).collect(),
                ))),
                None => Some(Vector::Dense(v.data)),
            },
        }
    }
    match v.vectors_options? {
        qdrant_client::qdrant::vectors_output::VectorsOptions::Vector(v) => match one(v)? {
            Vector::Dense(d) => Some(Vectors::Default(d)),
            s => Some(Vectors::Named(vec![(String::new(), s)])),
        },
        qdrant_client::qdrant::vectors_output::VectorsOptions::Vectors(named) => {
            Some(Vectors::Named(
                named
                    .vectors
                    .into_iter()
                    .filter_map(|(n, v)| one(v).map(|d| (n, d)))
                    .collect(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_conversion_matches_qdrant_clients_own() {
        let map = json!({"i": 7, "u": u64::MAX, "f": 1.5, "s": "x", "b": true, "n": null,
            "a": [1, "two", [3.5]], "o": {"k": {"deep": [false]}}});
        let doc = Document {
            key: PointKey::Num(1),
            payload: map.as_object().unwrap().clone(),
            meta: None,
            vectors: None,
            embed: Vec::new(),
            anchor: None,
            position: Default::default(),
        };
        let ours = serde_json::Value::from(payload(&doc));
        let theirs = serde_json::Value::from(Payload::from(map.as_object().unwrap().clone()));
        assert_eq!(ours, theirs);
    }
}
