//! The PostgreSQL side: catalog and setup, the replication stream, the pgoutput decoder.

pub mod catalog;
pub mod chunk;
pub mod condition;
pub mod control;
pub mod copy_binary;
pub mod filter;
pub mod format;
pub mod pgoutput;
pub mod publication;
pub mod relations;
pub mod stream;
pub mod tls;
