//! `cargo fuzz run pgoutput`: the decoder never panics, and whatever it accepts re-encodes to the
//! same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg2qdrant::source::pgoutput::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode(data) {
        assert_eq!(decode(&encode(&msg)).as_ref(), Ok(&msg));
    }
});
