//! The writer's ordering, parking and ack rules on an in-memory sink (no services).

use super::*;
use crate::event::{Document, Vectors};
use crate::lsn::Position;
use std::collections::{HashMap, HashSet};

/// A sink in memory: ops of key 1 land after a pause (so later batches are taken while
/// they are in flight), ops of key 2 are refused for good by something that is no row's
/// fault, ops of key 3 for themselves, the rest land at once. In strict mode (its first
/// `strict` writes) every op is refused alike. It watches the writes in flight: what each
/// touches, the most at once, and every overlap the writer's rules forbid.
#[derive(Default)]
struct Memory {
    strict: std::sync::atomic::AtomicUsize,
    flight: Mutex<Flight>,
}

#[derive(Default)]
struct Flight {
    /// The keys of each write in flight (`None`: a truncate, which touches every key).
    now: Vec<Option<HashSet<PointKey>>>,
    most: usize,
    overlaps: Vec<String>,
    /// Keys in the order their writes landed.
    landed: Vec<PointKey>,
}

impl Memory {
    fn enter(&self, ops: &[Op]) -> Option<HashSet<PointKey>> {
        let keys: Option<HashSet<PointKey>> = ops.iter().map(|o| o.row_key().cloned()).collect();
        let mut f = self.flight.lock().unwrap();
        let clashes: Vec<String> = f
            .now
            .iter()
            .filter(|other| match (other, &keys) {
                (Some(a), Some(b)) => !a.is_disjoint(b),
                _ => true,
            })
            .map(|other| format!("{keys:?} while {other:?} was in flight"))
            .collect();
        f.overlaps.extend(clashes);
        f.now.push(keys.clone());
        f.most = f.most.max(f.now.len());
        keys
    }

    fn leave(&self, keys: &Option<HashSet<PointKey>>, ops: &[Op]) {
        let mut f = self.flight.lock().unwrap();
        let i = f.now.iter().position(|k| k == keys).expect("entered");
        f.now.remove(i);
        f.landed
            .extend(ops.iter().filter_map(|o| o.row_key().cloned()));
    }
}

impl Sink for Memory {
    async fn write(&self, ops: &[Op]) -> Result<crate::sink::Skipped, Error> {
        let keys = self.enter(ops);
        let written = self.land(ops).await;
        self.leave(&keys, ops);
        written
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

impl Memory {
    async fn land(&self, ops: &[Op]) -> Result<crate::sink::Skipped, Error> {
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

/// One writer run over `batches` into `sink`.
struct Ran {
    result: Result<(), Error>,
    /// Each batch's ack as progress was told it, and how often progress was flushed.
    acks: Vec<Option<Lsn>>,
    flushes: usize,
    sink: Arc<Memory>,
    /// What the dead-letter file holds ("" when nothing was parked).
    parked: String,
    health: Arc<crate::metrics::health::Health>,
}

async fn ran(sink: Memory, batches: Vec<Batch>) -> Ran {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("pg2qdrant-writer-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, rx) = mpsc::channel(batches.len().max(1));
    for b in batches {
        tx.send(b).await.unwrap();
    }
    drop(tx);
    let progress = Recorded::default();
    let w = writer_to(sink, &dir);
    let (sink, health) = (w.sink.clone(), w.health.clone());
    let result = w.run(rx, progress.clone()).await;
    let (acks, flushes) = progress.0.lock().unwrap().clone();
    let parked = std::fs::read_to_string(dir.join("dead")).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    Ran {
        result,
        acks,
        flushes,
        sink,
        parked,
        health,
    }
}

fn truncate(lsn: u64) -> Batch {
    Batch {
        ops: vec![Op::Truncate {
            collection: "c".into(),
            table: crate::event::TableName::parse("public.t"),
            position: Position::new(Lsn(lsn), 0),
        }],
        events: Vec::new(),
        ack: Some(Lsn(lsn)),
    }
}

/// One batch of an upsert of each key, all at `lsn`.
fn upserts(keys: &[u64], lsn: u64) -> Batch {
    let mut batch = upsert(keys[0], lsn);
    for k in &keys[1..] {
        batch.ops.extend(upsert(*k, lsn).ops);
    }
    batch
}

/// A batch that must wait for one in flight (same point) finds an earlier one failed: the
/// writer ends with that error, nothing after it is acknowledged, and what was durable
/// before it is still flushed to the checkpoint.
#[tokio::test(start_paused = true)]
async fn a_failure_met_while_draining_for_a_conflict_still_flushes_what_was_durable() {
    // 1 in flight (slow), 2 in flight (refused), then 2 again: it waits for both.
    let batches = vec![upsert(1, 10), upsert(2, 20), upsert(2, 30)];
    let r = ran(Memory::default(), batches).await;
    assert!(
        matches!(r.result, Err(Error::Prerequisite { .. })),
        "{:?}",
        r.result
    );
    assert_eq!(r.acks, [Some(Lsn(10))], "only the batch before the failure");
    assert_eq!(r.flushes, 1, "flushed on the way out");
    assert!(r.parked.is_empty(), "nothing parked for a sink-wide error");
}

/// A batch the sink refuses for one op's sake: written op by op, only that op is parked,
/// and the batch is acknowledged.
#[tokio::test(start_paused = true)]
async fn only_the_op_that_fails_alone_for_itself_is_parked() {
    let r = ran(Memory::default(), vec![upserts(&[3, 4], 10)]).await;
    r.result.unwrap();
    assert_eq!(r.acks, [Some(Lsn(10))]);
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
    let r = ran(strict, vec![upserts(&[5, 6], 10)]).await;
    r.result.unwrap();
    assert_eq!(r.acks, [Some(Lsn(10))]);
    assert!(r.parked.is_empty(), "nothing parked");
    assert!(r.health.ready().is_ok(), "up again once it lands");
}

/// Batches written at once finish out of order (key 1 is slow, the ones after it are not):
/// progress still moves batch by batch, in the order the batches came, and only after each
/// batch and every one before it landed.
#[tokio::test(start_paused = true)]
async fn acks_follow_the_batch_order_when_writes_finish_out_of_order() {
    let batches = vec![upsert(1, 10), upsert(5, 20), upsert(6, 30)];
    let r = ran(Memory::default(), batches).await;
    r.result.unwrap();
    assert_eq!(
        r.sink.flight.lock().unwrap().landed,
        [PointKey::Num(5), PointKey::Num(6), PointKey::Num(1)],
        "the writes did finish out of order (else this test shows nothing)"
    );
    assert_eq!(
        r.acks,
        [Some(Lsn(10)), Some(Lsn(20)), Some(Lsn(30))],
        "acks in batch order"
    );
}

/// Batches in flight never share a point, and a truncate is written alone; batches that share
/// nothing are written at once.
#[tokio::test(start_paused = true)]
async fn batches_in_flight_never_share_a_point_and_a_truncate_runs_alone() {
    let batches = vec![
        upsert(1, 10),
        upsert(5, 20),
        upsert(1, 30),
        upsert(6, 40),
        upsert(1, 50),
        truncate(60),
        upsert(7, 70),
        upsert(1, 80),
        upsert(8, 90),
    ];
    let r = ran(Memory::default(), batches).await;
    r.result.unwrap();
    let f = r.sink.flight.lock().unwrap();
    assert!(f.overlaps.is_empty(), "{:#?}", f.overlaps);
    assert!(
        f.most >= 2,
        "disjoint batches were written at once: {}",
        f.most
    );
    let acks: Vec<u64> = r.acks.iter().map(|a| a.unwrap().as_u64()).collect();
    assert_eq!(acks, [10, 20, 30, 40, 50, 60, 70, 80, 90]);
}
