//! Domain documents → Qdrant points.

use crate::event::{Document, PointKey, Vectors};
use qdrant_client::qdrant::{
    NamedVectors, PointId, PointStruct, PointVectors, Vectors as QVectors,
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
                named =
                    named.add_vector(name.clone(), qdrant_client::qdrant::Vector::from(v.clone()));
            }
            QVectors::from(named)
        }
    }
}

pub fn payload(doc: &Document) -> Payload {
    Payload::from(doc.payload.clone())
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
