//! The Qdrant destination's parking rules on an in-memory sink (no services): a bad row is
//! isolated and parked, a sink that refuses everything is an outage, a sink-wide definite error
//! fails the batch.

use super::*;
use crate::event::{PointKey, Vectors};
use crate::pipeline::fixtures::upserts;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A sink in memory: ops of key 2 are refused for good by something that is no row's fault,
/// ops of key 3 for their own sake, the rest land. In strict mode (its first `strict` writes)
/// every op is refused alike. It counts the writes that landed.
#[derive(Default)]
struct Memory {
    strict: AtomicUsize,
    landed: AtomicUsize,
}

fn refused(reason: &str) -> Error {
    Error::qdrant("write")(qdrant_client::QdrantError::ResponseError {
        status: tonic::Status::invalid_argument(reason),
    })
}

impl Sink for Memory {
    async fn write(&self, ops: &[Op]) -> Result<Skipped, Error> {
        if self
            .strict
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(refused("strict mode: read only"));
        }
        if ops.iter().any(|o| o.row_key() == Some(&PointKey::Num(2))) {
            return Err(Error::prerequisite("the collection is gone", "test"));
        }
        if ops.iter().any(|o| o.row_key() == Some(&PointKey::Num(3))) {
            return Err(refused("wrong vector dimension"));
        }
        self.landed.fetch_add(ops.len(), SeqCst);
        Ok(Vec::new())
    }
    async fn missing(&self, _: &str, _: &[PointKey]) -> Result<Vec<PointKey>, Error> {
        Ok(Vec::new())
    }
    async fn embedded(
        &self,
        _: &str,
        _: &[PointKey],
    ) -> Result<HashMap<PointKey, (serde_json::Value, Vectors)>, Error> {
        Ok(HashMap::new())
    }
}

/// One batch landed in a [`ToQdrant`] over `sink`.
struct Landed {
    result: Result<(), Error>,
    sink: Arc<Memory>,
    /// What the dead-letter file holds ("" when nothing was parked).
    parked: String,
    health: Arc<crate::metrics::health::Health>,
}

async fn landed(sink: Memory, batch: Batch) -> Landed {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, SeqCst);
    let dir = std::env::temp_dir().join(format!("pg2qdrant-to-qdrant-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = crate::config::parse(
        "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n",
    )
    .unwrap()
    .source;
    let health = crate::metrics::health::Health::new(&["qdrant"]);
    let to = ToQdrant {
        sink: Arc::new(sink),
        mappings: Arc::default(),
        reads: SourceReads::new(source),
        embedders: Arc::new(Embedders::load(&[]).unwrap()),
        dead_letter: Arc::new(Mutex::new(DeadLetter::new(&dir.join("dead")))),
        retrying: Retrying {
            max_backoff: Duration::from_millis(10),
            shutdown: CancellationToken::new(),
            health: health.clone(),
        },
    };
    let result = to.land(batch).await;
    let parked = std::fs::read_to_string(dir.join("dead")).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    Landed {
        result,
        sink: to.sink,
        parked,
        health,
    }
}

/// A batch the sink refuses for one op's sake: written op by op, only that op is parked, the
/// others land, and the batch has landed.
#[tokio::test(start_paused = true)]
async fn only_the_op_that_fails_alone_for_itself_is_parked() {
    let r = landed(Memory::default(), upserts(&[3, 4], 10)).await;
    r.result.unwrap();
    assert_eq!(r.sink.landed.load(SeqCst), 1, "key 4 landed");
    assert_eq!(r.parked.lines().count(), 1, "{}", r.parked);
    assert!(
        r.parked.contains("wrong vector dimension") && r.parked.contains("\"3\""),
        "{}",
        r.parked
    );
}

/// Every op of a batch refused alone for the same reason: the sink refuses everything, so
/// nothing is parked; the batch lands once the sink takes writes again.
#[tokio::test(start_paused = true)]
async fn a_batch_whose_every_op_is_refused_alike_is_an_outage_not_bad_rows() {
    // The batch, then each op alone, twice over: six refusals, then it lands.
    let strict = Memory {
        strict: 6.into(),
        ..Memory::default()
    };
    let r = landed(strict, upserts(&[5, 6], 10)).await;
    r.result.unwrap();
    assert_eq!(r.sink.landed.load(SeqCst), 2);
    assert!(r.parked.is_empty(), "nothing parked: {}", r.parked);
    assert!(r.health.ready().is_ok(), "up again once it lands");
}

/// A definite error that is no row's fault (the collection is gone) fails the batch: nothing
/// parked, nothing written op by op past it.
#[tokio::test(start_paused = true)]
async fn a_sink_wide_definite_error_fails_the_batch_and_parks_nothing() {
    let r = landed(Memory::default(), upserts(&[2, 4], 10)).await;
    assert!(
        matches!(r.result, Err(Error::Prerequisite { .. })),
        "{:?}",
        r.result
    );
    assert!(r.parked.is_empty(), "nothing parked: {}", r.parked);
    assert_eq!(r.sink.landed.load(SeqCst), 0);
}
