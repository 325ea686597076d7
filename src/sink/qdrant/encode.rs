//! The write request encoded straight from the documents.
//!
//! Building qdrant-client's `PointStruct` for a row copies its vector, clones every payload key
//! and string into a `HashMap` of Qdrant values, and prost then walks that map twice (length,
//! then bytes) before the whole thing is dropped; the profile of a 384-float stream was led by
//! those copies and allocations. Here an upsert's points are written once, from the borrowed
//! [`Document`], into the request's buffer: the id, the payload from the document's JSON, the
//! connector's metadata (`_pg2qdrant`) from its typed fields (no JSON object per row: its texts
//! are shared by the rows of a commit, its LSN and ordinal are the document's position), the
//! dense vector's floats. Everything else in the request (fence filters, shard key selectors,
//! deletes, payload updates) is qdrant-client's own types, encoded by prost as before.
//!
//! Protobuf writes a nested message's length before its bytes, so the request is sized before it
//! is written. The sizing pass walks each value once and leaves every length in a list, in the
//! order the writing pass needs them ([`Lens`]); sizing a value inside the writing pass instead
//! would size the `_pg2qdrant` object and its `key` object again at every level they are nested.
//!
//! The bytes are `UpdateBatchPoints` of Qdrant's `points_service.proto` (`/qdrant.Points/
//! UpdateBatch`), appended to the buffer the request goes out in (`batch`: after the gRPC
//! frame's header, in a buffer reused across batches); `tests` decode them with qdrant-client's
//! types and compare with what those types hold for the same documents, so a field number or a
//! length gone wrong fails there.

use super::mapping;
use crate::config::META_FIELD;
use crate::event::{Document, Meta, MetaField, PointKey, Vectors};
use crate::lsn::Position;
use bytes::{BufMut, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;
use qdrant_client::qdrant::{Filter, PointsUpdateOperation, ShardKeySelector, Vectors as QVectors};
use serde_json::{Map, Value};

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

/// `UpdateBatchPoints { collection_name, wait: true, operations }`, appended to `buf`.
pub fn request(collection: &str, updates: &[Update], buf: &mut BytesMut) {
    // Every length the bytes need ahead of a nested message is computed once, in the order the
    // writing pass reads them back (see [`Lens`]).
    let points: usize = updates
        .iter()
        .map(|u| match u {
            Update::Upsert { docs, .. } => docs.len(),
            Update::Other(_) => 0,
        })
        .sum();
    // About two dozen lengths per point with its metadata: allocated once.
    let mut lens = Lens(Vec::with_capacity(1 + points * 24));
    let mut converted = Vec::new();
    let operations: usize = updates
        .iter()
        .map(|u| len_of(3, size_update(u, &mut lens, &mut converted)))
        .sum();
    let total = len_of(1, collection.len()) + key_len(2) + 1 + operations;
    buf.reserve(total);
    let start = buf.len();
    put_head(1, collection.len(), buf);
    buf.put_slice(collection.as_bytes());
    prost::encoding::bool::encode(2, &true, buf);
    let mut lens = lens.reader();
    let mut converted = converted.iter();
    for u in updates {
        match u {
            Update::Other(op) => prost::encoding::message::encode(3, op, buf),
            Update::Upsert {
                docs,
                shard_key_selector,
                update_filter,
            } => {
                // PointsUpdateOperation { upsert (1): PointStructList }
                let list = lens.next();
                put_head(3, len_of(1, list), buf);
                put_head(1, list, buf);
                for d in docs {
                    put_head(1, lens.next(), buf);
                    put_point(d, &mut lens, &mut converted, buf);
                }
                if let Some(s) = shard_key_selector {
                    prost::encoding::message::encode(2, s, buf);
                }
                if let Some(f) = update_filter {
                    prost::encoding::message::encode(3, f, buf);
                }
            }
        }
    }
    debug_assert!(lens.done(), "every length computed first was written");
    debug_assert_eq!(buf.len() - start, total, "the sizes computed first");
}

/// The lengths of the nested messages of a request, in the order they are written: the sizing
/// pass reserves a slot where a length goes, fills it once the contents are sized, and the
/// writing pass reads them back one by one. Each value is sized once, however deep it is nested.
struct Lens(Vec<usize>);

impl Lens {
    fn reserve(&mut self) -> usize {
        self.0.push(0);
        self.0.len() - 1
    }
    fn fill(&mut self, slot: usize, len: usize) -> usize {
        self.0[slot] = len;
        len
    }
    fn reader(&self) -> LensReader<'_> {
        LensReader(self.0.iter())
    }
}

struct LensReader<'a>(std::slice::Iter<'a, usize>);

impl LensReader<'_> {
    fn next(&mut self) -> usize {
        *self.0.next().expect("a length for every nested message")
    }
    fn done(&self) -> bool {
        self.0.len() == 0
    }
}

/// The size of one operation's contents (`PointsUpdateOperation`'s): for an upsert, its point
/// list's field; the lengths of its points and their values go to `lens`, its named or sparse
/// vectors (converted to qdrant-client's type) to `converted`.
fn size_update(u: &Update, lens: &mut Lens, converted: &mut Vec<QVectors>) -> usize {
    match u {
        Update::Other(op) => op.encoded_len(),
        Update::Upsert {
            docs,
            shard_key_selector,
            update_filter,
        } => {
            let slot = lens.reserve();
            let mut list = 0;
            for d in docs {
                list += len_of(1, size_point(d, lens, converted));
            }
            list += shard_key_selector
                .as_ref()
                .map_or(0, |s| len_of(2, s.encoded_len()))
                + update_filter
                    .as_ref()
                    .map_or(0, |f| len_of(3, f.encoded_len()));
            len_of(1, lens.fill(slot, list))
        }
    }
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

/// A point's size (its slot in `lens` is filled); named and sparse vectors are converted once
/// and encoded by prost.
fn size_point(d: &Document, lens: &mut Lens, converted: &mut Vec<QVectors>) -> usize {
    let slot = lens.reserve();
    let mut len = len_of(1, id_len(&d.key));
    for (k, v) in &d.payload {
        let entry = lens.reserve();
        let n = size_entry(k, v, lens);
        len += len_of(3, lens.fill(entry, n));
    }
    if let Some(meta) = &d.meta {
        let entry = lens.reserve();
        let n = len_of(1, META_FIELD.len()) + len_of(2, size_meta(meta, d.position, lens));
        len += len_of(3, lens.fill(entry, n));
    }
    len += match &d.vectors {
        Some(v @ Vectors::Named(_)) => {
            let q = mapping::vectors(v);
            let slot = lens.reserve();
            let n = lens.fill(slot, q.encoded_len());
            converted.push(q);
            len_of(4, n)
        }
        Some(Vectors::Default(dense)) => len_of(4, len_of(1, dense_len(dense))),
        None => 0,
    };
    lens.fill(slot, len)
}

fn put_point<'c>(
    d: &Document,
    lens: &mut LensReader,
    converted: &mut impl Iterator<Item = &'c QVectors>,
    buf: &mut impl BufMut,
) {
    put_head(1, id_len(&d.key), buf);
    put_id(&d.key, buf);
    for (k, v) in &d.payload {
        put_head(3, lens.next(), buf);
        put_entry(k, v, lens, buf);
    }
    if let Some(meta) = &d.meta {
        put_head(3, lens.next(), buf);
        put_head(1, META_FIELD.len(), buf);
        buf.put_slice(META_FIELD.as_bytes());
        put_head(2, lens.next(), buf);
        put_meta(meta, d.position, lens, buf);
    }
    match &d.vectors {
        Some(Vectors::Named(_)) => {
            put_head(4, lens.next(), buf);
            converted
                .next()
                .expect("converted while sized")
                .encode_raw(buf);
        }
        Some(Vectors::Default(dense)) => {
            put_head(4, len_of(1, dense_len(dense)), buf);
            put_dense(dense, buf);
        }
        None => {}
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

/// `DenseVector { data }`'s size (an empty packed field is left out).
fn data_len(d: &[f32]) -> usize {
    if d.is_empty() {
        0
    } else {
        len_of(1, 4 * d.len())
    }
}

/// `Vector { dense: DenseVector { data } }`'s size.
fn dense_len(d: &[f32]) -> usize {
    len_of(101, data_len(d))
}

/// `Vectors { vector: Vector { dense: DenseVector { data } } }`'s content.
fn put_dense(d: &[f32], buf: &mut impl BufMut) {
    put_head(1, dense_len(d), buf);
    put_head(101, data_len(d), buf);
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

/// An entry's size; its value's length goes to `lens`.
fn size_entry(k: &str, v: &Value, lens: &mut Lens) -> usize {
    len_of(1, k.len()) + len_of(2, size_value(v, lens))
}

fn put_entry(k: &str, v: &Value, lens: &mut LensReader, buf: &mut impl BufMut) {
    put_head(1, k.len(), buf);
    buf.put_slice(k.as_bytes());
    put_head(2, lens.next(), buf);
    put_value(v, lens, buf);
}

// Value { null (1) | double (2) | integer (3) | string (4) | bool (5) | struct (6) | list (7) }
// Numbers as `mapping::payload`: an integer when it fits i64, else a double.

/// A value's size, in a slot of `lens` (followed by the slots of what it holds).
fn size_value(v: &Value, lens: &mut Lens) -> usize {
    let slot = lens.reserve();
    let len = match v {
        Value::Null => key_len(1) + 1,
        Value::Bool(_) => key_len(5) + 1,
        Value::Number(n) => number_len(n.as_i64()),
        Value::String(s) => len_of(4, s.len()),
        Value::Array(a) => {
            let inner = lens.reserve();
            let items = a.iter().map(|x| len_of(1, size_value(x, lens))).sum();
            len_of(7, lens.fill(inner, items))
        }
        Value::Object(o) => size_struct(o, lens),
    };
    lens.fill(slot, len)
}

/// `struct (6)`'s size, for an object (its slot, then its fields' slots).
fn size_struct(o: &Map<String, Value>, lens: &mut Lens) -> usize {
    let inner = lens.reserve();
    let fields = o
        .iter()
        .map(|(k, x)| {
            let entry = lens.reserve();
            let n = size_entry(k, x, lens);
            len_of(1, lens.fill(entry, n))
        })
        .sum();
    len_of(6, lens.fill(inner, fields))
}

fn put_struct(o: &Map<String, Value>, lens: &mut LensReader, buf: &mut impl BufMut) {
    put_head(6, lens.next(), buf);
    for (k, x) in o {
        put_head(1, lens.next(), buf);
        put_entry(k, x, lens, buf);
    }
}

/// A number's size: an integer (`Some`, as i64) or a double (`None`).
fn number_len(integer: Option<i64>) -> usize {
    match integer {
        Some(i) => key_len(3) + encoded_len_varint(i as u64),
        None => key_len(2) + 8,
    }
}

fn put_number(integer: Option<i64>, double: f64, buf: &mut impl BufMut) {
    match integer {
        Some(i) => {
            encode_key(3, WireType::Varint, buf);
            encode_varint(i as u64, buf);
        }
        None => {
            encode_key(2, WireType::SixtyFourBit, buf);
            buf.put_f64_le(double);
        }
    }
}

/// Writes a value whose length was just read; reads the lengths of what it holds.
fn put_value(v: &Value, lens: &mut LensReader, buf: &mut impl BufMut) {
    match v {
        Value::Null => {
            encode_key(1, WireType::Varint, buf);
            encode_varint(0, buf);
        }
        Value::Bool(b) => {
            encode_key(5, WireType::Varint, buf);
            encode_varint(u64::from(*b), buf);
        }
        Value::Number(n) => put_number(n.as_i64(), n.as_f64().unwrap_or(f64::NAN), buf),
        Value::String(s) => put_text(s, buf),
        Value::Array(a) => {
            put_head(7, lens.next(), buf);
            for x in a {
                put_head(1, lens.next(), buf);
                put_value(x, lens, buf);
            }
        }
        Value::Object(o) => put_struct(o, lens, buf),
    }
}

// The connector's metadata, `_pg2qdrant`: a `struct (6)` of its fields, written from the typed
// [`Meta`] as `Meta::to_json` would have them (numbers as serde_json's: an integer when the u64
// fits i64, else a double).

/// The metadata's size as a `Value` (its slot, then the slots of what it holds).
fn size_meta(meta: &Meta, at: Position, lens: &mut Lens) -> usize {
    let slot = lens.reserve();
    let inner = lens.reserve();
    let mut fields = 0;
    for (k, f) in meta.fields(at) {
        let entry = lens.reserve();
        let n = len_of(1, k.len()) + len_of(2, size_field(&f, lens));
        fields += len_of(1, lens.fill(entry, n));
    }
    let len = len_of(6, lens.fill(inner, fields));
    lens.fill(slot, len)
}

fn put_meta(meta: &Meta, at: Position, lens: &mut LensReader, buf: &mut impl BufMut) {
    put_head(6, lens.next(), buf);
    for (k, f) in meta.fields(at) {
        put_head(1, lens.next(), buf);
        put_head(1, k.len(), buf);
        buf.put_slice(k.as_bytes());
        put_head(2, lens.next(), buf);
        put_field(&f, lens, buf);
    }
}

/// A metadata field's size as a `Value`, in a slot as [`size_value`]'s.
fn size_field(f: &MetaField, lens: &mut Lens) -> usize {
    let mut scalar = |len: usize| {
        let slot = lens.reserve();
        lens.fill(slot, len)
    };
    match f {
        MetaField::Text(t) => scalar(len_of(4, t.len())),
        MetaField::Shared(t) => scalar(len_of(4, t.len())),
        MetaField::Number(n) => scalar(number_len(i64::try_from(*n).ok())),
        MetaField::Json(v) => size_value(v, lens),
        MetaField::Object(o) => {
            let slot = lens.reserve();
            let len = size_struct(o, lens);
            lens.fill(slot, len)
        }
    }
}

fn put_field(f: &MetaField, lens: &mut LensReader, buf: &mut impl BufMut) {
    match f {
        MetaField::Text(t) => put_text(t, buf),
        MetaField::Shared(t) => put_text(t, buf),
        MetaField::Number(n) => put_number(i64::try_from(*n).ok(), *n as f64, buf),
        MetaField::Json(v) => put_value(v, lens, buf),
        MetaField::Object(o) => put_struct(o, lens, buf),
    }
}

/// `string (4)`.
fn put_text(t: &str, buf: &mut impl BufMut) {
    put_head(4, t.len(), buf);
    buf.put_slice(t.as_bytes());
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
            meta: None,
            vectors,
            embed: Vec::new(),
            anchor: None,
            position: Position::default(),
        }
    }

    /// The request's bytes, appended to a buffer that already holds some (the frame's header,
    /// when it is sent): what was there stays, and the request's bytes follow.
    fn encoded(collection: &str, updates: &[Update]) -> bytes::Bytes {
        let mut buf = BytesMut::from(&b"head"[..]);
        request(collection, updates, &mut buf);
        assert_eq!(&buf[..4], b"head");
        buf.split_off(4).freeze()
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
        let mut docs = docs;
        // The metadata, typed: every field, a seq past i64 (a double, as serde_json has it),
        // and on another point the bare fields beside a column of the same name.
        let mut meta = crate::mapping::meta(&"public.t".into(), 1_500_000);
        meta.key = json!({"id": "1", "n": null});
        meta.shard = Some("tenant-a".into());
        meta.embedded
            .insert("v".into(), json!({"model": "m", "hash": "h"}));
        docs[0].meta = Some(meta.clone());
        docs[0].position = Position {
            commit_lsn: 0x16B_3748,
            seq: u64::MAX,
        };
        docs[2].meta = Some(crate::mapping::meta(&"s.t".into(), 0));
        docs[3].meta = Some(meta);
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
        let decoded = UpdateBatchPoints::decode(encoded("coll", &updates)).unwrap();
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

    /// The lengths are read back in the order they were sized whatever the shapes: empty
    /// containers, an upsert of no points, named vectors in several points of several
    /// operations, other operations first and last, a shard key and a filter together.
    #[test]
    fn lengths_line_up_for_every_shape() {
        let named = |n: f32| {
            Some(Vectors::Named(vec![
                ("a".to_owned(), Vector::Dense(vec![n; 3])),
                (
                    "s".to_owned(),
                    Vector::Sparse(Sparse::from_pairs(vec![(1, n)])),
                ),
            ]))
        };
        let docs = [
            doc(
                PointKey::Num(1),
                json!({"e": [], "o": {}, "x": [[], {}, [[{"k": []}]]], "z": 1}),
                named(1.0),
            ),
            doc(PointKey::Num(2), json!({"o": {"a": {"b": {}}}}), named(2.0)),
            doc(PointKey::Num(3), json!({}), named(3.0)),
        ];
        let mut docs = docs;
        docs[1].meta = Some(crate::mapping::meta(&"s.t".into(), 0));
        let refs: Vec<&Document> = docs.iter().collect();
        let other = || {
            Update::Other(PointsUpdateOperation {
                operation: Some(Operation::DeletePoints(
                    qdrant_client::qdrant::points_update_operation::DeletePoints {
                        points: Some(vec![mapping::point_id(&PointKey::Num(9))].into()),
                        shard_key_selector: None,
                    },
                )),
            })
        };
        let filter = crate::sink::qdrant::fence::per_point([(
            mapping::point_id(&PointKey::Num(2)),
            Position::default(),
        )]);
        let updates = vec![
            other(),
            Update::Upsert {
                docs: Vec::new(),
                shard_key_selector: None,
                update_filter: None,
            },
            Update::Upsert {
                docs: refs[..2].to_vec(),
                shard_key_selector: Some(crate::sink::qdrant::shards::Keys::one("t")),
                update_filter: Some(filter),
            },
            Update::Upsert {
                docs: refs[2..].to_vec(),
                shard_key_selector: None,
                update_filter: None,
            },
            other(),
        ];
        let decoded = UpdateBatchPoints::decode(encoded("c", &updates)).unwrap();
        assert_eq!(
            decoded.operations,
            updates.iter().map(Update::to_operation).collect::<Vec<_>>()
        );
    }
}
