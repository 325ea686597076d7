//! The Kafka destination: a batch's change events published (see `kafka::publish`), durable
//! once Kafka confirmed every one; an event Kafka refuses for good (too large, a topic it
//! refuses) is dead-lettered with its reason and counts as landed.

use super::assemble::Batch;
use super::destination::Destination;
use super::retrying::Retrying;
use crate::deadletter::DeadLetter;
use crate::error::Error;
use crate::kafka::publish::{Delivered, Publisher};
use crate::lsn::Lsn;
use std::sync::{Arc, Mutex};

pub struct ToKafka {
    pub publisher: Arc<Publisher>,
    pub dead_letter: Arc<Mutex<DeadLetter>>,
    pub retrying: Retrying,
}

impl Destination for ToKafka {
    async fn land(&self, batch: Batch) -> Result<(), Error> {
        let events = &batch.events;
        if events.is_empty() {
            return Ok(());
        }
        let delivered = Delivered::default();
        let refused = self
            .retrying
            .run("kafka", || self.publisher.publish(events, &delivered))
            .await?;
        let mut dead = self.dead_letter.lock().expect("dead-letter lock");
        for (i, reason) in refused {
            let e = &events[i];
            dead.write(
                &format!("topic:{}", e.topic),
                &serde_json::json!(e.key),
                Lsn(e.lsn),
                &reason,
                &serde_json::json!({ "table": &*e.table, "seq": e.seq, "bytes": e.payload.len() }),
            )?;
        }
        Ok(())
    }
}
