//! pg2qdrant: keep Qdrant collections exactly in step with PostgreSQL tables, from a logical
//! replication slot.
//!
//! ```text
//!  PostgreSQL ──pgoutput slot──▶ source::stream ─▶ source::pgoutput (pure decode)
//!                                      │
//!                       pipeline::assemble (transactions → positions → mapping → batches)
//!                                      │  bounded queue
//!                       pipeline::writer ─▶ sink::qdrant (fenced upsert/delete, wait=true)
//!                                      │
//!      slot feedback ◀── durable LSN ──┴──▶ checkpoint (file, fsynced, never backwards)
//! ```
//!
//! - `config`: TOML + env overrides, validated with field paths.
//! - `error`: definite vs transient, classified in one place.
//! - `event`: the domain model (changes, documents, ops) shared by every stage.
//! - `embed`: text → vectors (in-process models).
//! - `mapping`: rows → point ids, payloads and vectors.
//! - `metrics`: the metric catalogue and the `/metrics` listener.

pub mod app;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod deadletter;
pub mod embed;
pub mod error;
pub mod event;
pub mod health;
pub mod kafka;
pub mod lsn;
pub mod mapping;
pub mod metrics;
pub mod pipeline;
pub mod rebuild;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod verify;

pub use app::run;
pub use config::Config;
pub use error::Error;
