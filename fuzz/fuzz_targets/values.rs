//! `cargo fuzz run values`: text-value and vector parsing never panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg2qdrant::mapping::value::{oid, parse_vector, to_json, unix_seconds};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for t in [oid::INT4_ARRAY, oid::TEXT_ARRAY, oid::NUMERIC, oid::TIMESTAMPTZ, oid::BYTEA, oid::JSONB, oid::FLOAT8] {
            let _ = to_json(t, s);
        }
        let _ = unix_seconds(oid::TIMESTAMP, s);
        let _ = parse_vector(s, 3);
    }
});
