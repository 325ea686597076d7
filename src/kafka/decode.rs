//! A `pg2qdrant.v1.ChangeEvent` → the [`Change`] it was made from. Pure.
//!
//! Values come back as the forms the mapping reads: PostgreSQL's text output for most (an
//! integer as its digits, a bool as `t`/`f`, bytes as `\x` hex, arrays in `{...}` form with
//! every element quoted, vectors as `[...]`), timestamps in their binary form (exact
//! microseconds, infinities included). So a decoded event maps to the same points as the
//! change it was encoded from (`tests/types.rs` checks every type, from both stream formats).

use super::proto as pb;
use crate::event::{Change, ChangeKind, Column, Datum, Row, TableName};
use crate::lsn::Position;
use crate::mapping::types::{Kind, Scalar};
use crate::mapping::TableMapping;
use pb::value::Kind as V;
use std::fmt::Write as _;
use std::sync::Arc;

/// The table an event is about (`None`: it names none).
pub fn table(e: &pb::ChangeEvent) -> Option<TableName> {
    e.source.as_ref().map(|s| TableName {
        schema: s.schema.clone(),
        name: s.table.clone(),
    })
}

/// The change of `e`, read with its table's `mapping`; an error says what is wrong with it.
pub fn change(mapping: &TableMapping, e: &pb::ChangeEvent) -> Result<Change, String> {
    let table = table(e).ok_or("the event names no source table")?;
    let keys: Vec<&str> = e.key.iter().map(|c| c.name.as_str()).collect();
    let new = || row(mapping, &e.new_row, &keys);
    let old = || row(mapping, &e.old_row, &keys);
    let kind = match pb::Operation::try_from(e.operation) {
        Ok(pb::Operation::Insert | pb::Operation::Read) => ChangeKind::Insert { new: new()? },
        Ok(pb::Operation::Update) => ChangeKind::Update {
            old: if e.old_row.is_empty() {
                None
            } else {
                Some(old()?)
            },
            new: new()?,
        },
        Ok(pb::Operation::Delete) => ChangeKind::Delete { old: old()? },
        Ok(pb::Operation::Truncate) => ChangeKind::Truncate,
        Ok(pb::Operation::Sweep) => ChangeKind::Sweep,
        Ok(pb::Operation::Unspecified) | Err(_) => {
            return Err(format!("unknown operation {}", e.operation))
        }
    };
    if let ChangeKind::Insert { new: r } | ChangeKind::Update { new: r, .. } = &kind {
        if r.values.is_empty() {
            return Err("an insert or update without its new row".to_owned());
        }
    }
    Ok(Change {
        table,
        position: Position {
            commit_lsn: e.commit_lsn,
            seq: e.seq,
        },
        commit_time_micros: e
            .commit_time_unix_micros
            .saturating_sub(crate::mapping::PG_EPOCH_UNIX_MICROS),
        kind,
    })
}

fn row(mapping: &TableMapping, cols: &[pb::Column], keys: &[&str]) -> Result<Row, String> {
    let columns: Vec<Column> = cols
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            type_oid: oid(mapping, c),
            type_modifier: -1,
            is_key: keys.contains(&c.name.as_str()),
        })
        .collect();
    let values = cols
        .iter()
        .zip(&columns)
        .map(|(c, col)| {
            let v = c
                .value
                .as_ref()
                .and_then(|v| v.kind.as_ref())
                .ok_or_else(|| {
                    format!(
                        "column {:?} has no value of a kind this applier knows (an event of a newer pg2qdrant? upgrade the appliers, then produce the dead-lettered event back to its topic or resync the table)",
                        c.name
                    )
                })?;
            datum(mapping.kind(col.type_oid), v).map_err(|e| format!("column {:?}: {e}", c.name))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Row {
        columns: Arc::from(columns),
        values,
    })
}

/// The event's type oid, or this database's oid of the type it names (extensions' types).
fn oid(mapping: &TableMapping, c: &pb::Column) -> u32 {
    let types = mapping.types();
    if c.type_name.is_empty() || types.is_named(c.type_oid, &c.type_name) {
        return c.type_oid;
    }
    types.oid(&c.type_name).unwrap_or(c.type_oid)
}

fn datum(kind: Kind, v: &V) -> Result<Datum, String> {
    Ok(match v {
        V::Null(_) => Datum::Null,
        V::UnchangedToast(_) => Datum::Unchanged,
        V::Timestamp(t)
            if matches!(kind, Kind::Scalar(Scalar::Timestamp | Scalar::TimestampTz)) =>
        {
            let pg = if t.infinite {
                t.unix_micros
            } else {
                t.unix_micros
                    .checked_sub(crate::mapping::PG_EPOCH_UNIX_MICROS)
                    .ok_or("timestamp out of range")?
            };
            Datum::Binary(pg.to_be_bytes().to_vec().into())
        }
        // Float arrays and vectors (the usual vector columns) in PostgreSQL's binary form: the
        // mapping reads the floats straight, as it does from a binary stream, instead of
        // printing and parsing each one.
        V::Array(a) => match float_array(kind, a) {
            Some(b) => Datum::Binary(b.into()),
            None => Datum::Text(text(kind, v)?),
        },
        V::FloatArray(p) => match packed(kind, p) {
            Some(b) => Datum::Binary(b.into()),
            None => Datum::Text(text(kind, v)?),
        },
        V::Vector(vec) if kind == Kind::Scalar(Scalar::Vector) => {
            let mut b = Vec::with_capacity(4 + 4 * vec.values.len());
            let dim = u16::try_from(vec.values.len()).map_err(|_| "vector: too many dimensions")?;
            b.extend_from_slice(&dim.to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            for f in &vec.values {
                b.extend_from_slice(&f.to_be_bytes());
            }
            Datum::Binary(b.into())
        }
        other => Datum::Text(text(kind, other)?),
    })
}

/// A non-empty `real[]` or `double precision[]` of floats and NULLs as PostgreSQL's binary
/// array (`None`: another element type or item, read through its text form instead).
fn float_array(kind: Kind, a: &pb::Array) -> Option<Vec<u8>> {
    let mut has_null = false;
    for i in &a.items {
        match i.kind {
            None | Some(V::Null(_)) => has_null = true,
            Some(V::Float(_)) => {}
            _ => return None,
        }
    }
    let items = a.items.iter().map(|i| match i.kind {
        Some(V::Float(f)) => Some(f),
        _ => None,
    });
    binary_floats(kind, a.items.len(), has_null, items)
}

/// A packed float array as PostgreSQL's binary `real[]` or `double precision[]`, by the
/// column's type (`None`: the column is of another type, or the array is empty; read through
/// its text form instead).
fn packed(kind: Kind, p: &pb::FloatArray) -> Option<Vec<u8>> {
    let n = p.float4.len() + p.float8.len();
    binary_floats(kind, n, false, floats(p).map(Some))
}

/// PostgreSQL's binary one-dimensional array of the `n` `items` (`None` items: NULLs), of the
/// element type of `kind` (`None`: not a float array column, or no items).
fn binary_floats(
    kind: Kind,
    n: usize,
    has_null: bool,
    items: impl Iterator<Item = Option<f64>>,
) -> Option<Vec<u8>> {
    let (oid, width) = match kind {
        Kind::Array(Scalar::Float4) => (700i32, 4usize),
        Kind::Array(Scalar::Float8) => (701, 8),
        _ => return None,
    };
    let len = i32::try_from(n).ok().filter(|&n| n > 0)?;
    let mut b = Vec::with_capacity(20 + n * (4 + width));
    for x in [1, i32::from(has_null), oid, len, 1] {
        b.extend_from_slice(&x.to_be_bytes());
    }
    // Each item's length and bits written at once (one copy per item, the hot path of a
    // vector column).
    for item in items {
        match item {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(f) if width == 4 => {
                let mut item = [0, 0, 0, 4, 0, 0, 0, 0];
                item[4..].copy_from_slice(&(f as f32).to_be_bytes());
                b.extend_from_slice(&item);
            }
            Some(f) => {
                let mut item = [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0];
                item[4..].copy_from_slice(&f.to_be_bytes());
                b.extend_from_slice(&item);
            }
        }
    }
    Some(b)
}

/// A packed array's floats, whichever width they came in.
fn floats(p: &pb::FloatArray) -> impl Iterator<Item = f64> + '_ {
    let float4 = p.float4.iter().map(|&f| f64::from(f));
    float4.chain(p.float8.iter().copied())
}

/// PostgreSQL's text output of a value (`kind`: its column's, for float4 and arrays).
fn text(kind: Kind, v: &V) -> Result<String, String> {
    let float4 = matches!(
        kind,
        Kind::Scalar(Scalar::Float4) | Kind::Array(Scalar::Float4)
    );
    Ok(match v {
        V::Null(_) | V::UnchangedToast(_) => return Err("not a value".to_owned()),
        V::Text(t) | V::Numeric(t) | V::Json(t) => t.clone(),
        V::Integer(n) => n.to_string(),
        V::Float(f) => float(*f, float4),
        V::Boolean(b) => if *b { "t" } else { "f" }.to_owned(),
        V::Bytes(b) => {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for byte in b {
                let _ = write!(s, "{byte:02x}");
            }
            s
        }
        V::Timestamp(t) => timestamp_text(t)?,
        V::Vector(vec) => {
            let items: Vec<String> = vec.values.iter().map(|f| float(*f as f64, true)).collect();
            format!("[{}]", items.join(","))
        }
        V::FloatArray(p) => {
            let items: Vec<String> = floats(p).map(|f| float(f, float4)).collect();
            format!("{{{}}}", items.join(","))
        }
        V::Array(a) => {
            let mut s = String::from("{");
            for (i, item) in a.items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                match item.kind.as_ref() {
                    None | Some(V::Null(_)) => s.push_str("NULL"),
                    Some(V::Array(_)) => {
                        s.push_str(&text(kind, item.kind.as_ref().expect("some"))?)
                    }
                    Some(other) => {
                        s.push('"');
                        for ch in text(kind, other)?.chars() {
                            if ch == '"' || ch == '\\' {
                                s.push('\\');
                            }
                            s.push(ch);
                        }
                        s.push('"');
                    }
                }
            }
            s.push('}');
            s
        }
    })
}

fn float(f: f64, float4: bool) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if float4 {
        (f as f32).to_string()
    } else {
        f.to_string()
    }
}

/// A timestamp inside an array: `YYYY-MM-DD HH:MM:SS[.ffffff][+00][ BC]`.
fn timestamp_text(t: &pb::Timestamp) -> Result<String, String> {
    use chrono::Datelike as _;
    if t.infinite {
        return Ok(if t.unix_micros < 0 {
            "-infinity"
        } else {
            "infinity"
        }
        .to_owned());
    }
    let at = chrono::DateTime::from_timestamp_micros(t.unix_micros)
        .ok_or("timestamp out of range")?
        .naive_utc();
    let (at, bc) = if at.year() <= 0 {
        (
            at.with_year(1 - at.year())
                .ok_or("timestamp out of range")?,
            true,
        )
    } else {
        (at, false)
    };
    // As PostgreSQL prints it: fractional digits without trailing zeros, none for whole seconds.
    let mut s = at.format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = t.unix_micros.rem_euclid(1_000_000);
    if micros != 0 {
        s.push_str(format!(".{micros:06}").trim_end_matches('0'));
    }
    if t.with_time_zone {
        s.push_str("+00");
    }
    if bc {
        s.push_str(" BC");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Op;
    use crate::mapping::tests::{
        binary_real_array, change as sample, mapping, row as sample_row, t,
    };

    #[test]
    fn an_encoded_change_decodes_to_the_same_ops() {
        let m = mapping("");
        let cases = [
            ChangeKind::Insert {
                new: sample_row(&[
                    t("5"),
                    t("say \"hi\" \\ {x}"),
                    t("{1,2.5}"),
                    t("f"),
                    t("2024-01-02 03:04:05.5"),
                ]),
            },
            ChangeKind::Update {
                old: Some(sample_row(&[
                    t("4"),
                    Datum::Null,
                    Datum::Null,
                    Datum::Null,
                    Datum::Null,
                ])),
                new: sample_row(&[
                    t("5"),
                    Datum::Unchanged,
                    t("{0.1,-3}"),
                    t("t"),
                    t("-infinity"),
                ]),
            },
            ChangeKind::Delete {
                old: sample_row(&[t("9"), Datum::Null, Datum::Null, Datum::Null, Datum::Null]),
            },
            ChangeKind::Truncate,
            ChangeKind::Sweep,
        ];
        for kind in cases {
            let c = sample(kind);
            let e = super::super::event::encode(&m, &c, false);
            let back = change(&m, &e).unwrap();
            assert_eq!(back.position, c.position);
            assert_eq!(back.commit_time_micros, c.commit_time_micros);
            assert_eq!(
                merged_as_read(m.ops(&back).unwrap()),
                merged_as_read(m.ops(&c).unwrap()),
                "{c:?}"
            );
        }
    }

    /// Ops with each merge's row reduced to what a merge reads of it (which values are unchanged;
    /// the document carries the key): the event may bring the other values back in binary form.
    fn merged_as_read(ops: Vec<Op>) -> Vec<Op> {
        ops.into_iter()
            .map(|op| match op {
                Op::Merge {
                    collection,
                    doc,
                    table,
                    row,
                } => Op::Merge {
                    collection,
                    doc,
                    table,
                    row: crate::event::Row {
                        values: row
                            .values
                            .iter()
                            .map(|v| match v {
                                Datum::Unchanged => Datum::Unchanged,
                                _ => Datum::Null,
                            })
                            .collect(),
                        columns: row.columns,
                    },
                },
                op => op,
            })
            .collect()
    }

    #[test]
    fn float_arrays_decode_to_their_binary_form_and_other_arrays_to_text() {
        let m = mapping("");
        let c = sample(ChangeKind::Insert {
            new: sample_row(&[t("5"), t("a"), t("{1.5,NULL,-3}"), t("f"), t("-infinity")]),
        });
        let back = change(&m, &super::super::event::encode(&m, &c, false)).unwrap();
        let ChangeKind::Insert { new } = &back.kind else {
            panic!("{back:?}")
        };
        // real[] {1.5, NULL, -3}: one dimension, a NULL, float4 (700), 3 items from 1.
        assert_eq!(
            new.values[2],
            binary_real_array(&[Some(1.5), None, Some(-3.0)])
        );
        // Without a NULL the event packs the floats; they come back in the same binary form.
        let c = sample(ChangeKind::Insert {
            new: sample_row(&[t("5"), t("a"), t("{1.5,-3}"), t("f"), t("-infinity")]),
        });
        let e = super::super::event::encode(&m, &c, false);
        assert!(matches!(
            e.new_row[2].value.as_ref().unwrap().kind,
            Some(V::FloatArray(_))
        ));
        let back = change(&m, &e).unwrap();
        let ChangeKind::Insert { new } = &back.kind else {
            panic!("{back:?}")
        };
        assert_eq!(new.values[2], binary_real_array(&[Some(1.5), Some(-3.0)]));
        // The mapping reads it as it reads the text (the collection's vectors have 2 floats).
        assert_eq!(m.ops(&back).unwrap(), m.ops(&c).unwrap());
        // In a column of another type, the packed floats read as their text.
        let p = pb::FloatArray {
            float4: vec![1.5, -3.0],
            float8: vec![],
        };
        assert_eq!(
            datum(Kind::Array(Scalar::Numeric), &V::FloatArray(p)).unwrap(),
            Datum::Text("{1.5,-3}".into())
        );
        // An array of another element type keeps its text form.
        let texts = pb::Array {
            items: vec![pb::Value {
                kind: Some(V::Text("x".into())),
            }],
        };
        assert!(float_array(Kind::Array(Scalar::Text), &texts).is_none());
        assert!(float_array(Kind::Array(Scalar::Float4), &texts).is_none());
        assert!(float_array(Kind::Array(Scalar::Float4), &pb::Array { items: vec![] }).is_none());
        // Packed float4 comes back bit for bit (each item: its length, then its bits).
        let odd = [f32::INFINITY, -0.0, 1e-45, f32::NAN, 16777217.0];
        let p = pb::FloatArray {
            float4: odd.to_vec(),
            float8: vec![],
        };
        assert_eq!(
            Datum::Binary(packed(Kind::Array(Scalar::Float4), &p).unwrap().into()),
            binary_real_array(&odd.map(Some))
        );
        assert!(packed(Kind::Array(Scalar::Float4), &pb::FloatArray::default()).is_none());
    }

    #[test]
    fn a_bad_event_is_an_error_naming_what_is_wrong() {
        let m = mapping("");
        let mut e = super::super::event::encode(
            &m,
            &sample(ChangeKind::Insert {
                new: sample_row(&[t("5"), t("a"), t("{1,2}"), t("f"), t("2024-01-02 03:04:05")]),
            }),
            false,
        );
        e.operation = 77;
        assert!(change(&m, &e).unwrap_err().contains("operation 77"));
        e.operation = pb::Operation::Insert as i32;
        e.new_row[1].value = None;
        assert!(change(&m, &e).unwrap_err().contains("\"body\""));
        // A kind added after this reader was built decodes as none (prost skips the field).
        // Field 14, length-delimited, empty: a kind this build does not know.
        let unknown = <pb::Value as prost::Message>::decode(&[0x72u8, 0x00][..]).unwrap();
        assert_eq!(unknown.kind, None);
        e.new_row[1].value = Some(unknown);
        let err = change(&m, &e).unwrap_err();
        assert!(err.contains("\"body\"") && err.contains("upgrade"), "{err}");
        e.source = None;
        assert!(change(&m, &e).unwrap_err().contains("source"));
    }
}
