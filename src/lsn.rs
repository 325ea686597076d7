//! Log positions.
//!
//! [`Lsn`] is PostgreSQL's WAL position (printed `X/Y`); we reuse the replication crate's type so
//! the value handed to the slot is the value we checkpoint. [`Position`] orders individual changes:
//! the commit LSN of the transaction that made the change, then the change's ordinal inside that
//! transaction. Every change of a later-committed transaction sorts after every change of an
//! earlier one, which is what the Qdrant write fence compares (see `sink::qdrant::fence`).

pub use pgwire_replication::Lsn;

/// Where a change sits in the commit order: `(commit LSN, ordinal within the transaction)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub commit_lsn: u64,
    pub seq: u64,
}

impl Position {
    pub fn new(commit_lsn: Lsn, seq: u64) -> Self {
        Self {
            commit_lsn: commit_lsn.as_u64(),
            seq,
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", Lsn(self.commit_lsn), self.seq)
    }
}

/// PostgreSQL epoch (2000-01-01) in unix microseconds.
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A commit's LSN as PostgreSQL writes it (`0/16B3748`) and its time (PostgreSQL's µs since
/// 2000-01-01) as RFC 3339 (UTC, µs; empty when out of range). The rows of one transaction share
/// them, so the last commit's texts are kept (per thread) and formatted again only when the
/// commit changes: a hit returns exactly what formatting would.
pub fn commit_texts(
    commit_lsn: u64,
    commit_time_micros: i64,
) -> (std::sync::Arc<str>, std::sync::Arc<str>) {
    use std::sync::Arc;
    type Texts = (u64, i64, Arc<str>, Arc<str>);
    thread_local! {
        static LAST: std::cell::RefCell<Option<Texts>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((l, t, lsn, time)) if *l == commit_lsn && *t == commit_time_micros => {
                (lsn.clone(), time.clone())
            }
            _ => {
                let unix_micros = commit_time_micros.saturating_add(PG_EPOCH_UNIX_MICROS);
                let time: Arc<str> = chrono::DateTime::from_timestamp_micros(unix_micros)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .unwrap_or_default()
                    .into();
                let lsn: Arc<str> = Lsn(commit_lsn).to_string().into();
                *last = Some((commit_lsn, commit_time_micros, lsn.clone(), time.clone()));
                (lsn, time)
            }
        }
    })
}

/// Parses `X/Y` into an [`Lsn`], naming what was wrong.
pub fn parse_lsn(s: &str) -> Result<Lsn, String> {
    Lsn::parse(s.trim()).map_err(|e| format!("invalid LSN {s:?} (expected hex X/Y): {}", e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_commit_sorts_after_any_earlier_seq() {
        let a = Position::new(Lsn(100), 9_999);
        let b = Position::new(Lsn(101), 0);
        assert!(a < b);
        assert!(Position::new(Lsn(100), 1) < Position::new(Lsn(100), 2));
    }

    #[test]
    fn lsn_text_round_trips() {
        let l = parse_lsn("16/B374D848").unwrap();
        assert_eq!(l.to_string(), "16/B374D848");
        assert!(parse_lsn("nope").is_err());
    }
}
