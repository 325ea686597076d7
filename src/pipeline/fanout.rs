//! Qdrant and Kafka side by side, as `[kafka]` and `qdrant.direct` ask.

use super::assemble::Batch;
use super::destination::Destination;
use crate::error::Error;

/// A batch is durable once each destination present has its part: the events for `kafka`, the
/// ops for `qdrant`, both written at once. `qdrant: None` is the publish-only mode
/// (`qdrant.direct = false`): the appliers write the ops, so they are dropped here.
pub struct Fanout<K, Q> {
    pub kafka: Option<K>,
    pub qdrant: Option<Q>,
}

impl<K: Destination, Q: Destination> Destination for Fanout<K, Q> {
    async fn land(&self, batch: Batch) -> Result<(), Error> {
        let Batch { ops, events, ack } = batch;
        if self.qdrant.is_none() {
            // Never embedded here: what the assembly counted as waiting is not.
            super::embedding::count_waiting(&super::embedding::waiting(&ops), -1.0);
        }
        let to_kafka = async {
            match &self.kafka {
                Some(k) if !events.is_empty() => {
                    let ops = Vec::new();
                    k.land(Batch { ops, events, ack }).await
                }
                _ => Ok(()),
            }
        };
        let to_qdrant = async {
            match &self.qdrant {
                Some(q) if !ops.is_empty() => {
                    let events = Vec::new();
                    q.land(Batch { ops, events, ack }).await
                }
                _ => Ok(()),
            }
        };
        tokio::try_join!(to_kafka, to_qdrant)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fixtures::upsert;
    use std::sync::Mutex;

    /// A destination that records what it was handed (ops, events) and fails when told to.
    #[derive(Default)]
    struct Recorder {
        fail: bool,
        got: Mutex<Vec<(usize, usize)>>,
    }

    impl Destination for Recorder {
        async fn land(&self, batch: Batch) -> Result<(), Error> {
            self.got
                .lock()
                .unwrap()
                .push((batch.ops.len(), batch.events.len()));
            match self.fail {
                true => Err(Error::prerequisite("refused", "test")),
                false => Ok(()),
            }
        }
    }

    fn with_event() -> Batch {
        let mut b = upsert(1, 10);
        b.events.push(crate::kafka::Event {
            topic: "t".into(),
            key: Some("1".to_owned()),
            payload: Vec::new(),
            lsn: 10,
            seq: 0,
            table: "public.t".into(),
        });
        b
    }

    /// Kafka gets the events only, Qdrant the ops only; the batch fails when either part does.
    #[tokio::test]
    async fn each_destination_gets_its_part_and_both_must_land() {
        let both = Fanout {
            kafka: Some(Recorder::default()),
            qdrant: Some(Recorder::default()),
        };
        both.land(with_event()).await.unwrap();
        assert_eq!(*both.kafka.as_ref().unwrap().got.lock().unwrap(), [(0, 1)]);
        assert_eq!(*both.qdrant.as_ref().unwrap().got.lock().unwrap(), [(1, 0)]);
        let kafka_refuses = Fanout {
            kafka: Some(Recorder {
                fail: true,
                ..Recorder::default()
            }),
            qdrant: Some(Recorder::default()),
        };
        assert!(kafka_refuses.land(with_event()).await.is_err());
        let qdrant_refuses = Fanout {
            kafka: Some(Recorder::default()),
            qdrant: Some(Recorder {
                fail: true,
                ..Recorder::default()
            }),
        };
        assert!(qdrant_refuses.land(with_event()).await.is_err());
        // Publish only: the events still go to Kafka, the ops nowhere.
        let publish_only: Fanout<Recorder, Recorder> = Fanout {
            kafka: Some(Recorder::default()),
            qdrant: None,
        };
        publish_only.land(with_event()).await.unwrap();
        let kafka = publish_only.kafka.as_ref().unwrap();
        assert_eq!(*kafka.got.lock().unwrap(), [(0, 1)]);
    }
}
