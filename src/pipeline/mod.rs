//! Transaction assembly, batching, and the in-order durable writer.

pub mod assemble;
pub mod embedding;
pub mod replicate;
pub mod writer;
