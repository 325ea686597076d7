//! The metrics catalogue: every name the binary exports, described once at start-up.
//! Labels are table / collection / op, never a key (cardinality).

pub mod client;
pub mod health;
pub mod series;
pub mod server;
pub mod status;
pub mod wait;

pub mod names {
    /// Changes decoded from the slot, by `table` and `op` (insert, update, delete, truncate).
    pub const CHANGES_RECEIVED: &str = "pg2qdrant_changes_received_total";
    /// Sink operations made durable, by `collection` and `op` (upsert, merge, delete, truncate);
    /// upserts the fence skipped are not counted here but in [`CHANGES_SKIPPED`].
    pub const CHANGES_APPLIED: &str = "pg2qdrant_changes_applied_total";
    /// Upserts left out because the point already held that change or a later one (a replay
    /// after a restart, a copied row older than the stream's), by `collection`.
    pub const CHANGES_SKIPPED: &str = "pg2qdrant_changes_skipped_total";
    /// 1 while a schema change stops the `table` (a column its mapping needs is gone or
    /// retyped, see `mapping::schema`); 0 otherwise.
    pub const TABLE_STOPPED: &str = "pg2qdrant_table_stopped";
    /// Changes of a stopped table, skipped (not written, not parked), by `table`.
    pub const CHANGES_STOPPED: &str = "pg2qdrant_changes_stopped_total";
    /// Transactions read from the slot (commits; the heartbeat's included).
    pub const TRANSACTIONS: &str = "pg2qdrant_transactions_total";
    /// Age of the oldest transaction read and not yet durable in every sink; 0 when caught up.
    pub const LAG_SECONDS: &str = "pg2qdrant_lag_seconds";
    /// Per transaction: seconds from its commit in PostgreSQL to durable in every sink.
    pub const COMMIT_TO_DURABLE: &str = "pg2qdrant_commit_to_durable_seconds";
    /// The slot's `wal_status` (reserved, extended, unreserved, lost): 1 for the current one.
    pub const SLOT_WAL_STATUS: &str = "pg2qdrant_slot_wal_status";
    /// The slot's `safe_wal_size`: WAL bytes that can still be written before the slot is lost
    /// (-1: no limit, `max_slot_wal_keep_size = -1`).
    pub const SLOT_SAFE_WAL_SIZE: &str = "pg2qdrant_slot_safe_wal_size_bytes";
    /// WAL the slot holds on the server's disk (`pg_current_wal_lsn() - restart_lsn`).
    pub const SLOT_RETAINED_WAL: &str = "pg2qdrant_slot_retained_wal_bytes";
    /// Heartbeat messages written into the WAL.
    pub const HEARTBEATS: &str = "pg2qdrant_heartbeats_total";
    /// 1 when the `component` (stream, postgres, slot, qdrant, kafka) is reachable and working.
    pub const UP: &str = "pg2qdrant_up";
    /// 1 when `/readyz` answers ready.
    pub const READY: &str = "pg2qdrant_ready";
    /// Always 1, labelled with the `version` and `mode` (run, apply).
    pub const BUILD_INFO: &str = "pg2qdrant_build_info";
    /// Rows written to the dead-letter file, by `table`.
    pub const DEAD_LETTERED: &str = "pg2qdrant_dead_lettered_total";
    /// Ops per write batch.
    pub const BATCH_SIZE: &str = "pg2qdrant_batch_size";
    /// Seconds one batch took to become durable in Qdrant (retries included).
    pub const WRITE_LATENCY: &str = "pg2qdrant_write_latency_seconds";
    /// Failed write attempts that will be retried, by `sink`.
    pub const WRITE_RETRIES: &str = "pg2qdrant_write_retries_total";
    /// The last LSN acknowledged to the slot (as a number).
    pub const LAST_ACKED_LSN: &str = "pg2qdrant_last_acked_lsn";
    /// Bytes of WAL between the server's current position and our last acknowledgement.
    pub const REPLICATION_LAG_BYTES: &str = "pg2qdrant_replication_lag_bytes";
    /// Replication (re)connections.
    pub const REPLICATION_CONNECTS: &str = "pg2qdrant_replication_connects_total";
    /// TOAST merges that found no point and read the current row from PostgreSQL.
    pub const TOAST_FETCHES: &str = "pg2qdrant_toast_row_fetches_total";
    /// Rows copied by the snapshot (handed to the writer), by `table`.
    pub const SNAPSHOT_ROWS: &str = "pg2qdrant_snapshot_rows_total";
    /// Rows the table holds by PostgreSQL's estimate (`reltuples`), by `table`.
    pub const SNAPSHOT_ROWS_ESTIMATED: &str = "pg2qdrant_snapshot_rows_estimated";
    /// Chunks of the current copy that are durable, by `table`.
    pub const SNAPSHOT_CHUNKS_DONE: &str = "pg2qdrant_snapshot_chunks_done";
    /// Copy state by `table`: 0 not copied, 1 copying, 2 done.
    pub const SNAPSHOT_STATE: &str = "pg2qdrant_snapshot_state";
    /// Copy tasks that failed and are retried, by `table`.
    pub const SNAPSHOT_ERRORS: &str = "pg2qdrant_snapshot_errors_total";
    /// Last `verify` result by `table`: rows checked, and drift by kind.
    pub const VERIFY_ROWS: &str = "pg2qdrant_verify_rows";
    pub const VERIFY_MISSING: &str = "pg2qdrant_verify_missing";
    pub const VERIFY_ORPHANED: &str = "pg2qdrant_verify_orphaned";
    pub const VERIFY_STALE: &str = "pg2qdrant_verify_stale";
    /// Unix time of the last `verify`, by `table`.
    pub const VERIFY_TIMESTAMP: &str = "pg2qdrant_verify_timestamp_seconds";
    /// Texts embedded, by `embedder`.
    pub const EMBEDDINGS: &str = "pg2qdrant_embeddings_total";
    /// Inputs whose point already held their embedding (same model, same text): not embedded
    /// again, by `embedder`.
    pub const EMBED_UNCHANGED: &str = "pg2qdrant_embed_unchanged_total";
    /// Inputs cut at the model's maximum length, by `embedder`.
    pub const EMBED_TRUNCATED: &str = "pg2qdrant_embed_truncated_total";
    /// Embedder calls that failed transiently and are retried, by `embedder`.
    pub const EMBED_RETRIES: &str = "pg2qdrant_embed_retries_total";
    /// Inputs the embedder refused (dead-lettered), by `embedder`.
    pub const EMBED_FAILED: &str = "pg2qdrant_embed_failed_total";
    /// Seconds per embedder call, by `embedder`.
    pub const EMBED_LATENCY: &str = "pg2qdrant_embed_latency_seconds";
    /// Inputs per embedder call, by `embedder`.
    pub const EMBED_BATCH: &str = "pg2qdrant_embed_batch_size";
    /// Points (rows, or chunks of rows) handed to the writer whose vectors are still to be
    /// computed from text, by `embedder`: the freshness of the embedded collection.
    pub const EMBED_WAITING: &str = "pg2qdrant_embed_waiting";
    /// Change events handed to the producer, by `topic` (a TRUNCATE counts once per partition).
    pub const KAFKA_PRODUCED: &str = "pg2qdrant_kafka_produced_total";
    /// Change events Kafka confirmed, by `topic`.
    pub const KAFKA_DELIVERED: &str = "pg2qdrant_kafka_delivered_total";
    /// Change events whose delivery failed (retried, or dead-lettered when refused), by `topic`.
    pub const KAFKA_FAILED: &str = "pg2qdrant_kafka_failed_total";
    /// Seconds from producing a batch's events to the last delivery report.
    pub const KAFKA_DELIVERY_LATENCY: &str = "pg2qdrant_kafka_delivery_latency_seconds";
    /// `apply`: messages behind the partition's end, by `topic` and `partition`.
    pub const KAFKA_CONSUMER_LAG: &str = "pg2qdrant_kafka_consumer_lag";
    /// `apply`: age (from its commit in PostgreSQL) of the oldest change event taken and not
    /// yet durable in Qdrant; 0 when caught up.
    pub const KAFKA_APPLY_LAG_SECONDS: &str = "pg2qdrant_kafka_apply_lag_seconds";
    /// `apply`: change events applied (their ops durable in Qdrant), by `topic`.
    pub const KAFKA_APPLIED: &str = "pg2qdrant_kafka_applied_total";
    /// `apply`: messages sent to the dead-letter topic, by source `topic`.
    pub const KAFKA_DLQ: &str = "pg2qdrant_kafka_dead_lettered_total";
    /// `GET /wait` requests waiting now (read-your-writes).
    pub const WAITERS: &str = "pg2qdrant_waiters";
}

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Describes every metric (type, unit, help) to the exporter, by stage.
pub fn describe() {
    describe_stream();
    describe_slot();
    describe_sink();
    describe_copy_and_verify();
    describe_embedding();
    describe_kafka();
}

/// What the stream received and how far behind it is.
fn describe_stream() {
    use names::*;
    describe_counter!(
        CHANGES_RECEIVED,
        "Changes decoded from the replication slot"
    );
    describe_counter!(
        CHANGES_APPLIED,
        "Sink operations made durable (fence skips not included)"
    );
    describe_counter!(
        CHANGES_SKIPPED,
        "Upserts left out: the point already held that change or a later one"
    );
    describe_gauge!(
        TABLE_STOPPED,
        "1 while a schema change stops the table (a column its mapping needs is gone or retyped)"
    );
    describe_counter!(
        CHANGES_STOPPED,
        "Changes of a table stopped by a schema change, skipped (not written, not parked)"
    );
    describe_counter!(TRANSACTIONS, "Transactions read from the slot");
    describe_gauge!(WAITERS, "GET /wait requests waiting now (read-your-writes)");
    describe_gauge!(
        LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest transaction read and not yet durable in every sink (0: caught up)"
    );
    describe_histogram!(
        COMMIT_TO_DURABLE,
        Unit::Seconds,
        "Per transaction, from its commit in PostgreSQL to durable in every sink"
    );
}

/// The replication slot's health, the components' and the process's.
fn describe_slot() {
    use names::*;
    describe_gauge!(
        SLOT_WAL_STATUS,
        "The slot's wal_status: 1 for the current one (reserved, extended, unreserved, lost)"
    );
    describe_gauge!(
        SLOT_SAFE_WAL_SIZE,
        Unit::Bytes,
        "WAL that can still be written before the slot is lost (-1: no limit)"
    );
    describe_gauge!(
        SLOT_RETAINED_WAL,
        Unit::Bytes,
        "WAL the slot holds on the server (current position - restart_lsn)"
    );
    describe_counter!(HEARTBEATS, "Heartbeat messages written into the WAL");
    describe_gauge!(UP, "1 when the component is reachable and working");
    describe_gauge!(READY, "1 when /readyz answers ready");
    describe_gauge!(BUILD_INFO, "Always 1; labels carry the version and mode");
}

/// Writes: batches, their latency and retries, the position acknowledged.
fn describe_sink() {
    use names::*;
    describe_counter!(
        DEAD_LETTERED,
        "Rows that could not be mapped and went to the dead-letter file"
    );
    describe_histogram!(BATCH_SIZE, Unit::Count, "Operations per write batch");
    describe_histogram!(
        WRITE_LATENCY,
        Unit::Seconds,
        "Time for one batch to become durable"
    );
    describe_counter!(WRITE_RETRIES, "Failed write attempts that are retried");
    describe_gauge!(LAST_ACKED_LSN, "Last LSN acknowledged to the slot");
    describe_gauge!(
        REPLICATION_LAG_BYTES,
        Unit::Bytes,
        "WAL bytes between pg_current_wal_lsn() and the last ack"
    );
    describe_counter!(REPLICATION_CONNECTS, "Replication connections opened");
}

/// The copy of existing rows and the last verify.
fn describe_copy_and_verify() {
    use names::*;
    describe_counter!(SNAPSHOT_ROWS, "Rows copied by the snapshot");
    describe_gauge!(
        SNAPSHOT_ROWS_ESTIMATED,
        "Rows in the table by PostgreSQL's estimate (reltuples)"
    );
    describe_gauge!(SNAPSHOT_CHUNKS_DONE, "Durable chunks of the current copy");
    describe_gauge!(
        SNAPSHOT_STATE,
        "Copy state: 0 not copied, 1 copying, 2 done"
    );
    describe_counter!(SNAPSHOT_ERRORS, "Copy tasks that failed and are retried");
    describe_gauge!(VERIFY_ROWS, "Rows compared by the last verify");
    describe_gauge!(VERIFY_MISSING, "Rows without a point at the last verify");
    describe_gauge!(VERIFY_ORPHANED, "Points without a row at the last verify");
    describe_gauge!(
        VERIFY_STALE,
        "Points that differ from their row at the last verify"
    );
    describe_gauge!(
        VERIFY_TIMESTAMP,
        Unit::Seconds,
        "Unix time of the last verify"
    );
}

/// TOAST read-backs and vectors computed from text.
fn describe_embedding() {
    use names::*;
    describe_counter!(
        TOAST_FETCHES,
        "TOAST merges that read the current row from PostgreSQL"
    );
    describe_counter!(EMBEDDINGS, "Texts embedded");
    describe_counter!(
        EMBED_UNCHANGED,
        "Inputs not embedded again: the point holds their embedding"
    );
    describe_counter!(
        EMBED_RETRIES,
        "Embedder calls that failed transiently and are retried"
    );
    describe_counter!(EMBED_TRUNCATED, "Inputs cut at the model's maximum length");
    describe_counter!(EMBED_FAILED, "Inputs the embedder refused (dead-lettered)");
    describe_histogram!(EMBED_LATENCY, Unit::Seconds, "Time per embedder call");
    describe_histogram!(EMBED_BATCH, Unit::Count, "Inputs per embedder call");
    describe_gauge!(
        EMBED_WAITING,
        "Points read from the source whose vectors are still to be computed from text"
    );
}

/// Kafka: publish and apply.
fn describe_kafka() {
    use names::*;
    describe_counter!(KAFKA_PRODUCED, "Change events handed to the Kafka producer");
    describe_counter!(KAFKA_DELIVERED, "Change events Kafka confirmed");
    describe_counter!(KAFKA_FAILED, "Change events whose delivery failed");
    describe_histogram!(
        KAFKA_DELIVERY_LATENCY,
        Unit::Seconds,
        "Time from producing a batch's events to its last delivery report"
    );
    describe_gauge!(
        KAFKA_CONSUMER_LAG,
        "apply: messages between the committed position and the partition's end"
    );
    describe_gauge!(
        KAFKA_APPLY_LAG_SECONDS,
        Unit::Seconds,
        "apply: age of the oldest change event taken and not yet durable in Qdrant (0: caught up)"
    );
    describe_counter!(KAFKA_APPLIED, "apply: change events made durable in Qdrant");
    describe_counter!(KAFKA_DLQ, "apply: messages sent to the dead-letter topic");
}
