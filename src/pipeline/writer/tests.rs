//! The writer's ordering, conflict-set and ack rules on an in-memory destination (no services).

use super::*;
use crate::event::{Op, PointKey};
use crate::pipeline::fixtures::{empty, merge, truncate, upsert};
use std::collections::HashSet;
use std::sync::Mutex;

/// A destination in memory: batches with key 1 land after a pause (so later batches are taken
/// while they are in flight), batches with key 2 fail for good, the rest land at once. It
/// watches the batches in flight: what each touches, the most at once, and every overlap the
/// writer's rules forbid.
#[derive(Default)]
struct Memory {
    flight: Mutex<Flight>,
}

#[derive(Default)]
struct Flight {
    /// The keys of each write in flight (`None`: a truncate or a merge, which must be alone).
    now: Vec<Option<HashSet<PointKey>>>,
    most: usize,
    overlaps: Vec<String>,
    /// Keys in the order their writes landed.
    landed: Vec<PointKey>,
    /// Batches handed to the destination.
    calls: usize,
}

impl Memory {
    fn enter(&self, ops: &[Op]) -> Option<HashSet<PointKey>> {
        // A truncate or a TOAST merge must be alone: it stands for every key.
        let keys: Option<HashSet<PointKey>> = ops
            .iter()
            .map(|o| match o {
                Op::Merge { .. } => None,
                _ => o.row_key().cloned(),
            })
            .collect();
        let mut f = self.flight.lock().unwrap();
        f.calls += 1;
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

impl Destination for Memory {
    async fn land(&self, batch: Batch) -> Result<(), Error> {
        let keys = self.enter(&batch.ops);
        let landed = Self::write(&batch.ops).await;
        self.leave(&keys, &batch.ops);
        landed
    }
}

impl Memory {
    async fn write(ops: &[Op]) -> Result<(), Error> {
        if ops.iter().any(|o| o.row_key() == Some(&PointKey::Num(1))) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if ops.iter().any(|o| o.row_key() == Some(&PointKey::Num(2))) {
            return Err(Error::prerequisite("the collection is gone", "test"));
        }
        Ok(())
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

/// One writer run over `batches` into a [`Memory`].
struct Ran {
    result: Result<(), Error>,
    /// Each batch's ack as progress was told it, and how often progress was flushed.
    acks: Vec<Option<Lsn>>,
    flushes: usize,
    destination: Arc<Memory>,
}

async fn ran(batches: Vec<Batch>) -> Ran {
    let (tx, rx) = mpsc::channel(batches.len().max(1));
    for b in batches {
        tx.send(b).await.unwrap();
    }
    drop(tx);
    let progress = Recorded::default();
    let w = Writer {
        destination: Arc::new(Memory::default()),
        pending: Pending::default(),
        parallel: 3,
    };
    let destination = w.destination.clone();
    let result = w.run(rx, progress.clone()).await;
    let (acks, flushes) = progress.0.lock().unwrap().clone();
    Ran {
        result,
        acks,
        flushes,
        destination,
    }
}

/// A batch that must wait for one in flight (same point) finds an earlier one failed: the
/// writer ends with that error, nothing after it is acknowledged, and what was durable
/// before it is still flushed to the checkpoint.
#[tokio::test(start_paused = true)]
async fn a_failure_met_while_draining_for_a_conflict_still_flushes_what_was_durable() {
    // 1 in flight (slow), 2 in flight (refused), then 2 again: it waits for both.
    let batches = vec![upsert(1, 10), upsert(2, 20), upsert(2, 30)];
    let r = ran(batches).await;
    assert!(
        matches!(r.result, Err(Error::Prerequisite { .. })),
        "{:?}",
        r.result
    );
    assert_eq!(r.acks, [Some(Lsn(10))], "only the batch before the failure");
    assert_eq!(r.flushes, 1, "flushed on the way out");
}

/// Batches written at once finish out of order (key 1 is slow, the ones after it are not):
/// progress still moves batch by batch, in the order the batches came, and only after each
/// batch and every one before it landed.
#[tokio::test(start_paused = true)]
async fn acks_follow_the_batch_order_when_writes_finish_out_of_order() {
    let batches = vec![upsert(1, 10), upsert(5, 20), upsert(6, 30)];
    let r = ran(batches).await;
    r.result.unwrap();
    assert_eq!(
        r.destination.flight.lock().unwrap().landed,
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
    let r = ran(batches).await;
    r.result.unwrap();
    let f = r.destination.flight.lock().unwrap();
    assert!(f.overlaps.is_empty(), "{:#?}", f.overlaps);
    assert!(
        f.most >= 2,
        "disjoint batches were written at once: {}",
        f.most
    );
    let acks: Vec<u64> = r.acks.iter().map(|a| a.unwrap().as_u64()).collect();
    assert_eq!(acks, [10, 20, 30, 40, 50, 60, 70, 80, 90]);
}

/// A TOAST merge (which may read the source) is written alone too: batches before it land
/// first, batches after it wait.
#[tokio::test(start_paused = true)]
async fn a_toast_merge_runs_alone() {
    let batches = vec![
        upsert(1, 10),
        upsert(5, 20),
        merge(6, 30),
        upsert(7, 40),
        upsert(8, 50),
    ];
    let r = ran(batches).await;
    r.result.unwrap();
    let f = r.destination.flight.lock().unwrap();
    assert!(f.overlaps.is_empty(), "{:#?}", f.overlaps);
    assert!(f.most >= 2, "disjoint batches were written at once");
    let acks: Vec<u64> = r.acks.iter().map(|a| a.unwrap().as_u64()).collect();
    assert_eq!(acks, [10, 20, 30, 40, 50]);
}

/// A batch with nothing to write is acknowledged without a call to the destination, in its
/// place in the order (after a slow batch before it); a batch without an ack (an applier's)
/// is still told, as `None`, in its place.
#[tokio::test(start_paused = true)]
async fn an_empty_batch_is_acked_in_order_without_a_write_and_a_batch_without_ack_is_told_as_none()
{
    let mut unacked = upsert(5, 30);
    unacked.ack = None;
    let r = ran(vec![upsert(1, 10), empty(20), unacked, empty(40)]).await;
    r.result.unwrap();
    assert_eq!(
        r.destination.flight.lock().unwrap().calls,
        2,
        "only the batches with ops"
    );
    assert_eq!(r.acks, [Some(Lsn(10)), Some(Lsn(20)), None, Some(Lsn(40))]);
}
