//! `cargo fuzz run values`: text and binary value decoding, vector parsing and binary COPY
//! parsing never panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg2qdrant::event::Column;
use pg2qdrant::mapping::{binary, sparsevec};
use pg2qdrant::mapping::types::{Kind, Scalar};
use pg2qdrant::mapping::value::{self, Options};
use pg2qdrant::source::copy_binary;
use std::sync::Arc;

const SCALARS: [Scalar; 22] = [
    Scalar::Bool,
    Scalar::Int2,
    Scalar::Int4,
    Scalar::Int8,
    Scalar::Oid,
    Scalar::Float4,
    Scalar::Float8,
    Scalar::Numeric,
    Scalar::Text,
    Scalar::Uuid,
    Scalar::Bytea,
    Scalar::Json,
    Scalar::Jsonb,
    Scalar::Date,
    Scalar::Time,
    Scalar::TimeTz,
    Scalar::Timestamp,
    Scalar::TimestampTz,
    Scalar::Interval,
    Scalar::Vector,
    Scalar::HalfVec,
    Scalar::SparseVec,
];

fuzz_target!(|data: &[u8]| {
    let o = Options::default();
    for s in SCALARS {
        for kind in [Kind::Scalar(s), Kind::Array(s)] {
            let _ = binary::to_json(kind, data, o);
            let _ = binary::vector(kind, data, 3);
            let _ = binary::unix_seconds(kind, data);
            if let Ok(text) = std::str::from_utf8(data) {
                let _ = value::to_json_with(kind, text, o);
                let _ = value::unix_seconds(kind, text);
            }
        }
        let _ = binary::text_form(s, data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = value::parse_vector(text, 3);
        let _ = sparsevec::parse(text);
    }
    let columns: Arc<[Column]> = (0..2)
        .map(|i| Column {
            name: format!("c{i}"),
            type_oid: 23,
            type_modifier: -1,
            is_key: false,
        })
        .collect::<Vec<_>>()
        .into();
    let _ = copy_binary::parse(&bytes::Bytes::copy_from_slice(data), &columns);
});
