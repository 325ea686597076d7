//! A committed change → its `pg2qdrant.v1.ChangeEvent`. Pure.
//!
//! Values are typed by the database's type registry, from either form a value arrives in (text
//! or binary), so the same row gives the same event in both: integers, floats, exact numerics
//! (text), booleans, bytes, JSON text, timestamps (unix microseconds), one-dimensional arrays,
//! pgvector vectors; every other type as PostgreSQL's text output. A value that cannot be read
//! as its type is sent as its text form rather than dropped (`text_of` of the datum).

use super::proto as pb;
use crate::event::{Change, ChangeKind, Column, Datum, PointKey, Row};
use crate::mapping::types::{Kind, Scalar};
use crate::mapping::{binary, sparsevec, value, TableMapping};
use pb::value::Kind as V;
use serde_json::Value as Json;

/// The event of `change` (of `mapping`'s table). `read`: a row copied by a snapshot.
pub fn encode(mapping: &TableMapping, change: &Change, read: bool) -> pb::ChangeEvent {
    let (operation, new, old) = match &change.kind {
        ChangeKind::Insert { new } if read => (pb::Operation::Read, Some(new), None),
        ChangeKind::Insert { new } => (pb::Operation::Insert, Some(new), None),
        ChangeKind::Update { old, new } => (pb::Operation::Update, Some(new), old.as_ref()),
        ChangeKind::Delete { old } => (pb::Operation::Delete, None, Some(old)),
        ChangeKind::Truncate => (pb::Operation::Truncate, None, None),
        ChangeKind::Sweep => (pb::Operation::Sweep, None, None),
    };
    let keyed = new.or(old);
    pb::ChangeEvent {
        source: Some(pb::Source {
            schema: change.table.schema.clone(),
            table: change.table.name.clone(),
        }),
        operation: operation as i32,
        key: keyed.map_or_else(Vec::new, |r| {
            let cols = columns(mapping, r);
            cols.into_iter()
                .filter(|c| mapping.key.contains(&c.name))
                .collect()
        }),
        new_row: new.map_or_else(Vec::new, |r| columns(mapping, r)),
        old_row: old.map_or_else(Vec::new, |r| columns(mapping, r)),
        commit_lsn: change.position.commit_lsn,
        seq: change.position.seq,
        commit_time_unix_micros: change
            .commit_time_micros
            .saturating_add(crate::mapping::PG_EPOCH_UNIX_MICROS),
        point_id: keyed
            .and_then(|r| mapping.point_key(r).ok())
            .map(|k| pb::PointId {
                id: Some(match k {
                    PointKey::Num(n) => pb::point_id::Id::Num(n),
                    PointKey::Uuid(u) => pb::point_id::Id::Uuid(u.to_string()),
                }),
            }),
    }
}

fn columns(mapping: &TableMapping, row: &Row) -> Vec<pb::Column> {
    row.columns
        .iter()
        .zip(&row.values)
        .map(|(c, d)| pb::Column {
            name: c.name.clone(),
            type_oid: c.type_oid,
            type_name: mapping.types().name(c.type_oid).unwrap_or_default(),
            value: Some(value(mapping, c, d)),
        })
        .collect()
}

/// One value of `col`, typed; its text form when it cannot be read as its type.
pub fn value(mapping: &TableMapping, col: &Column, datum: &Datum) -> pb::Value {
    pb::Value {
        kind: Some(typed(mapping, col, datum)),
    }
}

fn typed(mapping: &TableMapping, col: &Column, datum: &Datum) -> V {
    match datum {
        Datum::Null => return V::Null(pb::Null {}),
        Datum::Unchanged => return V::UnchangedToast(pb::Unchanged {}),
        Datum::Text(_) | Datum::Binary(_) => {}
    }
    let kind = mapping.kind(col.type_oid);
    read(mapping, col, kind, datum).unwrap_or_else(|_| match mapping.text_of(col, datum) {
        Some(Ok(t)) => V::Text(t.into_owned()),
        _ => V::Bytes(match datum {
            Datum::Binary(b) => b.to_vec(),
            Datum::Text(t) => t.as_bytes().to_vec(),
            _ => Vec::new(),
        }),
    })
}

/// Exact numerics as strings, so the JSON route never rounds them.
const EXACT: value::Options = value::Options {
    numeric_string: true,
};

fn read(mapping: &TableMapping, col: &Column, kind: Kind, datum: &Datum) -> Result<V, String> {
    let json = || match datum {
        Datum::Binary(b) => binary::to_json(kind, b, EXACT),
        Datum::Text(t) => value::to_json_with(kind, t, EXACT),
        _ => unreachable!("values only"),
    };
    let Kind::Scalar(s) = kind else {
        return match kind {
            Kind::Array(elem) => array(elem, datum),
            _ => text(mapping, col, datum),
        };
    };
    Ok(match s {
        Scalar::Timestamp | Scalar::TimestampTz => {
            V::Timestamp(timestamp(kind, s == Scalar::TimestampTz, datum)?)
        }
        Scalar::Bytea => V::Bytes(match datum {
            Datum::Binary(b) => b.to_vec(),
            Datum::Text(t) => value::bytea(t)?,
            _ => unreachable!("values only"),
        }),
        Scalar::Vector | Scalar::HalfVec => V::Vector(pb::Vector {
            values: numbers(&json()?).ok_or("not a vector of numbers")?,
        }),
        // pgvector sparsevec: its text form (`{1:0.5,4:2}/8`), exact and the same from either.
        Scalar::SparseVec => {
            let (dim, indices, values) = match datum {
                Datum::Binary(b) => binary::sparse(b)?,
                Datum::Text(t) => sparsevec::parse(t)?,
                _ => unreachable!("values only"),
            };
            V::Text(sparsevec::text(dim, &indices, &values))
        }
        Scalar::Json | Scalar::Jsonb => match text(mapping, col, datum)? {
            V::Text(t) => V::Json(t),
            other => other,
        },
        // The payload's form otherwise (equal from text and binary: `tests/types.rs`): text,
        // uuid, dates and times as PostgreSQL prints them, intervals as ISO 8601 durations.
        _ => {
            let j = json()?;
            scalar(s, &j).unwrap_or_else(|| match j {
                Json::String(t) => V::Text(t),
                other => V::Json(other.to_string()),
            })
        }
    })
}

/// An array, parsed once: packed as floats when it can be, else item by item.
fn array(elem: Scalar, datum: &Datum) -> Result<V, String> {
    Ok(match datum {
        Datum::Text(t) => {
            let items = value::parse_array(t)?;
            match packed_text(elem, &items) {
                Some(floats) => V::FloatArray(floats),
                None => V::Array(text_array(elem, &items)),
            }
        }
        Datum::Binary(b) => match packed_binary(elem, b) {
            Some(floats) => V::FloatArray(floats),
            None => V::Array(binary_array(elem, b)?),
        },
        _ => unreachable!("values only"),
    })
}

/// A timestamp as Unix microseconds, `infinity` and `-infinity` kept as such.
fn timestamp(kind: Kind, with_time_zone: bool, datum: &Datum) -> Result<pb::Timestamp, String> {
    let infinite = |unix_micros| pb::Timestamp {
        unix_micros,
        with_time_zone,
        infinite: true,
    };
    let finite = |unix_micros| pb::Timestamp {
        unix_micros,
        with_time_zone,
        infinite: false,
    };
    Ok(match datum {
        Datum::Text(t) if t == "infinity" => infinite(i64::MAX),
        Datum::Text(t) if t == "-infinity" => infinite(i64::MIN),
        Datum::Text(t) => finite(value::unix_micros(kind, t)?),
        Datum::Binary(b) => match b[..].try_into().map(i64::from_be_bytes) {
            Ok(i64::MAX) => infinite(i64::MAX),
            Ok(i64::MIN) => infinite(i64::MIN),
            _ => finite(binary::unix_micros(kind, b)?),
        },
        _ => unreachable!("values only"),
    })
}

fn text(mapping: &TableMapping, col: &Column, datum: &Datum) -> Result<V, String> {
    match mapping.text_of(col, datum) {
        Some(Ok(t)) => Ok(V::Text(t.into_owned())),
        Some(Err(e)) => Err(e),
        None => Err("no value".to_owned()),
    }
}

/// A scalar of the types with a form of their own, from its payload JSON; `None`: its text.
fn scalar(s: Scalar, j: &Json) -> Option<V> {
    Some(match (s, j) {
        (_, Json::Null) => V::Null(pb::Null {}),
        (Scalar::Bool, Json::Bool(b)) => V::Boolean(*b),
        (Scalar::Int2 | Scalar::Int4 | Scalar::Int8 | Scalar::Oid, Json::Number(n)) => {
            V::Integer(n.as_i64()?)
        }
        (Scalar::Float4 | Scalar::Float8, Json::Number(n)) => V::Float(n.as_f64()?),
        // NaN, Infinity, -Infinity.
        (Scalar::Float4 | Scalar::Float8, Json::String(t)) => V::Float(t.parse().ok()?),
        (Scalar::Numeric, Json::String(t)) => V::Numeric(t.clone()),
        (Scalar::Numeric, Json::Number(n)) => V::Numeric(n.to_string()),
        _ => return None,
    })
}

/// An array element from its payload JSON.
fn element(elem: Scalar, j: Result<Json, String>) -> pb::Value {
    let kind = match j {
        // A JSON element is a document: a JSON string stays quoted.
        Ok(j) if matches!(elem, Scalar::Json | Scalar::Jsonb) && !j.is_null() => {
            V::Json(j.to_string())
        }
        Ok(j) => scalar(elem, &j)
            .or_else(|| payload_form(elem, &j))
            .unwrap_or_else(|| match j {
                Json::String(t) => V::Text(t),
                other => V::Json(other.to_string()),
            }),
        Err(e) => V::Text(format!("<unreadable element: {e}>")),
    };
    pb::Value { kind: Some(kind) }
}

/// Element types whose payload form is not their event form: bytea (base64 in the payload) as
/// bytes, timestamps (ISO in the payload) as timestamps.
fn payload_form(elem: Scalar, j: &Json) -> Option<V> {
    use base64::Engine as _;
    let Json::String(t) = j else { return None };
    Some(match elem {
        Scalar::Bytea => V::Bytes(base64::engine::general_purpose::STANDARD.decode(t).ok()?),
        Scalar::Timestamp | Scalar::TimestampTz => {
            let with_time_zone = elem == Scalar::TimestampTz;
            let at = |unix_micros, infinite| {
                V::Timestamp(pb::Timestamp {
                    unix_micros,
                    with_time_zone,
                    infinite,
                })
            };
            match t.as_str() {
                "infinity" => at(i64::MAX, true),
                "-infinity" => at(i64::MIN, true),
                // RFC 3339 in UTC; years before 1 are signed (`-0940-...`), which chrono's
                // RFC 3339 parser refuses.
                _ if with_time_zone => at(
                    chrono::NaiveDateTime::parse_from_str(
                        t.strip_suffix('Z')?,
                        "%Y-%m-%dT%H:%M:%S%.f",
                    )
                    .ok()?
                    .and_utc()
                    .timestamp_micros(),
                    false,
                ),
                // The payload writes PostgreSQL's text with a `T`.
                _ => at(
                    value::unix_micros(Kind::Scalar(Scalar::Timestamp), &t.replacen('T', " ", 1))
                        .ok()?,
                    false,
                ),
            }
        }
        _ => return None,
    })
}

/// A one-dimensional, non-empty `real[]` or `double precision[]` without NULLs, packed (`None`:
/// any other array, sent as `array`). The floats are the stored ones from either form: the
/// binary form's bits ([`packed_binary`]), or the text parsed as the column's own width (as
/// `float4in` does; no detour through f64 that could round twice).
fn packed_text(elem: Scalar, items: &[value::ArrayItem]) -> Option<pb::FloatArray> {
    if !matches!(elem, Scalar::Float4 | Scalar::Float8) || items.is_empty() {
        return None;
    }
    let mut out = pb::FloatArray::default();
    for item in items {
        let value::ArrayItem::Value(v) = item else {
            return None;
        };
        match elem {
            Scalar::Float4 => out.float4.push(v.parse().ok()?),
            _ => out.float8.push(v.parse().ok()?),
        }
    }
    Some(out)
}

/// The same from the binary form.
fn packed_binary(elem: Scalar, b: &[u8]) -> Option<pb::FloatArray> {
    if !matches!(elem, Scalar::Float4 | Scalar::Float8) {
        return None;
    }
    let (dims, elements) = binary::Elements::with_dims(b).ok()?;
    if dims.len() != 1 || dims[0] == 0 {
        return None;
    }
    let mut out = pb::FloatArray::default();
    for e in elements {
        let e = e.ok()??;
        match elem {
            Scalar::Float4 => out.float4.push(f32::from_be_bytes(e.try_into().ok()?)),
            _ => out.float8.push(f64::from_be_bytes(e.try_into().ok()?)),
        }
    }
    Some(out)
}

/// Arrays of any number of dimensions, as nested arrays, from PostgreSQL's text form.
fn text_array(elem: Scalar, items: &[value::ArrayItem]) -> pb::Array {
    pb::Array {
        items: items
            .iter()
            .map(|item| match item {
                value::ArrayItem::Null => pb::Value {
                    kind: Some(V::Null(pb::Null {})),
                },
                value::ArrayItem::Value(t) => element(elem, value::scalar_json(elem, t, EXACT)),
                value::ArrayItem::Nested(inner) => pb::Value {
                    kind: Some(V::Array(text_array(elem, inner))),
                },
            })
            .collect(),
    }
}

/// The same from the binary form.
fn binary_array(elem: Scalar, b: &[u8]) -> Result<pb::Array, String> {
    let (dims, elements) = binary::Elements::with_dims(b)?;
    let mut level = elements
        .map(|e| {
            Ok(match e? {
                None => pb::Value {
                    kind: Some(V::Null(pb::Null {})),
                },
                Some(e) => element(elem, binary::scalar_json(elem, e, EXACT)),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Nest from the innermost dimension out.
    for &size in dims.iter().skip(1).rev() {
        level = level
            .chunks(size.max(1))
            .map(|c| pb::Value {
                kind: Some(V::Array(pb::Array { items: c.to_vec() })),
            })
            .collect();
    }
    Ok(pb::Array { items: level })
}

fn numbers(j: &Json) -> Option<Vec<f32>> {
    j.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::tests::{binary_real_array, change, mapping, row, t};
    use prost::Message as _;

    fn kind_of(c: &pb::Column) -> &V {
        c.value.as_ref().unwrap().kind.as_ref().unwrap()
    }

    #[test]
    fn an_insert_carries_typed_values_its_key_position_and_point_id() {
        let new = row(&[
            t("5"),
            t("hi"),
            t("{1,2.5}"),
            t("f"),
            t("2024-01-02 03:04:05.5"),
        ]);
        let e = encode(&mapping(""), &change(ChangeKind::Insert { new }), false);
        let e = pb::ChangeEvent::decode(e.encode_to_vec().as_slice()).unwrap();
        assert_eq!(e.operation(), pb::Operation::Insert);
        assert_eq!(e.source.as_ref().unwrap().table, "m");
        assert_eq!((e.commit_lsn, e.seq), (10, 1));
        assert_eq!(e.commit_time_unix_micros, 946_684_800_000_000);
        assert_eq!(e.point_id.unwrap().id, Some(pb::point_id::Id::Num(5)));
        assert_eq!(e.key.len(), 1);
        assert_eq!(kind_of(&e.key[0]), &V::Integer(5));
        let values: Vec<&V> = e.new_row.iter().map(kind_of).collect();
        assert_eq!(values[1], &V::Text("hi".into()));
        assert_eq!(
            values[2],
            &V::FloatArray(pb::FloatArray {
                float4: vec![1.0, 2.5],
                float8: vec![]
            })
        );
        assert_eq!(values[3], &V::Boolean(false));
        assert_eq!(
            values[4],
            &V::Timestamp(pb::Timestamp {
                unix_micros: 1_704_164_645_500_000,
                with_time_zone: false,
                infinite: false,
            })
        );
        assert!(e.old_row.is_empty());
    }

    #[test]
    fn float_arrays_are_packed_from_either_form_unless_empty_with_nulls_or_nested() {
        let m = mapping("");
        let col = &row(&[t("1"), t("a"), t("{}"), t("f"), t("infinity")]).columns[2];
        let pack = |d: Datum| typed(&m, col, &d);
        // 0.1 and 1e-45 (the smallest subnormal) parsed as float4 directly, not through f64.
        let floats = vec![0.1f32, -3.0, 1e-45, f32::INFINITY, 16_777_217.0];
        let want = V::FloatArray(pb::FloatArray {
            float4: floats.clone(),
            float8: vec![],
        });
        assert_eq!(pack(t("{0.1,-3,1e-45,Infinity,16777217}")), want);
        let some: Vec<Option<f32>> = floats.iter().copied().map(Some).collect();
        assert_eq!(pack(binary_real_array(&some)), want);
        // Everything else keeps the item-per-element form.
        for d in [
            t("{}"),
            t("{1,NULL}"),
            t("{{1,2},{3,4}}"),
            binary_real_array(&[]),
            binary_real_array(&[Some(1.0), None]),
        ] {
            assert!(matches!(pack(d.clone()), V::Array(_)), "{d:?}");
        }
    }

    #[test]
    fn deletes_carry_the_old_key_truncates_no_row_copies_are_reads() {
        let m = mapping("");
        let old = row(&[
            t("9"),
            Datum::Null,
            Datum::Unchanged,
            Datum::Null,
            Datum::Null,
        ]);
        let e = encode(&m, &change(ChangeKind::Delete { old }), false);
        assert_eq!(e.operation(), pb::Operation::Delete);
        assert_eq!(kind_of(&e.key[0]), &V::Integer(9));
        assert_eq!(kind_of(&e.old_row[1]), &V::Null(pb::Null {}));
        assert_eq!(kind_of(&e.old_row[2]), &V::UnchangedToast(pb::Unchanged {}));
        assert_eq!(e.point_id.unwrap().id, Some(pb::point_id::Id::Num(9)));
        let tr = encode(&m, &change(ChangeKind::Truncate), false);
        assert_eq!(tr.operation(), pb::Operation::Truncate);
        assert!(tr.point_id.is_none() && tr.key.is_empty());
        let new = row(&[t("1"), t("a"), t("{1,2}"), t("t"), t("infinity")]);
        let r = encode(&m, &change(ChangeKind::Insert { new }), true);
        assert_eq!(r.operation(), pb::Operation::Read);
        let V::Timestamp(ts) = kind_of(&r.new_row[4]) else {
            panic!()
        };
        assert!(ts.infinite && ts.unix_micros == i64::MAX);
    }
}
