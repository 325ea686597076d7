//! The dead-letter topic of an applier: a message that cannot be decoded or mapped is delivered
//! there with the reason and its origin in headers, retried until delivered (its offset is
//! committed only after).

use super::consume::Applier;
use crate::error::{retry_transient, Error};
use crate::kafka::client;
use crate::metrics::names;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use std::time::Duration;

/// Header names of a dead-lettered message.
pub const DLQ_REASON: &str = "pg2qdrant.error";
pub const DLQ_TOPIC: &str = "pg2qdrant.source.topic";
pub const DLQ_PARTITION: &str = "pg2qdrant.source.partition";
pub const DLQ_OFFSET: &str = "pg2qdrant.source.offset";

impl Applier {
    /// Delivers `m` to the dead-letter topic with the reason and its origin in headers
    /// (retried until delivered: its offset is committed only after).
    pub(super) async fn dead_letter(
        &self,
        m: &rdkafka::message::BorrowedMessage<'_>,
        reason: &str,
    ) -> Result<(), Error> {
        let partition = m.partition().to_string();
        let offset = m.offset().to_string();
        let payload = m.payload().unwrap_or_default();
        let key = m.key().unwrap_or_default();
        let producer = {
            let mut dlq = self.dlq.lock().expect("dead-letter producer lock");
            match &*dlq {
                Some(p) => p.clone(),
                None => dlq.insert(client::producer(&self.kafka)?).clone(),
            }
        };
        let send = || async {
            let headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: DLQ_REASON,
                    value: Some(reason),
                })
                .insert(Header {
                    key: DLQ_TOPIC,
                    value: Some(m.topic()),
                })
                .insert(Header {
                    key: DLQ_PARTITION,
                    value: Some(&partition),
                })
                .insert(Header {
                    key: DLQ_OFFSET,
                    value: Some(&offset),
                });
            let record = FutureRecord::<[u8], [u8]>::to(&self.dlq_topic)
                .payload(payload)
                .key(key)
                .headers(headers);
            producer
                .send(
                    record,
                    rdkafka::util::Timeout::After(Duration::from_secs(30)),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| Error::kafka(format!("delivering to {}", self.dlq_topic))(e))
        };
        retry_transient(
            "dead-letter topic",
            self.max_backoff,
            &self.shutdown,
            Duration::from_secs(5),
            send,
        )
        .await?;
        metrics::counter!(names::KAFKA_DLQ, "topic" => m.topic().to_owned()).increment(1);
        *self
            .observed
            .dead_lettered
            .lock()
            .expect("status lock")
            .entry(m.topic().to_owned())
            .or_default() += 1;
        Ok(())
    }
}
