//! The lags an applier exports: per assigned partition, events not yet consumed (sampled every
//! 5 s); and the apply lag, the age of the oldest event taken and not yet durable.

use super::offsets::{export_apply_lag, Offsets};
use super::status;
use crate::kafka::client;
use crate::metrics::names;
use rdkafka::consumer::Consumer;
use rdkafka::Offset;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often consumer lag is sampled.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// How often the apply lag is sampled (it also moves as each batch becomes durable).
const APPLY_LAG_EVERY: Duration = Duration::from_secs(1);

/// Exports the apply lag: while Qdrant is down the batch in flight stays, and its age grows.
pub(super) async fn apply_lag(
    queue: Arc<Mutex<VecDeque<Offsets>>>,
    group: String,
    shutdown: CancellationToken,
) {
    loop {
        export_apply_lag(&queue, &group);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(APPLY_LAG_EVERY) => {}
        }
    }
}

/// Exports each assigned partition's lag: its end offset minus this member's position.
pub(super) async fn lag_sampler(
    consumer: Arc<client::GroupConsumer>,
    observed: Arc<status::Observed>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(LAG_EVERY) => {}
        }
        let c = consumer.clone();
        let lags = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let Ok(position) = c.position() else {
                return out;
            };
            for e in position.elements() {
                let Ok((_, high)) =
                    c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
                else {
                    continue;
                };
                let at = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => continue,
                };
                out.push((e.topic().to_owned(), e.partition(), (high - at).max(0)));
            }
            out
        })
        .await
        .unwrap_or_default();
        for (topic, partition, lag) in &lags {
            metrics::gauge!(names::KAFKA_CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                .set(*lag as f64);
        }
        *observed.partitions.lock().expect("status lock") = Some(
            lags.into_iter()
                .map(
                    |(topic, partition, lag)| crate::metrics::status::PartitionLag {
                        topic,
                        partition,
                        lag,
                    },
                )
                .collect(),
        );
    }
}
