//! Transaction assembly, batching, and the in-order durable writer.

pub mod assemble;
pub mod replicate;
pub mod writer;
