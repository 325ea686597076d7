use super::oid;
use super::*;
use crate::config::parse;
use crate::event::Column;
use serde_json::json;

/// `public.m` into `c`, key `id`, vector column `v` (2), plus `extra` table keys.
pub(crate) fn mapping(extra: &str) -> TableMapping {
    let cfg = parse(&format!(
        "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n\
         [[tables]]\ntable = \"public.m\"\ncollection = \"c\"\nvector = {{ column = \"v\", size = 2, distance = \"Cosine\" }}\n{extra}"
    ))
    .unwrap();
    TableMapping::new(&cfg.tables[0], vec!["id".into()]).expect("compiles")
}

/// A row of (id int8, body text, v real[], gone bool, ts timestamp).
pub(crate) fn row(values: &[Datum]) -> Row {
    let cols: Vec<Column> = [
        ("id", oid::INT8),
        ("body", 25),
        ("v", oid::FLOAT4_ARRAY),
        ("gone", oid::BOOL),
        ("ts", oid::TIMESTAMP),
    ]
    .iter()
    .map(|(n, t)| Column {
        name: (*n).into(),
        type_oid: *t,
        type_modifier: -1,
        is_key: *n == "id",
    })
    .collect();
    Row {
        columns: cols.into(),
        values: values.to_vec(),
    }
}

pub(crate) fn t(s: &str) -> Datum {
    Datum::Text(s.into())
}

/// A change of `m` at position (10, 1), committed at the PostgreSQL epoch.
pub(crate) fn change(kind: ChangeKind) -> Change {
    Change {
        table: TableName::parse("m"),
        position: Position {
            commit_lsn: 10,
            seq: 1,
        },
        commit_time_micros: 0,
        kind,
    }
}

#[test]
fn insert_becomes_upsert_with_renames_and_unix_seconds() {
    let m = mapping("rename = { id = \"message_id\" }\nunix_seconds = [{ column = \"ts\", field = \"ts_unix\" }]");
    let ops = m
        .ops(&change(ChangeKind::Insert {
            new: row(&[
                t("5"),
                t("hi"),
                t("{1,2}"),
                t("f"),
                t("2023-10-13 10:30:00"),
            ]),
        }))
        .unwrap();
    let Op::Upsert { doc, .. } = &ops[0] else {
        panic!("{ops:?}")
    };
    assert_eq!(doc.key, PointKey::Num(5));
    assert_eq!(doc.payload["message_id"], json!(5));
    assert_eq!(doc.payload["ts"], json!("2023-10-13T10:30:00"));
    assert_eq!(doc.payload["ts_unix"], json!(1_697_193_000));
    assert!(!doc.payload.contains_key("v"));
    assert_eq!(doc.vectors, Some(Vectors::Default(vec![1.0, 2.0])));
}

#[test]
fn unchanged_toast_becomes_merge_without_that_field() {
    let m = mapping("");
    let new = row(&[t("5"), Datum::Unchanged, t("{1,2}"), t("f"), Datum::Null]);
    let ops = m
        .ops(&change(ChangeKind::Update { old: None, new }))
        .unwrap();
    let Op::Merge { doc, .. } = &ops[0] else {
        panic!("{ops:?}")
    };
    assert!(!doc.payload.contains_key("body"));
    assert_eq!(doc.payload["ts"], Value::Null);
}

#[test]
fn key_change_deletes_old_point_first() {
    let m = mapping("");
    let old = row(&[t("4"), Datum::Null, Datum::Null, Datum::Null, Datum::Null]);
    let new = row(&[t("5"), t("x"), t("{1,2}"), t("f"), Datum::Null]);
    let ops = m
        .ops(&change(ChangeKind::Update {
            old: Some(old),
            new,
        }))
        .unwrap();
    assert!(matches!(
        &ops[0],
        Op::Delete {
            key: PointKey::Num(4),
            ..
        }
    ));
    assert!(matches!(&ops[1], Op::Upsert { .. }));
}

#[test]
fn soft_deleted_row_becomes_delete() {
    let m = mapping("soft_delete = \"gone\"");
    let ops = m
        .ops(&change(ChangeKind::Insert {
            new: row(&[t("5"), t("x"), t("{1,2}"), t("t"), Datum::Null]),
        }))
        .unwrap();
    assert!(matches!(
        &ops[0],
        Op::Delete {
            key: PointKey::Num(5),
            ..
        }
    ));
}

#[test]
fn bad_vector_names_table_key_and_reason() {
    let m = mapping("");
    let err = m
        .ops(&change(ChangeKind::Insert {
            new: row(&[t("5"), t("x"), t("{1,2,3}"), t("f"), Datum::Null]),
        }))
        .unwrap_err();
    assert_eq!(err.table.to_string(), "public.m");
    assert_eq!(err.key, json!({"id": "5"}));
    assert!(err.reason.contains("3 dimensions"), "{}", err.reason);
}

#[test]
fn a_text_template_that_does_not_parse_is_an_error_naming_the_field() {
    let cfg = parse(
        "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n\
         [[tables]]\ntable = \"public.m\"\ncollection = \"c\"\nvector = { column = \"v\", size = 2, distance = \"Cosine\" }\n",
    )
    .unwrap();
    let mut t = cfg.tables[0].clone();
    let v = t.vector.as_mut().unwrap();
    v.embed = Some("e".into());
    v.text = Some("{open".into());
    let e = TableMapping::new(&t, vec!["id".into()]).unwrap_err();
    assert!(e.to_string().contains("vector.text"), "{e}");
    assert!(e.to_string().contains("{open"), "{e}");
}
