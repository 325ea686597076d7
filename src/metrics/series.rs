//! The series a mode exports from its start, at zero: counters for every table, collection,
//! op, embedder and topic of the config. Prometheus's advice ("avoid missing metrics"): a
//! series that appears only at its first event makes `rate()` blind to that first event, and a
//! dashboard panel or an alert on it shows "no data" instead of 0, which looks like a broken
//! connector (or hides a renamed metric). Labels stay bounded: they come from the config.

use super::names::*;
use crate::config::{Config, Mode};
use metrics::{counter, gauge};

const RECEIVED_OPS: [&str; 4] = ["insert", "update", "delete", "truncate"];
const APPLIED_OPS: [&str; 4] = ["upsert", "merge", "delete", "truncate"];

pub fn register(cfg: &Config, mode: Mode) {
    let mut collections: Vec<&str> = cfg.tables.iter().map(|t| t.collection.as_str()).collect();
    collections.sort_unstable();
    collections.dedup();
    let writes_qdrant = mode.writes_qdrant(cfg);
    if writes_qdrant {
        for c in &collections {
            for op in APPLIED_OPS {
                counter!(CHANGES_APPLIED, "collection" => c.to_string(), "op" => op).increment(0);
            }
            counter!(CHANGES_SKIPPED, "collection" => c.to_string()).increment(0);
        }
        counter!(WRITE_RETRIES, "sink" => "qdrant").increment(0);
        for e in &cfg.embedders {
            counter!(EMBEDDINGS, "embedder" => e.name.clone()).increment(0);
            counter!(EMBED_RETRIES, "embedder" => e.name.clone()).increment(0);
            counter!(EMBED_UNCHANGED, "embedder" => e.name.clone()).increment(0);
            counter!(EMBED_TRUNCATED, "embedder" => e.name.clone()).increment(0);
            counter!(EMBED_FAILED, "embedder" => e.name.clone()).increment(0);
            gauge!(EMBED_WAITING, "embedder" => e.name.clone()).increment(0.0);
        }
    }
    let tables: Vec<String> = cfg
        .tables
        .iter()
        .map(|t| crate::event::TableName::parse(&t.table).to_string())
        .collect();
    if mode == Mode::Run {
        for t in &tables {
            for op in RECEIVED_OPS {
                counter!(CHANGES_RECEIVED, "table" => t.clone(), "op" => op).increment(0);
            }
            counter!(DEAD_LETTERED, "table" => t.clone()).increment(0);
            counter!(SNAPSHOT_ROWS, "table" => t.clone()).increment(0);
            counter!(SNAPSHOT_ERRORS, "table" => t.clone()).increment(0);
            counter!(CHANGES_STOPPED, "table" => t.clone()).increment(0);
            gauge!(TABLE_STOPPED, "table" => t.clone()).set(0.0);
        }
        counter!(TRANSACTIONS).increment(0);
        counter!(HEARTBEATS).increment(0);
        counter!(REPLICATION_CONNECTS).increment(0);
        counter!(TOAST_FETCHES).increment(0);
    }
    if let Some(kafka) = &cfg.kafka {
        let mut topics: Vec<String> = cfg
            .tables
            .iter()
            .map(|t| {
                let name = crate::event::TableName::parse(&t.table);
                kafka.topic(&name.schema, &name.name)
            })
            .collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            if mode == Mode::Run {
                counter!(KAFKA_PRODUCED, "topic" => topic.clone()).increment(0);
                counter!(KAFKA_DELIVERED, "topic" => topic.clone()).increment(0);
                counter!(KAFKA_FAILED, "topic" => topic.clone()).increment(0);
            } else {
                counter!(KAFKA_APPLIED, "topic" => topic.clone()).increment(0);
                counter!(KAFKA_DLQ, "topic" => topic.clone()).increment(0);
            }
        }
        if mode == Mode::Run {
            counter!(WRITE_RETRIES, "sink" => "kafka").increment(0);
        }
    }
}
