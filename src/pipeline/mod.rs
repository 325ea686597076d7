//! Transaction assembly, batching, and the in-order durable writer.

pub mod assemble;
pub mod embedding;
pub mod heartbeat;
pub mod lag;
pub mod replicate;
pub mod sampler;
pub mod status;
pub mod writer;
