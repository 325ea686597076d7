//! Every type pg2qdrant decodes, through both paths, against a real server: random values are
//! stored by PostgreSQL, read back in its text output and in its binary form, and each must map
//! to the same payload value, the same vector, the same unix seconds, and (for types whose text
//! feeds point ids) exactly PostgreSQL's text.

use crate::harness::TestDb;
use pg2qdrant::mapping::types::{Kind, Scalar, TypeRow, Types, CATALOG_SQL};
use pg2qdrant::mapping::value::{self, Options};
use pg2qdrant::mapping::{binary, sparsevec};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::SimpleQueryMessage;

/// Values per type.
const CASES: usize = 150;

/// A column value in its binary form, whatever the type.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        "\\PC{0,12}",
        Just(String::new()),
        Just("NULL".to_owned()),
        Just("a \"q\" \\ {b,c}".to_owned()),
        Just(" padded ".to_owned()),
    ]
    .boxed()
}

fn float_lit(f: f64) -> String {
    if f.is_nan() {
        "'NaN'".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "'Infinity'" } else { "'-Infinity'" }.to_owned()
    } else {
        format!("'{f:e}'")
    }
}

/// A finite f32 (any exponent) as a decimal literal.
fn finite_f32() -> BoxedStrategy<String> {
    any::<u32>()
        .prop_map(f32::from_bits)
        .prop_filter("finite", |f| f.is_finite())
        .prop_map(|f| format!("{f:e}"))
        .boxed()
}

fn json() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-1e6f64..1e6).prop_map(|f| format!("{f}")),
        "[a-z \"\\\\]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("true".to_owned()),
        Just("null".to_owned()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..4).prop_map(|v| {
                let items: Vec<String> = v
                    .into_iter()
                    .map(|(k, x)| format!("\"{k}\" : {x}"))
                    .collect();
                format!("{{{}}}", items.join(","))
            }),
        ]
    })
    .boxed()
}

/// SQL expressions of a type's values (`ty` is the column type).
fn scalar(ty: &str) -> BoxedStrategy<String> {
    let day = || -2_400_000i64..2_900_000;
    let micros = || 0i64..86_400_000_000;
    match ty {
        "bool" => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        "int2" => any::<i16>().prop_map(|i| format!("{i}::int2")).boxed(),
        "int4" => any::<i32>().prop_map(|i| i.to_string()).boxed(),
        "int8" => any::<i64>().prop_map(|i| format!("{i}::int8")).boxed(),
        "oid" => any::<u32>().prop_map(|i| format!("{i}::oid")).boxed(),
        "float4" => any::<u32>()
            .prop_map(|b| format!("{}::float4", float_lit(f64::from(f32::from_bits(b)))))
            .boxed(),
        "float8" => any::<u64>()
            .prop_map(|b| format!("{}::float8", float_lit(f64::from_bits(b))))
            .boxed(),
        "numeric" => prop_oneof![
            (any::<bool>(), "[0-9]{1,28}", prop::option::of("[0-9]{1,24}")).prop_map(
                |(neg, int, frac)| {
                    let sign = if neg { "-" } else { "" };
                    match frac {
                        Some(f) => format!("'{sign}{int}.{f}'::numeric"),
                        None => format!("'{sign}{int}'::numeric"),
                    }
                }
            ),
            (-40i32..40, 1u32..999_999).prop_map(|(e, m)| format!("'{m}e{e}'::numeric")),
            Just("'NaN'::numeric".to_owned()),
            Just("'Infinity'::numeric".to_owned()),
            Just("'-Infinity'::numeric".to_owned()),
            Just("0.000::numeric".to_owned()),
        ]
        .boxed(),
        "text" | "varchar(20)" | "bpchar(8)" | "name" | "citext" => {
            text().prop_map(|s| quote(&s)).boxed()
        }
        "uuid" => any::<u128>()
            .prop_map(|u| format!("'{}'::uuid", uuid::Uuid::from_u128(u)))
            .boxed(),
        "bytea" => prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!("'\\x{hex}'::bytea")
            })
            .boxed(),
        "json" | "jsonb" => json().prop_map(|j| quote(&j)).boxed(),
        "date" => prop_oneof![
            day().prop_map(|d| format!("'2000-01-01'::date + {d}")),
            Just("'infinity'::date".to_owned()),
        ]
        .boxed(),
        "time" => prop_oneof![
            micros().prop_map(|u| format!("'00:00'::time + {u} * interval '1 microsecond'")),
            Just("'24:00:00'::time".to_owned()),
        ]
        .boxed(),
        "timetz" => (micros(), any::<bool>(), 0u32..16, 0u32..60, prop_oneof![Just(0u32), 0u32..60])
            .prop_map(|(u, neg, h, m, s)| {
                let sign = if neg { '-' } else { '+' };
                format!(
                    "(('00:00'::time + {u} * interval '1 microsecond')::text || '{sign}{h:02}:{m:02}:{s:02}')::timetz"
                )
            })
            .boxed(),
        "timestamp" | "timestamptz" => {
            let ty: &'static str = if ty == "timestamptz" {
                "timestamptz"
            } else {
                "timestamp"
            };
            prop_oneof![
                (day(), micros()).prop_map(move |(d, u)| format!(
                    "'2000-01-01 00:00:00+00'::timestamptz::{ty} + {d} * interval '1 day' + {u} * interval '1 microsecond'"
                )),
                Just(format!("'infinity'::{ty}")),
                Just(format!("'-infinity'::{ty}")),
            ]
            .boxed()
        }
        "interval" => (-200_000i64..200_000, -200_000i64..200_000, -1_000_000_000_000_000i64..1_000_000_000_000_000)
            .prop_map(|(m, d, u)| {
                format!("{m} * interval '1 month' + {d} * interval '1 day' + {u}::float8 * interval '1 microsecond'")
            })
            .boxed(),
        "mood" => prop_oneof![
            Just("'sad'"),
            Just("'very \"happy\"'"),
            Just("'a,b'"),
            Just("'NULL'"),
        ]
        .prop_map(|s| format!("{s}::mood"))
        .boxed(),
        "posint" => (1i32..i32::MAX).prop_map(|i| format!("{i}::posint")).boxed(),
        "money2" => (-1_000_000_000i64..1_000_000_000)
            .prop_map(|c| format!("({c}::numeric / 100)::money2"))
            .boxed(),
        // pgvector: finite elements (it refuses NaN and infinities); halfvec's range is ±65504.
        "vector(3)" => prop::collection::vec(finite_f32(), 3)
            .prop_map(|v| format!("'[{}]'::vector(3)", v.join(",")))
            .boxed(),
        "halfvec(3)" => prop::collection::vec(
            prop_oneof![
                6 => (-70_000f32..70_000f32).prop_map(|f| format!("{f:e}")),
                1 => (-1e-4f32..1e-4).prop_map(|f| format!("{f:e}")),
                1 => finite_f32(),
            ],
            3,
        )
        .prop_map(|v| format!("'[{}]'::halfvec(3)", v.join(",")))
        .boxed(),
        "sparsevec(8)" => prop::collection::btree_map(1u32..=8, finite_f32(), 0..6)
            .prop_map(|terms| {
                let terms: Vec<String> = terms.into_iter().map(|(i, f)| format!("{i}:{f}")).collect();
                format!("'{{{}}}/8'::sparsevec(8)", terms.join(","))
            })
            .boxed(),
        other => panic!("no strategy for {other}"),
    }
}

/// Arrays of `elem` values, with NULLs, empty arrays and (refused alike) two dimensions.
fn array(elem: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        8 => prop::collection::vec(prop::option::weighted(0.85, scalar(elem)), 1..6).prop_map(move |items| {
            let items: Vec<String> = items
                .into_iter()
                .map(|i| i.unwrap_or_else(|| "NULL".to_owned()))
                .collect();
            format!("ARRAY[{}]::{elem}[]", items.join(", "))
        }),
        1 => Just(format!("'{{}}'::{elem}[]")),
        1 => (scalar(elem), scalar(elem)).prop_map(move |(a, b)| format!("ARRAY[[{a}], [{b}]]::{elem}[]")),
    ]
    .boxed()
}

const SCALARS: &[&str] = &[
    "bool",
    "int2",
    "int4",
    "int8",
    "oid",
    "float4",
    "float8",
    "numeric",
    "text",
    "varchar(20)",
    "bpchar(8)",
    "name",
    "citext",
    "uuid",
    "bytea",
    "json",
    "jsonb",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "mood",
    "posint",
    "money2",
    "vector(3)",
    "halfvec(3)",
    "sparsevec(8)",
];

const ARRAYS: &[&str] = &[
    "bool",
    "int2",
    "int4",
    "int8",
    "float4",
    "float8",
    "numeric",
    "text",
    "uuid",
    "bytea",
    "jsonb",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "mood",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_maps_the_same_from_text_and_from_binary() {
    let db = TestDb::new(
        "t_types_both_paths",
        "CREATE EXTENSION citext; CREATE EXTENSION vector;
         CREATE TYPE mood AS ENUM ('sad', 'very \"happy\"', 'a,b', 'NULL');
         CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
         CREATE DOMAIN money2 AS numeric(14, 2);",
    )
    .await;
    // The session forms pgoutput and the copy use; a time zone with a half-hour offset.
    db.client
        .batch_execute(
            "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; \
             SET bytea_output = 'hex'; SET TimeZone = 'Asia/Kolkata'",
        )
        .await
        .unwrap();
    let rows: Vec<TypeRow> = db
        .client
        .query(CATALOG_SQL, &[])
        .await
        .unwrap()
        .iter()
        .map(pg2qdrant::source::catalog::type_row)
        .collect();
    let types = Types::from_catalog(&rows);
    let mut runner = TestRunner::deterministic();
    let mut cases: Vec<(String, BoxedStrategy<String>)> =
        SCALARS.iter().map(|t| (t.to_string(), scalar(t))).collect();
    cases.extend(ARRAYS.iter().map(|t| (format!("{t}[]"), array(t))));
    let mut compared = 0;
    for (n, (ty, strategy)) in cases.iter().enumerate() {
        let table = format!("v{n}");
        db.client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int PRIMARY KEY, v {ty})"
            ))
            .await
            .unwrap();
        let mut stored = 0;
        for i in 0..CASES {
            let expr = strategy.new_tree(&mut runner).unwrap().current();
            // Values outside the type's range are refused by the server: skipped.
            if db
                .client
                .batch_execute(&format!("INSERT INTO {table} VALUES ({i}, {expr})"))
                .await
                .is_ok()
            {
                stored += 1;
            }
        }
        assert!(
            stored >= CASES / 2,
            "{ty}: only {stored} of {CASES} values were accepted"
        );
        let type_oid: u32 = db
            .client
            .query_one(&format!("SELECT '{ty}'::regtype::oid"), &[])
            .await
            .unwrap()
            .get(0);
        let kind = types.kind(type_oid);
        assert_ne!(kind, Kind::Other, "{ty} has a decoder");
        let text: Vec<Option<String>> = db
            .client
            .simple_query(&format!("SELECT v FROM {table} ORDER BY id"))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
                _ => None,
            })
            .collect();
        let bin: Vec<Option<Raw>> = db
            .client
            .query(&format!("SELECT v FROM {table} ORDER BY id"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(text.len(), bin.len());
        for (t, b) in text.iter().zip(&bin) {
            let (Some(t), Some(Raw(b))) = (t, b) else {
                assert!(t.is_none() && b.is_none(), "{ty}: NULL in one form only");
                continue;
            };
            compare(kind, ty, t, b);
            same_event_value(&types, type_oid, ty, t, b);
            compared += 1;
        }
    }
    assert!(compared > 4000, "compared {compared} values");
}

fn compare(kind: Kind, ty: &str, t: &str, b: &[u8]) {
    for options in [
        Options::default(),
        Options {
            numeric_string: true,
        },
    ] {
        let from_text = value::to_json_with(kind, t, options);
        let from_binary = binary::to_json(kind, b, options);
        match (&from_text, &from_binary) {
            (Ok(x), Ok(y)) => assert_eq!(x, y, "{ty} {t:?}: payload values differ"),
            (Err(_), Err(_)) => {}
            _ => panic!("{ty} {t:?}: text gives {from_text:?}, binary {from_binary:?}"),
        }
    }
    if let Kind::Scalar(s) = kind {
        if s.key_safe() || matches!(s, Scalar::TimeTz) {
            assert_eq!(
                binary::text_form(s, b).as_deref(),
                Ok(t),
                "{ty}: binary printed differently from PostgreSQL"
            );
        }
        if matches!(s, Scalar::Date | Scalar::Timestamp | Scalar::TimestampTz) {
            let x = value::unix_seconds(kind, t);
            let y = binary::unix_seconds(kind, b);
            // Text beyond chrono's years is an error where binary still counts seconds.
            if let Ok(x) = x {
                assert_eq!(Ok(x), y, "{ty} {t:?}: unix seconds differ");
            }
        }
    }
    // pgvector's types as vectors: dense from either form alike, sparse kept sparse alike.
    match kind {
        Kind::Scalar(Scalar::Vector | Scalar::HalfVec) => {
            assert_eq!(
                value::parse_vector(t, 3),
                binary::vector(kind, b, 3),
                "{ty} {t:?}: vectors differ"
            );
        }
        Kind::Scalar(Scalar::SparseVec) => {
            let x = sparsevec::parse(t);
            assert!(x.is_ok(), "{ty} {t:?}: {x:?}");
            assert_eq!(x, binary::sparse(b), "{ty} {t:?}: sparse vectors differ");
            let dense = |r: Result<Vec<f32>, String>| r.unwrap();
            let (dim, i, v) = x.unwrap();
            assert_eq!(
                dense(sparsevec::densify(dim, &i, &v, 8)),
                dense(binary::vector(kind, b, 8)),
                "{ty} {t:?}: densified vectors differ"
            );
        }
        _ => {}
    }
    if let Kind::Array(
        Scalar::Float4
        | Scalar::Float8
        | Scalar::Int2
        | Scalar::Int4
        | Scalar::Int8
        | Scalar::Numeric,
    ) = kind
    {
        let len = binary::array(b).map(|a| a.len()).unwrap_or(0);
        let x = value::parse_vector(t, len);
        let y = binary::vector(kind, b, len);
        match (&x, &y) {
            (Ok(x), Ok(y)) => assert_eq!(x, y, "{ty} {t:?}: vectors differ"),
            (Err(_), Err(_)) => {}
            _ => panic!("{ty} {t:?}: vector from text {x:?}, from binary {y:?}"),
        }
    }
}

/// A value's change-event form (Kafka) is the same from text and from binary.
fn same_event_value(types: &Types, type_oid: u32, ty: &str, t: &str, b: &[u8]) {
    let cfg = pg2qdrant::config::parse(
        "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n\
         [[tables]]\ntable = \"t\"\ncollection = \"c\"\nvector = { column = \"x\", size = 1, distance = \"Dot\" }\n",
    )
    .unwrap();
    let mapping = pg2qdrant::mapping::TableMapping::new(&cfg.tables[0], vec!["id".into()])
        .unwrap()
        .with_types(std::sync::Arc::new(types.clone()));
    let col = pg2qdrant::event::Column {
        name: "v".into(),
        type_oid,
        type_modifier: -1,
        is_key: false,
    };
    use pg2qdrant::event::Datum;
    let from_text = pg2qdrant::kafka::event::value(&mapping, &col, &Datum::Text(t.into()));
    let from_binary =
        pg2qdrant::kafka::event::value(&mapping, &col, &Datum::Binary(b.to_vec().into()));
    // Compared encoded: NaN equals itself there.
    use prost::Message as _;
    assert_eq!(
        from_text.encode_to_vec(),
        from_binary.encode_to_vec(),
        "{ty} {t:?}: event values differ: {from_text:?} / {from_binary:?}"
    );
    // An applier reading the event maps it to the same point as the change it came from.
    let columns: std::sync::Arc<[pg2qdrant::event::Column]> = vec![
        pg2qdrant::event::Column {
            name: "id".into(),
            type_oid: 20,
            type_modifier: -1,
            is_key: true,
        },
        col,
        pg2qdrant::event::Column {
            name: "x".into(),
            type_oid: 1021,
            type_modifier: -1,
            is_key: false,
        },
    ]
    .into();
    for datum in [Datum::Text(t.into()), Datum::Binary(b.to_vec().into())] {
        let change = pg2qdrant::event::Change {
            table: pg2qdrant::event::TableName::parse("t"),
            position: pg2qdrant::lsn::Position {
                commit_lsn: 7,
                seq: 3,
            },
            commit_time_micros: 1_000_000,
            kind: pg2qdrant::event::ChangeKind::Insert {
                new: pg2qdrant::event::Row {
                    columns: columns.clone(),
                    values: vec![Datum::Text("1".into()), datum, Datum::Text("{1}".into())],
                },
            },
        };
        let event = pg2qdrant::kafka::event::encode(&mapping, &change, false);
        let event =
            pg2qdrant::kafka::proto::ChangeEvent::decode(event.encode_to_vec().as_slice()).unwrap();
        let back = pg2qdrant::kafka::decode::change(&mapping, &event)
            .unwrap_or_else(|e| panic!("{ty} {t:?}: the event does not decode: {e}"));
        match (mapping.ops(&change), mapping.ops(&back)) {
            (Ok(a), Ok(z)) => assert_eq!(
                format!("{a:?}"),
                format!("{z:?}"),
                "{ty} {t:?}: the decoded event maps differently"
            ),
            // The same refusal (the dead-letter row shows the value as it arrived).
            (Err(a), Err(z)) => assert_eq!(a.reason, z.reason, "{ty} {t:?}"),
            (a, z) => panic!("{ty} {t:?}: the change maps to {a:?}, its decoded event to {z:?}"),
        }
    }
}
