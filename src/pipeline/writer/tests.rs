//! The writer's ordering, parking and ack rules on an in-memory sink (no services).

use super::*;
use crate::event::{Document, Vectors};
use crate::lsn::Position;
use std::collections::HashMap;

/// A sink in memory: ops of key 1 land after a pause (so later batches are taken while
/// they are in flight), ops of key 2 are refused for good by something that is no row's
/// fault, ops of key 3 for themselves, the rest land at once. In strict mode (its first
/// `strict` writes) every op is refused alike.
#[derive(Default)]
struct Memory {
    strict: std::sync::atomic::AtomicUsize,
}

impl Sink for Memory {
    async fn write(&self, ops: &[Op]) -> Result<crate::sink::Skipped, Error> {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .strict
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::qdrant("write")(
                qdrant_client::QdrantError::ResponseError {
                    status: tonic::Status::invalid_argument("strict mode: read only"),
                },
            ));
        }
        if ops.iter().any(|o| o.row_key() == Some(&PointKey::Num(1))) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if ops.iter().any(|o| o.row_key() == Some(&PointKey::Num(2))) {
            return Err(Error::prerequisite("the collection is gone", "test"));
        }
        if ops.iter().any(|o| o.row_key() == Some(&PointKey::Num(3))) {
            return Err(Error::qdrant("write")(
                qdrant_client::QdrantError::ResponseError {
                    status: tonic::Status::invalid_argument("wrong vector dimension"),
                },
            ));
        }
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

#[derive(Default, Clone)]
struct Recorded(Arc<Mutex<(Vec<Option<Lsn>>, usize)>>);

impl Progress for Recorded {
    fn durable(&mut self, ack: Option<Lsn>) -> Result<(), Error> {
        self.0.lock().unwrap().0.push(ack);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.0.lock().unwrap().1 += 1;
        Ok(())
    }
}

fn upsert(key: u64, lsn: u64) -> Batch {
    let position = Position::new(Lsn(lsn), 0);
    Batch {
        ops: vec![Op::Upsert {
            collection: "c".into(),
            doc: Document {
                key: PointKey::Num(key),
                payload: Default::default(),
                vectors: None,
                embed: Vec::new(),
                position,
                anchor: None,
            },
            copied: false,
        }],
        events: Vec::new(),
        ack: Some(Lsn(lsn)),
    }
}

fn writer(dir: &std::path::Path) -> Writer<Memory> {
    writer_to(Memory::default(), dir)
}

fn writer_to(sink: Memory, dir: &std::path::Path) -> Writer<Memory> {
    let cfg = crate::config::parse(
        "[source]\nurl = \"postgres://u@h/d\"\nslot = \"s\"\npublication = \"p\"\n",
    )
    .unwrap();
    Writer {
        sink: Arc::new(sink),
        pending: Pending::default(),
        mappings: Arc::default(),
        source: cfg.source,
        dead_letter: Arc::new(Mutex::new(DeadLetter::new(&dir.join("dead")))),
        embedders: Arc::new(super::super::embedding::Embedders::load(&[]).unwrap()),
        max_backoff: Duration::from_millis(10),
        shutdown: CancellationToken::new(),
        publisher: None,
        direct: true,
        health: crate::metrics::health::Health::new(&["qdrant"]),
        parallel: 3,
    }
}

/// A batch that must wait for one in flight (same point) finds an earlier one failed: the
/// writer ends with that error, nothing after it is acknowledged, and what was durable
/// before it is still flushed to the checkpoint.
#[tokio::test(start_paused = true)]
async fn a_failure_met_while_draining_for_a_conflict_still_flushes_what_was_durable() {
    let dir = std::env::temp_dir().join(format!("pg2qdrant-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, rx) = mpsc::channel(8);
    // 1 in flight (slow), 2 in flight (refused), then 2 again: it waits for both.
    for b in [upsert(1, 10), upsert(2, 20), upsert(2, 30)] {
        tx.send(b).await.unwrap();
    }
    drop(tx);
    let progress = Recorded::default();
    let r = writer(&dir).run(rx, progress.clone()).await;
    assert!(matches!(r, Err(Error::Prerequisite { .. })), "{r:?}");
    let (acks, flushes) = progress.0.lock().unwrap().clone();
    assert_eq!(
        acks,
        vec![Some(Lsn(10))],
        "only the batch before the failure"
    );
    assert_eq!(flushes, 1, "flushed on the way out");
    assert!(
        !dir.join("dead").exists(),
        "nothing parked for a sink-wide error"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A batch the sink refuses for one op's sake: written op by op, only that op is parked,
/// and the batch is acknowledged.
#[tokio::test(start_paused = true)]
async fn only_the_op_that_fails_alone_for_itself_is_parked() {
    let dir = std::env::temp_dir().join(format!("pg2qdrant-writer-park-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut batch = upsert(3, 10);
    batch.ops.extend(upsert(4, 10).ops);
    tx.send(batch).await.unwrap();
    drop(tx);
    let progress = Recorded::default();
    writer(&dir).run(rx, progress.clone()).await.unwrap();
    assert_eq!(progress.0.lock().unwrap().0, vec![Some(Lsn(10))]);
    let parked = std::fs::read_to_string(dir.join("dead")).unwrap();
    assert_eq!(parked.lines().count(), 1, "{parked}");
    assert!(
        parked.contains("wrong vector dimension") && parked.contains("\"3\""),
        "{parked}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every op of a batch refused alone for the same reason: the sink refuses everything, so
/// nothing is parked; the batch lands once the sink takes writes again.
#[tokio::test(start_paused = true)]
async fn a_batch_whose_every_op_is_refused_alike_is_an_outage_not_bad_rows() {
    let dir = std::env::temp_dir().join(format!("pg2qdrant-writer-strict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut batch = upsert(5, 10);
    batch.ops.extend(upsert(6, 10).ops);
    tx.send(batch).await.unwrap();
    drop(tx);
    let progress = Recorded::default();
    // The batch, then each op alone, twice over: six refusals, then it lands.
    let w = writer_to(Memory { strict: 6.into() }, &dir);
    let health = w.health.clone();
    w.run(rx, progress.clone()).await.unwrap();
    assert_eq!(progress.0.lock().unwrap().0, vec![Some(Lsn(10))]);
    assert!(!dir.join("dead").exists(), "nothing parked");
    assert!(health.ready().is_ok(), "up again once it lands");
    std::fs::remove_dir_all(&dir).unwrap();
}
