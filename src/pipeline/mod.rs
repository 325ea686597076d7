//! Transaction assembly, batching, and the in-order durable writer.
//!
//! `replicate` reads the slot and hands batches (`assemble`) to the `writer`, which keeps order
//! and acknowledgements; before a write, TOAST merges are read back (`toast`) and text is
//! embedded (`embedding`). `lag`, `heartbeat`, `sampler` and `status` watch and report.

pub mod assemble;
pub mod embedding;
pub mod heartbeat;
pub mod lag;
pub mod replicate;
pub mod sampler;
pub mod status;
pub mod toast;
pub mod writer;
