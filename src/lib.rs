//! pg2qdrant: keep Qdrant collections exactly in step with PostgreSQL tables, from a logical
//! replication slot.
//!
//! ```text
//!  PostgreSQL ──pgoutput slot──▶ source::stream ─▶ source::pgoutput (pure decode)
//!                                      │
//!                       pipeline::assemble (transactions → positions → mapping → batches)
//!                                      │  bounded queue
//!                       pipeline::writer (order, acks) ─▶ destination: to_qdrant ─▶ sink::qdrant
//!                                      │             (fenced upsert/delete, wait=true)
//!                                      │           └▶ destination: to_kafka ─▶ kafka::publish
//!      slot feedback ◀── durable LSN ──┴──▶ checkpoint (file, fsynced, never backwards)
//! ```
//!
//! # Invariants
//!
//! The rules the rest of the code may rely on, each with where it is held and what tests it:
//!
//! - **Mapping is pure.** `mapping` and the decoders (`source::pgoutput`, `kafka::decode`) do no
//!   I/O and keep no state between calls: the same input gives the same output, and bad input
//!   is an error naming the table and the field, never a panic (fuzzed: `fuzz/`).
//! - **Only the writer acks.** The slot's position (run) and the group's offsets (apply) move
//!   only through [`pipeline::writer::Progress::durable`], which the writer calls once per batch,
//!   in the order the batches came, after that batch and every one before it are durable in
//!   every destination (`pipeline/writer/tests.rs`, on an in-memory destination).
//! - **Progress never moves backwards.** The checkpoint file and the slot feedback take the
//!   highest durable position only (`checkpoint`).
//! - **No write regresses a point.** Every write that may meet a newer point is fenced by the
//!   position the point stores (`sink::qdrant::fence`); unfenced writes are only those above the
//!   newest position stored when the writer started (`sink::qdrant::operations::free`).
//! - **An outage is not bad input.** Whether an error is definite or transient is decided in one
//!   place ([`error::Error::disposition`]); transient errors are retried and park nothing.
//! - **A partition moves only when its writes are in.** An applier gives up partitions after the
//!   writes it took from them are durable and their offsets committed (`kafka::client::GroupLog`).
//!
//! # The module map
//!
//! **Rule: a module may use only the modules listed above it; nothing imports upwards.**
//! Within a layer, order matters too (a module may use those before it on its line).
//! `tests/layers.rs` reads this list and fails on an import that breaks it, and on any import
//! cycle between files.
//!
//! <!-- layers: the lines below are read by tests/layers.rs -->
//! ```text
//! base      lsn blocking event error config
//! model     mapping source
//! services  embed sink checkpoint metrics deadletter report kafka
//! set-up    setup
//! stages    snapshot pipeline
//! modes     verify rebuild check apply app
//! entry     cmd cli
//! ```
//!
//! - base: `lsn` (positions), `blocking` (file work off the async runtime), `event` (the domain model of changes, documents and ops),
//!   `error` (definite vs transient, classified in one place; retrying), `config` (TOML + env
//!   overrides, validated with field paths; the payload template syntax).
//! - model: `mapping` (rows → point ids, payloads and vectors; pure), `source` (the PostgreSQL
//!   side: catalog, stream, pgoutput decoding, chunk reads, control messages in the WAL).
//! - services: `embed` (text → vectors, the [`embed::Embedder`] trait), `sink` (the
//!   [`sink::Sink`] trait and Qdrant), `checkpoint` (durable progress and the copy state),
//!   `metrics` (the catalogue, readiness, the HTTP endpoint), `deadletter` (the parked-rows
//!   file), `report` (the last verify's result), `kafka` (change events, client, producer).
//! - set-up: `setup` (what every mode shares: compiling the tables, collections, the source's
//!   prerequisites, topics, rebuild requests, metrics serving, task supervision).
//! - stages: `snapshot` (the copy while streaming: coordinator, workers, the rebuild switch),
//!   `pipeline` (replication loop, assembly, embedding, the writer, sampler, lag).
//! - modes: `verify` (and dead-letter replay), `rebuild` (the request), `check`, `apply` (the
//!   Kafka consumer group), `app` (`run`: wiring only).
//! - entry: `cmd` (one file per command: its arguments, what it runs, what it prints),
//!   `cli` (the command line and the dispatch; `main.rs` only loads, runs and prints).

pub mod blocking;
pub mod config;
pub mod error;
pub mod event;
pub mod lsn;

pub mod mapping;
pub mod source;

pub mod checkpoint;
pub mod deadletter;
pub mod embed;
pub mod kafka;
pub mod metrics;
pub mod report;
pub mod sink;

pub mod setup;

pub mod pipeline;
pub mod snapshot;

pub mod app;
pub mod apply;
pub mod check;
pub mod rebuild;
pub mod verify;

pub mod cli;
pub mod cmd;

pub use app::run;
pub use config::Config;
pub use error::Error;
