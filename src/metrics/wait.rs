//! Read-your-writes: `GET /wait?lsn=X/Y&timeout_ms=N` answers once every sink holds everything
//! committed up to `X/Y`.
//!
//! # What the answer promises, and why it holds
//!
//! The app commits, then asks its own connection `SELECT pg_current_wal_insert_lsn()`: a
//! position at or after the end of its commit record. (Not `pg_current_wal_lsn()`: that is the
//! position written out of the WAL buffers, which under `synchronous_commit = off` can still be
//! before the commit the app just made; a wait on it would answer before the row is there.
//! Measured: the tests run PostgreSQL with `synchronous_commit = off` and saw exactly that.) The writer moves the durable position (the same watch
//! that feeds the slot's feedback and the checkpoint) only to a transaction's end LSN after that
//! transaction and every earlier one are in Qdrant (and delivered to Kafka, when publishing), so
//! `durable >= X` means every change committed before `X` that the connector watches is durable:
//! a search right after the 200 finds the row (Qdrant writes with `wait = true`).
//!
//! The app's `X` is usually past its own commit: other transactions (other tables, other
//! databases) wrote WAL before the function read the position. The durable position still gets
//! there without anything written for the waiter: pgoutput sends nothing for those
//! transactions, but the server's walsender, once caught up, sends a keepalive carrying how far it
//! has read whenever our reported flush position is behind it (PostgreSQL does this for
//! synchronous standbys), and the replication loop turns a keepalive that arrives with nothing
//! in flight into a durable position of its own (see `pipeline::assemble`). So an idle connector
//! reaches any `X` the server has read within about one `status_interval_ms`, and the heartbeat
//! covers the rest. (The walsender reads only flushed WAL: under `synchronous_commit = off` add
//! the WAL writer's delay, `wal_writer_delay`, 200 ms by default.)
//!
//! # Cost
//!
//! A waiter is a task parked on a clone of that watch: no poll, no query, nothing while nothing
//! moves; each durable step wakes the waiters once and each compares one number. At most
//! `metrics.max_waiters` wait at once; past that the answer is 503 at once, so a stampede cannot
//! grow memory.
//!
//! # Where it is served
//!
//! Only by `run` with `qdrant.direct = true`. With `direct = false` the durable position means
//! "delivered to Kafka", and no single applier knows when every partition up to `X` is in
//! Qdrant; those processes answer 501 saying so, rather than a 200 that would not hold.

use crate::lsn::{parse_lsn, Lsn};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Without `timeout_ms`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `timeout_ms` accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// What `/wait` waits on.
#[derive(Clone)]
pub struct Waiters(Served);

#[derive(Clone)]
enum Served {
    Yes {
        durable: watch::Receiver<Lsn>,
        slots: Arc<Semaphore>,
        max: usize,
    },
    /// Why this process cannot promise read-your-writes.
    No(&'static str),
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Durable at or past the target (the durable position when answered).
    Reached(Lsn),
    /// The timeout passed first (the durable position then).
    TimedOut(Lsn),
    /// `max_waiters` (this many) wait already.
    Full(usize),
    /// The writer ended (the process is stopping) before the target.
    Stopping(Lsn),
    /// This process does not serve `/wait`: why.
    NotServed(&'static str),
}

impl Waiters {
    /// Waits on `durable`, at most `max` at once.
    pub fn new(durable: watch::Receiver<Lsn>, max: usize) -> Self {
        Waiters(Served::Yes {
            durable,
            slots: Arc::new(Semaphore::new(max)),
            max,
        })
    }

    /// This process cannot promise read-your-writes; `why` says where it is served.
    pub fn not_served(why: &'static str) -> Self {
        Waiters(Served::No(why))
    }

    /// Waits until everything committed up to `target` is durable, or `timeout`.
    pub async fn wait(&self, target: Lsn, timeout: Duration) -> Answer {
        let (durable, slots, max) = match &self.0 {
            Served::Yes {
                durable,
                slots,
                max,
            } => (durable, slots, *max),
            Served::No(why) => return Answer::NotServed(why),
        };
        let Ok(_slot) = slots.clone().try_acquire_owned() else {
            return Answer::Full(max);
        };
        // Counted while this future lives: a waiter whose client went away is dropped mid-wait.
        struct Counted;
        impl Drop for Counted {
            fn drop(&mut self) {
                metrics::gauge!(super::names::WAITERS).decrement(1.0);
            }
        }
        metrics::gauge!(super::names::WAITERS).increment(1.0);
        let _counted = Counted;
        let mut durable = durable.clone();
        let reached = async { durable.wait_for(|d| *d >= target).await.map(|d| *d) };
        let waited = tokio::time::timeout(timeout, reached).await;
        match waited {
            Ok(Ok(reached)) => Answer::Reached(reached),
            Ok(Err(_)) => Answer::Stopping(*durable.borrow()),
            Err(_) => Answer::TimedOut(*durable.borrow()),
        }
    }
}

/// Reads `lsn` (required, `X/Y`; `%2F` for the slash is accepted) and `timeout_ms` (default
/// [`DEFAULT_TIMEOUT`], at most [`MAX_TIMEOUT`]) from a query string, naming the parameter
/// that is wrong.
pub fn parse_query(query: &str) -> Result<(Lsn, Duration), String> {
    let (mut lsn, mut timeout) = (None, DEFAULT_TIMEOUT);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "lsn" => {
                let v = v.replace("%2F", "/").replace("%2f", "/");
                lsn = Some(parse_lsn(&v).map_err(|e| format!("lsn: {e}"))?);
            }
            "timeout_ms" => {
                let ms: u64 = v.parse().map_err(|_| {
                    format!("timeout_ms: {v:?} is not a whole number of milliseconds")
                })?;
                timeout = Duration::from_millis(ms);
                if timeout > MAX_TIMEOUT {
                    return Err(format!(
                        "timeout_ms: {ms} is more than the most accepted, {}",
                        MAX_TIMEOUT.as_millis()
                    ));
                }
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (expected lsn and timeout_ms)"
                ))
            }
        }
    }
    let lsn = lsn.ok_or("lsn: missing (e.g. /wait?lsn=0/16B3748&timeout_ms=5000; the app reads it with SELECT pg_current_wal_insert_lsn() after its commit)")?;
    Ok((lsn, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_the_wrong_parameter() {
        assert_eq!(
            parse_query("lsn=0/16B3748&timeout_ms=250").unwrap(),
            (Lsn(0x16B3748), Duration::from_millis(250))
        );
        assert_eq!(
            parse_query("lsn=1%2F0").unwrap(),
            (Lsn(1 << 32), DEFAULT_TIMEOUT)
        );
        assert!(parse_query("timeout_ms=5")
            .unwrap_err()
            .starts_with("lsn: missing"));
        assert!(parse_query("lsn=zz")
            .unwrap_err()
            .starts_with("lsn: invalid LSN"));
        assert!(parse_query("lsn=0/1&timeout_ms=-1")
            .unwrap_err()
            .starts_with("timeout_ms:"));
        assert!(parse_query("lsn=0/1&timeout_ms=600001")
            .unwrap_err()
            .contains("most accepted"));
        assert!(parse_query("lsn=0/1&x=1").unwrap_err().contains("\"x\""));
    }

    #[tokio::test]
    async fn waiters_are_answered_when_durable_passes_them_and_bounded() {
        let (tx, rx) = watch::channel(Lsn(10));
        let w = Waiters::new(rx, 2);
        assert_eq!(
            w.wait(Lsn(10), Duration::ZERO).await,
            Answer::Reached(Lsn(10))
        );
        let (a, b) = (w.clone(), w.clone());
        let first = tokio::spawn(async move { a.wait(Lsn(20), Duration::from_secs(60)).await });
        let second = tokio::spawn(async move { b.wait(Lsn(30), Duration::from_secs(60)).await });
        // Both hold their slot before the third asks (a watch wait, not a poll).
        while w.clone().slots_free() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(w.wait(Lsn(1), Duration::ZERO).await, Answer::Full(2));
        tx.send_replace(Lsn(25));
        assert_eq!(first.await.unwrap(), Answer::Reached(Lsn(25)));
        assert!(!second.is_finished());
        drop(tx);
        assert_eq!(second.await.unwrap(), Answer::Stopping(Lsn(25)));
        assert_eq!(
            w.wait(Lsn(26), Duration::from_millis(1)).await,
            Answer::Stopping(Lsn(25))
        );
        let (_tx, rx) = watch::channel(Lsn(10));
        assert_eq!(
            Waiters::new(rx, 1)
                .wait(Lsn(11), Duration::from_millis(1))
                .await,
            Answer::TimedOut(Lsn(10))
        );
    }

    impl Waiters {
        fn slots_free(self) -> usize {
            match self.0 {
                Served::Yes { slots, .. } => slots.available_permits(),
                Served::No(_) => 0,
            }
        }
    }
}
