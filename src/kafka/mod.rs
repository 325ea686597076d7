//! Kafka fan-out: change events (`proto/pg2qdrant/v1/change_event.proto`).
//!
//! So far: the schema and the encoding of a change into its event ([`event`]). The producer
//! (publish mode), the consumer group (apply mode) and `[kafka]` config are still to come.

pub mod event;

/// The generated types of `pg2qdrant.v1`.
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/pg2qdrant.v1.rs"));
}
