//! Integration tests against real PostgreSQL 15 and Qdrant (see `scripts/test.sh`).
//! One scenario per test, named for what it proves.

mod harness;

mod chat;
mod chunking;
mod embed;
mod embedding;
mod filter;
mod format;
mod hybrid;
mod kafka;
mod kafka_cluster;
mod layers;
mod operate;
mod pgvector;
mod qdrant_cluster;
mod rebuild;
mod recovery;
mod schema;
mod sharding;
mod snapshot;
mod status;
mod streaming;
mod tenants;
mod tls;
mod types;
mod verify;
mod wait;
