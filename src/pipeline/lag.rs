//! End-to-end lag in seconds: from a transaction's commit in PostgreSQL to the moment its
//! changes are durable in every sink (the moment its end LSN may be acknowledged).
//!
//! The replication loop notes each commit it reads (end LSN, commit time); durable progress
//! takes every noted commit up to the acknowledged LSN off the front, observing each one's lag in
//! the histogram. The gauge is the age of the oldest commit read but not yet durable, or 0 when
//! everything read is durable: it grows while a sink is down (nothing becomes durable) and drops
//! back when it recovers. Idle watched tables do not make it lie: nothing is pending, and the
//! heartbeat (`pipeline::heartbeat`) keeps a recent commit flowing through the stream.
//!
//! What the gauge cannot see is WAL the stream has not delivered yet (the loop stops reading
//! while the writer is full): that is `pg2qdrant_replication_lag_bytes`, sampled from the server.

use crate::lsn::{Lsn, PG_EPOCH_UNIX_MICROS};
use crate::metrics::names;
use std::collections::VecDeque;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct LagClock {
    /// Commits read and not yet durable, in stream order: (end LSN, commit time in Unix µs).
    pending: Mutex<VecDeque<(Lsn, i64)>>,
    /// WAL bytes behind at the sampler's last sample, plus one (0: not sampled yet).
    bytes: std::sync::atomic::AtomicU64,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl LagClock {
    /// The stream read a commit (`commit_time`: PostgreSQL's, µs since 2000-01-01).
    pub fn committed(&self, end: Lsn, commit_time: i64) {
        let mut p = self.pending.lock().expect("lag lock");
        // A reconnect replays from the durable position: a commit noted before comes again.
        if p.back().is_some_and(|(last, _)| *last >= end) {
            return;
        }
        p.push_back((end, commit_time + PG_EPOCH_UNIX_MICROS));
    }

    /// Everything up to `acked` is durable in every sink.
    pub fn durable(&self, acked: Lsn) {
        let now = now_micros();
        let mut p = self.pending.lock().expect("lag lock");
        while let Some(&(end, at)) = p.front() {
            if end > acked {
                break;
            }
            p.pop_front();
            metrics::histogram!(names::COMMIT_TO_DURABLE).record(seconds(now - at));
        }
        drop(p);
        metrics::gauge!(names::LAG_SECONDS).set(self.seconds_behind());
    }

    /// The sampler measured `bytes` of WAL between the server's position and the durable one.
    pub fn sampled_bytes(&self, bytes: u64) {
        self.bytes.store(
            bytes.saturating_add(1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The last [`LagClock::sampled_bytes`], if any.
    pub fn bytes_behind(&self) -> Option<u64> {
        let b = self.bytes.load(std::sync::atomic::Ordering::Relaxed);
        b.checked_sub(1)
    }

    /// The age of the oldest commit read and not yet durable; 0 when there is none.
    pub fn seconds_behind(&self) -> f64 {
        let p = self.pending.lock().expect("lag lock");
        p.front().map_or(0.0, |&(_, at)| age_seconds(at))
    }
}

/// Seconds since `unix_micros` (0 for a time in the future): the age of a commit.
pub fn age_seconds(unix_micros: i64) -> f64 {
    seconds(now_micros() - unix_micros)
}

fn seconds(micros: i64) -> f64 {
    micros.max(0) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_commits_age_and_durable_ones_leave() {
        let c = LagClock::default();
        assert_eq!(c.seconds_behind(), 0.0);
        // Committed 10 s ago (in PostgreSQL's epoch).
        let ten_s_ago = now_micros() - PG_EPOCH_UNIX_MICROS - 10_000_000;
        c.committed(Lsn(100), ten_s_ago);
        c.committed(Lsn(200), ten_s_ago + 5_000_000);
        c.committed(Lsn(150), ten_s_ago); // a replay after a reconnect: ignored
        let behind = c.seconds_behind();
        assert!((9.0..60.0).contains(&behind), "{behind}");
        c.durable(Lsn(120));
        let behind = c.seconds_behind();
        assert!((4.0..9.0).contains(&behind), "{behind}");
        c.durable(Lsn(200));
        assert_eq!(c.seconds_behind(), 0.0);
    }
}
