//! The producer side of publish mode.
//!
//! # Delivery guarantee
//! A batch's events are produced in batch order, then every delivery report is awaited (counted
//! per batch, see [`super::delivery`]); the
//! writer acknowledges the batch's LSN only after that (and after the Qdrant write, when
//! Qdrant is a sink too). So the slot never moves past a change Kafka does not hold (with
//! `acks=all`: every in-sync replica). The producer is idempotent: librdkafka's own retries
//! neither duplicate nor reorder inside a partition. A delivery that fails anyway (broker down
//! past `message.timeout.ms`) fails the attempt; the Kafka destination (`pipeline::to_kafka`)
//! retries it and produces again only
//! the events not yet delivered ([`Delivered`]). A restart replays from the slot. Both can
//! repeat an event: delivery is at least once, and every consumer that applies by position
//! (as `apply` does, fenced) converges.
//!
//! # Ordering
//! The message key is the point id, so one row's changes land in one partition in commit
//! order (the writer never has two batches in flight that touch the same row). A TRUNCATE
//! goes to every partition of its table's topic, so no partition replays rows from before it
//! after it. Events of one transaction can land in different partitions: consumers order by
//! row, not by transaction.

use super::delivery::Batch;
use super::Event;
use crate::error::Error;
use crate::metrics::names;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Publisher {
    producer: Arc<super::delivery::BatchProducer>,
    /// Partition count of each topic: read at start, and again before a TRUNCATE or a sweep is
    /// produced (see [`Publisher::refresh_partitions`]).
    partitions: Mutex<HashMap<String, i32>>,
    /// Held while a batch's events are handed to the producer: batches in flight enqueue whole,
    /// in the order they asked (tokio's mutex is fair), even when the queue is full.
    enqueue: tokio::sync::Mutex<()>,
}

/// Which events of a batch are delivered, kept across the retries of that batch
/// (`pipeline::to_kafka`).
pub type Delivered = Mutex<Vec<bool>>;

impl Publisher {
    /// Creates the missing topics and the producer.
    pub async fn start(cfg: &crate::config::KafkaConfig, topics: &[String]) -> Result<Self, Error> {
        let partitions = super::client::ensure_topics(cfg, topics).await?;
        Ok(Self {
            producer: super::delivery::batch_producer(cfg)?,
            partitions: Mutex::new(partitions),
            enqueue: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads the partition counts of the topics of the events to every partition (TRUNCATE, a
    /// copy's sweep) still to deliver: partitions added while running get them too, without a
    /// restart. A failed read fails the batch (retried): an event sent to fewer partitions than
    /// the topic has would leave rows from before it in the others.
    async fn refresh_partitions(
        &self,
        events: &[Event],
        delivered: &Delivered,
    ) -> Result<(), Error> {
        let mut topics: Vec<String> = {
            let d = delivered.lock().expect("delivered lock");
            events
                .iter()
                .zip(d.iter())
                .filter(|(e, done)| e.key.is_none() && !**done)
                .map(|(e, _)| e.topic.to_string())
                .collect()
        };
        if topics.is_empty() {
            return Ok(());
        }
        topics.sort();
        topics.dedup();
        let now = super::delivery::partitions(&self.producer, &topics).await?;
        let mut known = self.partitions.lock().expect("partitions lock");
        for (topic, n) in now {
            let before = known.insert(topic.clone(), n);
            if before.is_some_and(|b| b != n) {
                tracing::info!(topic, partitions = n, before, "the topic's partition count changed; TRUNCATEs and sweeps go to every partition");
            }
        }
        Ok(())
    }

    /// Produces the events of `events` not yet marked in `delivered`, in order, and waits for
    /// all of them. `Ok` lists the events Kafka refused for themselves (too large, an invalid
    /// record: [`Error::blames_input`]): the caller dead-letters them. Any other failure is `Err`
    /// after every delivery in flight has been reported (those delivered are marked): a
    /// transient one (refused credentials included) is retried by the caller; a definite one
    /// stops the process, such as a producer in librdkafka's fatal state, which fails every
    /// produce until it is replaced (the next start makes a new one).
    pub async fn publish(
        &self,
        events: &[Event],
        delivered: &Delivered,
    ) -> Result<Vec<(usize, String)>, Error> {
        {
            let mut d = delivered.lock().expect("delivered lock");
            if d.len() != events.len() {
                *d = vec![false; events.len()];
            }
        }
        self.refresh_partitions(events, delivered).await?;
        let started = Instant::now();
        let reports = Batch::new(events.len());
        let mut parts_of = vec![0usize; events.len()];
        let mut outcome = self
            .enqueue(events, delivered, &reports, &mut parts_of)
            .await;
        reports.wait().await;
        for (i, err) in reports.take_failed() {
            let topic = &*events[i].topic;
            metrics::counter!(names::KAFKA_FAILED, "topic" => topic.to_string()).increment(1);
            let e = Error::kafka(format!("delivering to {topic}"))(err);
            if e.blames_input() {
                if !outcome.refused.iter().any(|(j, _)| *j == i) {
                    outcome.refused.push((i, e.to_string()));
                }
            } else {
                outcome.failure.get_or_insert(e);
            }
        }
        mark_delivered(events, delivered, &reports, &parts_of);
        metrics::histogram!(names::KAFKA_DELIVERY_LATENCY).record(started.elapsed().as_secs_f64());
        if outcome.failure.is_some() {
            outcome.failure = self.fatal().or(outcome.failure);
        }
        match outcome.failure {
            Some(e) => Err(e),
            None => {
                let mut d = delivered.lock().expect("delivered lock");
                for (i, _) in &outcome.refused {
                    d[*i] = true;
                }
                Ok(outcome.refused)
            }
        }
    }

    /// Hands the events not yet delivered to the producer, in order (one record per partition
    /// for an event to every partition, counted in `parts_of`), tracked by `reports`. Stops at
    /// the first failure that is not the event's own fault; what was enqueued is awaited by the
    /// caller and the rest goes again on its retry.
    async fn enqueue(
        &self,
        events: &[Event],
        delivered: &Delivered,
        reports: &Arc<Batch>,
        parts_of: &mut [usize],
    ) -> Outcome {
        let partitions_of = self.partitions.lock().expect("partitions lock").clone();
        let mut outcome = Outcome::default();
        // Counted per topic and batch, not per event (a label is a string to build).
        let mut produced: Vec<(&str, u64)> = Vec::new();
        let (mut lsn_buf, mut seq_buf) = ([0u8; 20], [0u8; 20]);
        let enqueueing = self.enqueue.lock().await;
        'events: for (i, e) in events.iter().enumerate() {
            if delivered.lock().expect("delivered lock")[i] {
                continue;
            }
            let numbers = (decimal(e.lsn, &mut lsn_buf), decimal(e.seq, &mut seq_buf));
            let partitions: Vec<Option<i32>> = match &e.key {
                Some(_) => vec![None],
                None => (0..*partitions_of.get(&*e.topic).unwrap_or(&1))
                    .map(Some)
                    .collect(),
            };
            parts_of[i] = partitions.len();
            for partition in partitions {
                if let Err(err) = self.send(e, partition, numbers, reports.track(i)).await {
                    metrics::counter!(names::KAFKA_FAILED, "topic" => e.topic.to_string())
                        .increment(1);
                    if err.blames_input() {
                        outcome.refused.push((i, err.to_string()));
                        continue 'events;
                    }
                    outcome.failure = Some(err);
                    break 'events;
                }
                tally(&mut produced, &e.topic, 1);
            }
        }
        drop(enqueueing);
        count(names::KAFKA_PRODUCED, &produced);
        outcome
    }

    /// Hands one record of `e` (to `partition`, or by its key) to the producer, waiting while
    /// its queue is full. An error is a refusal before sending (e.g. too large for the client).
    async fn send(
        &self,
        e: &Event,
        partition: Option<i32>,
        (lsn, seq): (&[u8], &[u8]),
        report: Box<super::delivery::Pending>,
    ) -> Result<(), Error> {
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: super::HEADER_LSN,
                value: Some(lsn),
            })
            .insert(Header {
                key: super::HEADER_SEQ,
                value: Some(seq),
            })
            .insert(Header {
                key: super::HEADER_TABLE,
                value: Some(&*e.table),
            });
        let mut record = BaseRecord::<str, [u8], _>::with_opaque_to(&e.topic, report)
            .payload(&e.payload)
            .headers(headers);
        if let Some(k) = &e.key {
            record = record.key(k.as_str());
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((err, r)) => {
                    (*r.delivery_opaque).unsent();
                    return Err(Error::kafka(format!("producing to {}", e.topic))(err));
                }
            }
        }
    }
}

/// What enqueueing a batch's events left: the events refused for their own sake (with the
/// reason), and the failure that stopped it.
#[derive(Default)]
struct Outcome {
    refused: Vec<(usize, String)>,
    failure: Option<Error>,
}

/// Marks the events whose every record was delivered, and counts the deliveries per topic.
fn mark_delivered(events: &[Event], delivered: &Delivered, reports: &Batch, parts_of: &[usize]) {
    let mut delivered_to: Vec<(&str, u64)> = Vec::new();
    {
        let mut d = delivered.lock().expect("delivered lock");
        for (i, e) in events.iter().enumerate() {
            let parts = reports.delivered(i) as usize;
            if parts == 0 {
                continue;
            }
            tally(&mut delivered_to, &e.topic, parts as u64);
            if parts == parts_of[i] {
                d[i] = true;
            }
        }
    }
    count(names::KAFKA_DELIVERED, &delivered_to);
}

impl Publisher {
    /// The producer's fatal state, as a definite error. A fatal producer fails its queued
    /// messages with other codes (purged, timed out) that look transient: only the instance
    /// itself tells, and the error stops the process (its next start makes a new producer).
    fn fatal(&self) -> Option<Error> {
        let (code, reason) = self.producer.client().fatal_error()?;
        tracing::error!(%code, reason, "the Kafka producer is in librdkafka's fatal state");
        Some(
            Error::kafka(format!("producer failed for good ({reason})"))(
                KafkaError::MessageProduction(RDKafkaErrorCode::Fatal),
            ),
        )
    }
}

/// `n` in decimal, written into `buf` (a header value without a `String` per event).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// `n` more events for `topic` in a batch's per-topic tally (a batch has few topics).
fn tally<'a>(counts: &mut Vec<(&'a str, u64)>, topic: &'a str, n: u64) {
    match counts.iter_mut().find(|(t, _)| *t == topic) {
        Some(c) => c.1 += n,
        None => counts.push((topic, n)),
    }
}

/// Adds a batch's per-topic tally to the counter `name`.
fn count(name: &'static str, counts: &[(&str, u64)]) {
    for (topic, n) in counts {
        metrics::counter!(name, "topic" => topic.to_string()).increment(*n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka's fatal state ends publishing with a definite error that names the fix,
    /// instead of retrying a producer that can never produce again. Caused for real on
    /// librdkafka's mock cluster: with the gap-less guarantee, a permanent produce error of an
    /// idempotent producer is fatal (a broken sequence in production does the same).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fatal_producer_stops_publishing_instead_of_retrying() {
        use rdkafka::types::RDKafkaRespErr as R;
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        let cfg: crate::config::KafkaConfig = toml::from_str(&format!(
            "brokers = \"{}\"\nproperties = {{ \"enable.gapless.guarantee\" = \"true\" }}",
            mock.bootstrap_servers()
        ))
        .unwrap();
        let publisher = Publisher {
            producer: super::super::delivery::batch_producer(&cfg).unwrap(),
            partitions: Mutex::new(HashMap::new()),
            enqueue: tokio::sync::Mutex::new(()),
        };
        let event = |seq| Event {
            topic: "t".into(),
            key: Some("1".into()),
            payload: vec![1, 2, 3],
            lsn: 1,
            seq,
            table: "public.t".into(),
        };
        let publish = |e: Event| {
            let publisher = &publisher;
            async move {
                let delivered = Delivered::default();
                let r = tokio::time::timeout(
                    Duration::from_secs(60),
                    publisher.publish(std::slice::from_ref(&e), &delivered),
                )
                .await
                .expect("publish returns");
                let done = delivered.lock().unwrap()[0];
                (r, done)
            }
        };
        // A healthy producer first.
        let (r, delivered) = publish(event(0)).await;
        assert!(r.unwrap().is_empty() && delivered);
        // A permanent refusal of the next produce request breaks the sequence: fatal.
        mock.request_errors(
            rdkafka::types::RDKafkaApiKey::Produce,
            &[R::RD_KAFKA_RESP_ERR_INVALID_RECORD],
        );
        let mut outcome = None;
        for seq in 1..5 {
            match publish(event(seq)).await {
                // The refused event itself is refused for itself (and parked by the caller).
                (Ok(refused), _) if !refused.is_empty() => continue,
                (r, delivered) => {
                    outcome = Some((r, delivered));
                    break;
                }
            }
        }
        let (r, delivered) = outcome.expect("a publish after the refusal");
        let e = r.expect_err("a fatal producer cannot deliver");
        assert!(!delivered);
        assert_eq!(e.disposition(), crate::error::Disposition::Definite, "{e}");
        assert!(!e.blames_input(), "the event is not at fault: {e}");
        assert!(e.hint().unwrap().contains("new producer"), "{e}");
    }

    #[test]
    fn a_header_number_is_its_decimal_text() {
        let mut buf = [0u8; 20];
        for n in [0, 7, 10, 4_294_967_296, u64::MAX] {
            assert_eq!(super::decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
