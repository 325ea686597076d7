//! `cargo fuzz run pgoutput`: the decoder never panics, and whatever it accepts re-encodes to the
//! same bytes. The same bytes as a pg2qdrant control message (the content of a logical message
//! in the stream): decoding never panics, and what it accepts round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg2qdrant::source::control::Control;
use pg2qdrant::source::pgoutput::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode(&bytes::Bytes::copy_from_slice(data)) {
        assert_eq!(decode(&encode(&msg).into()).as_ref(), Ok(&msg));
    }
    if let Ok(c) = Control::decode(data) {
        assert_eq!(Control::decode(c.encode().as_bytes()).as_ref(), Ok(&c));
    }
});
