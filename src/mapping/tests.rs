use super::oid;
use super::*;
use crate::config::parse;
use crate::event::{Column, Sparse, Vector, Vectors};
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
/// PostgreSQL's binary `real[]` of `items` (one dimension; `None`: a NULL).
pub(crate) fn binary_real_array(items: &[Option<f32>]) -> Datum {
    let has_null = items.iter().any(Option::is_none);
    let mut b: Vec<u8> = [1i32, i32::from(has_null), 700, items.len() as i32, 1]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    for item in items {
        match item {
            Some(f) => {
                b.extend(4i32.to_be_bytes());
                b.extend(f.to_be_bytes());
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
    }
    Datum::Binary(b.into())
}

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
    assert_eq!(
        payload_json(doc)[META_FIELD],
        json!({"table": "public.m", "lsn": 10, "seq": 1, "commit_lsn": "0/A",
            "commit_time": "2000-01-01T00:00:00.000000Z", "key": {"id": "5"}})
    );
}

/// A column named like the connector's metadata is left out: the metadata takes its place in
/// the stored payload, as it always has.
#[test]
fn a_column_named_like_the_metadata_is_left_out() {
    let m = mapping("");
    let mut r = row(&[t("5"), t("hi"), t("{1,2}"), t("f"), Datum::Null]);
    let mut cols = r.columns.to_vec();
    cols[1].name = META_FIELD.to_owned();
    r.columns = cols.into();
    let ops = m.ops(&change(ChangeKind::Insert { new: r })).unwrap();
    let Op::Upsert { doc, .. } = &ops[0] else {
        panic!("{ops:?}")
    };
    assert!(!doc.payload.contains_key(META_FIELD), "{doc:?}");
    assert_eq!(payload_json(doc)[META_FIELD]["key"], json!({"id": "5"}));
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
fn key_change_with_unchanged_toast_merges_instead_of_storing_the_key_images_null() {
    // The old key image of a key-changing UPDATE: every non-key column NULL.
    let m = mapping("");
    let old = row(&[t("4"), Datum::Null, Datum::Null, Datum::Null, Datum::Null]);
    let new = row(&[t("5"), Datum::Unchanged, t("{1,2}"), t("f"), Datum::Null]);
    let ops = m
        .ops(&change(ChangeKind::Update {
            old: Some(old),
            new,
        }))
        .unwrap();
    assert!(
        matches!(
            &ops[0],
            Op::Delete {
                key: PointKey::Num(4),
                ..
            }
        ),
        "{ops:?}"
    );
    let Op::Merge { doc, row, .. } = &ops[1] else {
        panic!("{ops:?}")
    };
    assert_eq!(doc.key, PointKey::Num(5));
    assert!(!doc.payload.contains_key("body"), "no null body: {doc:?}");
    assert_eq!(row.values[1], Datum::Unchanged);
}

#[test]
fn unchanged_toast_is_filled_from_a_full_old_image() {
    // REPLICA IDENTITY FULL: the old image holds the value the new one left out.
    let m = mapping("");
    let old = row(&[t("4"), t("long"), t("{1,2}"), t("f"), Datum::Null]);
    let new = row(&[t("5"), Datum::Unchanged, t("{1,2}"), t("f"), Datum::Null]);
    let ops = m
        .ops(&change(ChangeKind::Update {
            old: Some(old),
            new,
        }))
        .unwrap();
    let Op::Upsert { doc, .. } = &ops[1] else {
        panic!("{ops:?}")
    };
    assert_eq!(doc.payload["body"], json!("long"));
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

#[test]
fn a_bm25_vector_is_an_input_of_its_text_and_each_chunk_gets_its_own() {
    let m = mapping("sparse_vectors = [{ name = \"kw\", kind = \"bm25\", text = \"{body}\" }]");
    let ops = m
        .ops(&change(ChangeKind::Insert {
            new: row(&[t("5"), t("ticket TCK-1"), t("{1,2}"), t("f"), Datum::Null]),
        }))
        .unwrap();
    let Op::Upsert { doc, .. } = &ops[0] else {
        panic!("{ops:?}")
    };
    assert_eq!(doc.vectors, Some(Vectors::Default(vec![1.0, 2.0])));
    assert_eq!(doc.embed.len(), 1);
    assert_eq!(doc.embed[0].vector, "kw");
    assert_eq!(&*doc.embed[0].embedder, bm25::Bm25::default().name());
    assert_eq!(doc.embed[0].text, "ticket TCK-1");
    assert!(m.is_sparse("kw") && !m.is_sparse(""));

    // Chunked: the dense vector's text is split, and every chunk's BM25 input is its piece.
    let cfg = parse(
        "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n\
         [[embedders]]\nname = \"e\"\npath = \"/models/e\"\n\
         [[tables]]\ntable = \"public.m\"\ncollection = \"c\"\n\
         vector = { embed = \"e\", text = \"{body}\", size = 2, distance = \"Cosine\" }\n\
         sparse_vectors = [{ name = \"kw\", kind = \"bm25\" }]\nchunk = { max_tokens = 2 }\n",
    )
    .unwrap();
    let splitter = chunk::Splitter::load(&cfg.tables[0].chunk.unwrap(), None).unwrap();
    let m = TableMapping::new(&cfg.tables[0], vec!["id".into()])
        .unwrap()
        .with_splitter(splitter);
    let ops = m
        .ops(&change(ChangeKind::Insert {
            new: row(&[
                t("5"),
                t("one two three four"),
                t("{1,2}"),
                t("f"),
                Datum::Null,
            ]),
        }))
        .unwrap();
    let chunks: Vec<&Document> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Upsert { doc, .. } => Some(doc),
            _ => None,
        })
        .collect();
    assert!(chunks.len() >= 2, "{ops:?}");
    for d in chunks {
        let [dense, kw] = &d.embed[..] else {
            panic!("{:?}", d.embed)
        };
        assert_eq!((dense.vector.as_str(), kw.vector.as_str()), ("", "kw"));
        assert_eq!(dense.text, kw.text);
        assert_eq!(Value::from(dense.text.as_str()), d.payload["chunk_text"]);
    }
}

#[test]
fn a_sparsevec_column_is_kept_sparse() {
    let mut m = mapping("sparse_vectors = [{ name = \"sp\", column = \"body\" }]");
    // `body` typed as pgvector's sparsevec (an extension type: its oid is the database's).
    let types = types::Types::from_catalog(&[types::TypeRow {
        oid: 90_001,
        name: "sparsevec".into(),
        typtype: 'b',
        base: 0,
        element: 0,
        category: 'U',
    }]);
    m = m.with_types(Arc::new(types));
    let sparse_row = |values: &[Datum]| {
        let mut r = row(values);
        let mut cols = r.columns.to_vec();
        cols[1].type_oid = 90_001;
        r.columns = cols.into();
        r
    };
    let ops = m
        .ops(&change(ChangeKind::Insert {
            new: sparse_row(&[t("5"), t("{3:0.5,1:2}/10"), t("{1,2}"), t("f"), Datum::Null]),
        }))
        .unwrap();
    let Op::Upsert { doc, .. } = &ops[0] else {
        panic!("{ops:?}")
    };
    let sp = Vector::Sparse(Sparse {
        indices: vec![0, 2],
        values: vec![2.0, 0.5],
    });
    assert_eq!(
        doc.vectors,
        Some(Vectors::Named(vec![
            (String::new(), Vector::Dense(vec![1.0, 2.0])),
            ("sp".to_owned(), sp)
        ]))
    );
    assert!(
        !doc.payload.contains_key("body"),
        "a vector column is not payload"
    );
    // NULL: no terms.
    let ops = m
        .ops(&change(ChangeKind::Insert {
            new: sparse_row(&[t("6"), Datum::Null, t("{1,2}"), t("f"), Datum::Null]),
        }))
        .unwrap();
    let Op::Upsert { doc, .. } = &ops[0] else {
        panic!("{ops:?}")
    };
    assert_eq!(
        doc.vectors.as_ref().unwrap().get("sp"),
        Some(Vector::Sparse(Sparse::default()))
    );
}

#[test]
fn content_chunks_keep_their_ids_across_an_edit_and_the_trim_keeps_them() {
    let cfg = parse(
        "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n\
         [[embedders]]\nname = \"e\"\npath = \"/models/e\"\n\
         [[tables]]\ntable = \"public.m\"\ncollection = \"c\"\n\
         vector = { embed = \"e\", text = \"{body}\", size = 2, distance = \"Cosine\" }\n\
         chunk = { max_tokens = 6, chunking = \"content\" }\n",
    )
    .unwrap();
    let splitter = chunk::Splitter::load(&cfg.tables[0].chunk.unwrap(), None).unwrap();
    let m = TableMapping::new(&cfg.tables[0], vec!["id".into()])
        .unwrap()
        .with_splitter(splitter);
    // (trim's from and keep, the upserts' ids and texts) of a row with this body.
    let of = |body: &str| {
        let ops = m
            .ops(&change(ChangeKind::Insert {
                new: row(&[t("5"), t(body), t("{1,2}"), t("f"), Datum::Null]),
            }))
            .unwrap();
        let Op::DeleteChunks { from, keep, .. } = &ops[0] else {
            panic!("the trim first: {ops:?}")
        };
        let docs: Vec<(PointKey, String)> = ops[1..]
            .iter()
            .map(|o| match o {
                Op::Upsert { doc, .. } => (doc.key.clone(), doc.embed[0].text.clone()),
                o => panic!("{o:?}"),
            })
            .collect();
        (*from, keep.clone(), docs)
    };
    let (from, keep, before) = of("Alpha one.\n\nBeta two.\n\nGamma three.\n\nAlpha one.");
    assert_eq!(from, 0, "every chunk point of the row but those kept");
    assert_eq!(
        keep,
        before.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
    );
    assert_eq!(before.len(), 4);
    assert_ne!(before[0].0, before[3].0, "equal texts, distinct ids");
    let (_, _, after) = of("Alpha one.\n\nBeta two. Inserted.\n\nGamma three.\n\nAlpha one.");
    let same: Vec<&(PointKey, String)> = after.iter().filter(|d| before.contains(d)).collect();
    assert_eq!(
        same.len(),
        3,
        "only the edited paragraph's chunk is new: {after:?}"
    );
}
