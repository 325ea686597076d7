//! The write request encoded straight from the documents.
//!
//! Building qdrant-client's `PointStruct` for a row copies its vector, clones every payload key
//! and string into a `HashMap` of Qdrant values, and prost then walks that map twice (length,
//! then bytes) before the whole thing is dropped; the profile of a 384-float stream was led by
//! those copies and allocations. Here an upsert's points are written once, from the borrowed
//! [`Document`], into the request's buffer: the id, the payload from the document's JSON, the
//! dense vector's floats. Everything else in the request (fence filters, shard key selectors,
//! deletes, payload updates) is qdrant-client's own types, encoded by prost as before.
//!
//! The bytes are `UpdateBatchPoints` of Qdrant's `points_service.proto` (`/qdrant.Points/
//! UpdateBatch`); `tests` decode them with qdrant-client's types and compare with what those
//! types hold for the same documents, so a field number or a length gone wrong fails there.

use super::mapping;
use crate::event::{Document, PointKey, Vectors};
use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;
use qdrant_client::qdrant::{Filter, PointsUpdateOperation, ShardKeySelector, Vectors as QVectors};
use serde_json::Value;

/// One operation of a write: an upsert of documents (encoded from them), or any other.
#[derive(Debug)]
pub enum Update<'d> {
    Upsert {
        docs: Vec<&'d Document>,
        shard_key_selector: Option<ShardKeySelector>,
        update_filter: Option<Filter>,
    },
    Other(PointsUpdateOperation),
}

impl Update<'_> {
    /// As qdrant-client's type (what [`request`] encodes: the tests compare the two).
    #[cfg(test)]
    pub fn to_operation(&self) -> PointsUpdateOperation {
        use qdrant_client::qdrant::points_update_operation::{Operation, PointStructList};
        match self {
            Update::Upsert {
                docs,
                shard_key_selector,
                update_filter,
            } => PointsUpdateOperation {
                operation: Some(Operation::Upsert(PointStructList {
                    points: docs.iter().map(|d| mapping::point(d)).collect(),
                    shard_key_selector: shard_key_selector.clone(),
                    update_filter: update_filter.clone(),
                    update_mode: None,
                })),
            },
            Update::Other(op) => op.clone(),
        }
    }
}

/// A request already encoded: its bytes go out as they are.
#[derive(Debug, Default, Clone)]
pub struct Encoded(pub Bytes);

// `encode_raw` and `merge_field` are prost's `#[doc(hidden)]` methods, the ones its generated code
// implements too: a change there would break every generated message, not only this one.
impl Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// `UpdateBatchPoints { collection_name, wait: true, operations }`.
pub fn request(collection: &str, updates: &[Update]) -> Encoded {
    // Each point's and each operation's size, computed once (a nested message's size is
    // written before it).
    let sizes: Vec<Sizes> = updates.iter().map(Sizes::of).collect();
    let total = len_of(1, collection.len())
        + key_len(2)
        + 1
        + sizes.iter().map(|s| len_of(3, s.operation)).sum::<usize>();
    let mut buf = BytesMut::with_capacity(total);
    prost::encoding::string::encode(1, &collection.to_owned(), &mut buf);
    prost::encoding::bool::encode(2, &true, &mut buf);
    for (u, size) in updates.iter().zip(&sizes) {
        match u {
            Update::Other(op) => prost::encoding::message::encode(3, op, &mut buf),
            Update::Upsert {
                docs,
                shard_key_selector,
                update_filter,
            } => {
                // PointsUpdateOperation { upsert (1): PointStructList }
                put_head(3, size.operation, &mut buf);
                put_head(1, size.list, &mut buf);
                for (d, point) in docs.iter().zip(&size.points) {
                    put_head(1, point.len, &mut buf);
                    put_point(d, point, &mut buf);
                }
                if let Some(s) = shard_key_selector {
                    prost::encoding::message::encode(2, s, &mut buf);
                }
                if let Some(f) = update_filter {
                    prost::encoding::message::encode(3, f, &mut buf);
                }
            }
        }
    }
    debug_assert_eq!(buf.len(), total, "the sizes computed first");
    Encoded(buf.freeze())
}

/// The sizes of one operation: of each point (upserts), of the point list, of the whole.
struct Sizes {
    points: Vec<PointSize>,
    list: usize,
    operation: usize,
}

impl Sizes {
    fn of(u: &Update) -> Sizes {
        match u {
            Update::Other(op) => Sizes {
                points: Vec::new(),
                list: 0,
                operation: op.encoded_len(),
            },
            Update::Upsert {
                docs,
                shard_key_selector,
                update_filter,
            } => {
                let points: Vec<PointSize> = docs.iter().map(|d| PointSize::of(d)).collect();
                let list = list_len(&points, shard_key_selector, update_filter);
                Sizes {
                    points,
                    list,
                    operation: len_of(1, list),
                }
            }
        }
    }
}

fn list_len(
    points: &[PointSize],
    shard_key_selector: &Option<ShardKeySelector>,
    update_filter: &Option<Filter>,
) -> usize {
    points.iter().map(|p| len_of(1, p.len)).sum::<usize>()
        + shard_key_selector
            .as_ref()
            .map_or(0, |s| len_of(2, s.encoded_len()))
        + update_filter
            .as_ref()
            .map_or(0, |f| len_of(3, f.encoded_len()))
}

/// A length-delimited field's size: its key, its length, its bytes.
fn len_of(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A length-delimited field's key and length.
fn put_head(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

// PointStruct { id (1): PointId, payload (3): map<string, Value>, vectors (4): Vectors }

/// A point's size, and its vectors as qdrant-client's type (with their size) when they are not
/// one dense vector: named and sparse vectors are converted once per point and encoded by prost.
struct PointSize {
    len: usize,
    converted: Option<(QVectors, usize)>,
}

impl PointSize {
    fn of(d: &Document) -> PointSize {
        let converted = match &d.vectors {
            Some(v @ Vectors::Named(_)) => {
                let q = mapping::vectors(v);
                let len = q.encoded_len();
                Some((q, len))
            }
            _ => None,
        };
        let vectors = match (&d.vectors, &converted) {
            (_, Some((_, len))) => len_of(4, *len),
            (Some(Vectors::Default(dense)), None) => len_of(4, len_of(1, dense_len(dense))),
            _ => 0,
        };
        let payload: usize = d
            .payload
            .iter()
            .map(|(k, v)| len_of(3, entry_len(k, v)))
            .sum();
        PointSize {
            len: len_of(1, id_len(&d.key)) + payload + vectors,
            converted,
        }
    }
}

fn put_point(d: &Document, size: &PointSize, buf: &mut impl BufMut) {
    put_head(1, id_len(&d.key), buf);
    put_id(&d.key, buf);
    for (k, v) in &d.payload {
        put_head(3, entry_len(k, v), buf);
        put_entry(k, v, buf);
    }
    match (&size.converted, &d.vectors) {
        (Some((q, len)), _) => {
            put_head(4, *len, buf);
            q.encode_raw(buf);
        }
        (None, Some(Vectors::Default(dense))) => {
            put_head(4, len_of(1, dense_len(dense)), buf);
            put_dense(dense, buf);
        }
        _ => {}
    }
}

// PointId { num (1): uint64 | uuid (2): string }

fn id_len(key: &PointKey) -> usize {
    match key {
        PointKey::Num(n) => key_len(1) + encoded_len_varint(*n),
        PointKey::Uuid(_) => len_of(2, uuid::fmt::Hyphenated::LENGTH),
    }
}

fn put_id(key: &PointKey, buf: &mut impl BufMut) {
    match key {
        PointKey::Num(n) => {
            encode_key(1, WireType::Varint, buf);
            encode_varint(*n, buf);
        }
        PointKey::Uuid(u) => {
            put_head(2, uuid::fmt::Hyphenated::LENGTH, buf);
            buf.put_slice(
                u.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer())
                    .as_bytes(),
            );
        }
    }
}

// Vectors { vector (1): Vector { dense (101): DenseVector { data (1): packed float } } }; any
// other shape (named, sparse) through qdrant-client's types.

/// `Vector { dense: DenseVector { data } }`'s size (an empty packed field is left out).
fn dense_len(d: &[f32]) -> usize {
    let data = if d.is_empty() {
        0
    } else {
        len_of(1, 4 * d.len())
    };
    len_of(101, data)
}

/// `Vectors { vector: Vector { dense: DenseVector { data } } }`'s content.
fn put_dense(d: &[f32], buf: &mut impl BufMut) {
    put_head(1, dense_len(d), buf);
    let data = if d.is_empty() {
        0
    } else {
        len_of(1, 4 * d.len())
    };
    put_head(101, data, buf);
    if !d.is_empty() {
        put_head(1, 4 * d.len(), buf);
        put_floats(d, buf);
    }
}

/// Little-endian floats, a chunk at a time (one bounds check per chunk, not per float).
fn put_floats(d: &[f32], buf: &mut impl BufMut) {
    let mut chunk = [0u8; 512];
    for floats in d.chunks(128) {
        for (i, f) in floats.iter().enumerate() {
            chunk[4 * i..4 * i + 4].copy_from_slice(&f.to_le_bytes());
        }
        buf.put_slice(&chunk[..4 * floats.len()]);
    }
}

// map<string, Value> entry { key (1): string, value (2): Value }

fn entry_len(k: &str, v: &Value) -> usize {
    len_of(1, k.len()) + len_of(2, value_len(v))
}

fn put_entry(k: &str, v: &Value, buf: &mut impl BufMut) {
    put_head(1, k.len(), buf);
    buf.put_slice(k.as_bytes());
    put_head(2, value_len(v), buf);
    put_value(v, buf);
}

// Value { null (1) | double (2) | integer (3) | string (4) | bool (5) | struct (6) | list (7) }
// Numbers as `mapping::payload`: an integer when it fits i64, else a double.

fn value_len(v: &Value) -> usize {
    match v {
        Value::Null => key_len(1) + 1,
        Value::Bool(_) => key_len(5) + 1,
        Value::Number(n) => match n.as_i64() {
            Some(i) => key_len(3) + encoded_len_varint(i as u64),
            None => key_len(2) + 8,
        },
        Value::String(s) => len_of(4, s.len()),
        Value::Array(a) => len_of(7, a.iter().map(|x| len_of(1, value_len(x))).sum()),
        Value::Object(o) => len_of(6, o.iter().map(|(k, x)| len_of(1, entry_len(k, x))).sum()),
    }
}

fn put_value(v: &Value, buf: &mut impl BufMut) {
    match v {
        Value::Null => {
            encode_key(1, WireType::Varint, buf);
            encode_varint(0, buf);
        }
        Value::Bool(b) => {
            encode_key(5, WireType::Varint, buf);
            encode_varint(u64::from(*b), buf);
        }
        Value::Number(n) => match n.as_i64() {
            Some(i) => {
                encode_key(3, WireType::Varint, buf);
                encode_varint(i as u64, buf);
            }
            None => {
                encode_key(2, WireType::SixtyFourBit, buf);
                buf.put_f64_le(n.as_f64().unwrap_or(f64::NAN));
            }
        },
        Value::String(s) => {
            put_head(4, s.len(), buf);
            buf.put_slice(s.as_bytes());
        }
        Value::Array(a) => {
            put_head(7, a.iter().map(|x| len_of(1, value_len(x))).sum(), buf);
            for x in a {
                put_head(1, value_len(x), buf);
                put_value(x, buf);
            }
        }
        Value::Object(o) => {
            put_head(
                6,
                o.iter().map(|(k, x)| len_of(1, entry_len(k, x))).sum(),
                buf,
            );
            for (k, x) in o {
                put_head(1, entry_len(k, x), buf);
                put_entry(k, x, buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Sparse, Vector};
    use crate::lsn::Position;
    use qdrant_client::qdrant::points_update_operation::Operation;
    use qdrant_client::qdrant::UpdateBatchPoints;
    use serde_json::json;

    fn doc(key: PointKey, payload: Value, vectors: Option<Vectors>) -> Document {
        Document {
            key,
            payload: payload.as_object().unwrap().clone(),
            vectors,
            embed: Vec::new(),
            anchor: None,
            position: Position::default(),
        }
    }

    /// The bytes decode, with qdrant-client's types, to what those types hold for the same
    /// documents: every payload kind, both id kinds, dense, empty, named and sparse vectors, a
    /// filter and a shard key beside them, and another operation between two upserts.
    #[test]
    fn the_request_decodes_to_what_qdrant_clients_types_hold() {
        let payload = json!({"i": 7, "neg": -3, "u": u64::MAX, "f": 1.5, "s": "x", "b": true,
            "n": null, "a": [1, "two", [3.5], {"k": false}], "o": {"k": {"deep": [false]}},
            "_pg2qdrant": {"table": "public.t", "lsn": 123456789, "seq": 0}, "": ""});
        let uuid = uuid::Uuid::parse_str("6f1c2a8e-0d3b-4c2f-9a51-0b7e9c4d2f11").unwrap();
        let docs = [
            doc(
                PointKey::Num(1),
                payload.clone(),
                Some(Vectors::Default(vec![0.5, -1.25, 3e-7])),
            ),
            doc(
                PointKey::Num(u64::MAX),
                json!({}),
                Some(Vectors::Default(Vec::new())),
            ),
            doc(PointKey::Uuid(uuid), payload, None),
            doc(
                PointKey::Num(300),
                json!({"t": "é"}),
                Some(Vectors::Named(vec![
                    ("dense".to_owned(), Vector::Dense(vec![1.0; 5])),
                    (
                        "sparse".to_owned(),
                        Vector::Sparse(Sparse::from_pairs(vec![(3, 0.5), (9, 1.0)])),
                    ),
                ])),
            ),
        ];
        let refs: Vec<&Document> = docs.iter().collect();
        let filter = crate::sink::qdrant::fence::per_point([(
            mapping::point_id(&PointKey::Num(1)),
            Position::default(),
        )]);
        let updates = vec![
            Update::Upsert {
                docs: refs[..2].to_vec(),
                shard_key_selector: None,
                update_filter: Some(filter),
            },
            Update::Other(PointsUpdateOperation {
                operation: Some(Operation::DeletePoints(
                    qdrant_client::qdrant::points_update_operation::DeletePoints {
                        points: Some(vec![mapping::point_id(&PointKey::Num(9))].into()),
                        shard_key_selector: None,
                    },
                )),
            }),
            Update::Upsert {
                docs: refs[2..].to_vec(),
                shard_key_selector: Some(crate::sink::qdrant::shards::Keys::one("tenant-a")),
                update_filter: None,
            },
        ];
        let encoded = request("coll", &updates);
        let decoded = UpdateBatchPoints::decode(encoded.0.clone()).unwrap();
        let expected = UpdateBatchPoints {
            collection_name: "coll".to_owned(),
            wait: Some(true),
            operations: updates.iter().map(Update::to_operation).collect(),
            ordering: None,
            timeout: None,
        };
        // (`request` also checks, in debug builds, that it wrote the size it computed first.)
        assert_eq!(decoded, expected);
    }
}
