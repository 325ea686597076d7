//! Transaction assembly, batching, and the in-order durable writer.
//!
//! `replicate` reads the slot and hands batches (`assemble`) to the `writer`, which keeps order
//! and acknowledgements, nothing else. A batch becomes durable in a `destination`: `to_qdrant`
//! (TOAST merges read back by `toast`, text embedded by `embedding`, the fenced write) and
//! `to_kafka` (change events), side by side in a `fanout`, both retrying outages the same way
//! (`retrying`). `lag`, `heartbeat`, `sampler` and `status` watch and report.

pub mod assemble;
pub mod destination;
pub mod embedding;
pub mod fanout;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod heartbeat;
pub mod lag;
pub mod replicate;
pub mod retrying;
pub mod sampler;
pub mod status;
pub mod to_kafka;
pub mod to_qdrant;
pub mod toast;
pub mod writer;
