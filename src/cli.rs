//! Command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "pg2qdrant",
    version,
    about = "Stream PostgreSQL changes into Qdrant"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream changes until SIGINT/SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Consume the change events of `[kafka]` as one member of its consumer group and write
    /// them into Qdrant, until SIGINT/SIGTERM (start several to share the partitions).
    Apply {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config and the live prerequisites; non-zero exit when any check fails.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask the running connector (or its next start) to copy a table again while streaming.
    Resync {
        #[arg(long, short)]
        config: PathBuf,
        /// `schema.table` or `table` (public), one of the config's tables.
        #[arg(long, short)]
        table: String,
    },
    /// Build a new collection behind the table's alias (with the config's settings, e.g. a new
    /// model) while streaming, then switch the alias to it and drop the old one. Creates the
    /// collection and leaves the request for the connector's next start.
    Rebuild {
        #[arg(long, short)]
        config: PathBuf,
        /// `schema.table` or `table` (public): every table writing its alias is rebuilt.
        #[arg(long, short)]
        table: String,
    },
    /// Compare every row with its point; exit 1 on drift, 0 when equal (after --repair: when
    /// everything was fixed).
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this table (default: every table of the config).
        #[arg(long, short)]
        table: Option<String>,
        /// Upsert missing and stale points, delete orphans (fenced), then verify again.
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The dead-letter file: what is parked, and applying it once the cause is fixed.
    DeadLetter {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Wait until the running connector (`run` with qdrant.direct = true, at the config's
    /// metrics.addr) has every change committed up to LSN durable in Qdrant (read-your-writes:
    /// the app reads the LSN with `SELECT pg_current_wal_insert_lsn()` after its commit). Exit 0 when
    /// it has, 1 on timeout.
    Wait {
        #[arg(long, short)]
        config: PathBuf,
        /// `X/Y`, e.g. `0/16B3748`.
        #[arg(long, value_parser = crate::lsn::parse_lsn)]
        lsn: crate::lsn::Lsn,
        /// How long to wait: `500ms`, `5s`, `2m` (a bare number is seconds).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// The running connector's sync status (asked at the config's metrics.addr): per table the
    /// copy, the last verify, dead letters; lag and readiness. Exit 0 when ready and in sync,
    /// 1 otherwise (or when none is running), so it can gate a deploy.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// Print the status document (JSON) on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print the vector of each TEXT as a JSON array, one per line, computed by a configured
    /// embedder exactly as the connector computes points' vectors (for queries).
    Embed {
        #[arg(long, short)]
        config: PathBuf,
        /// The `[[embedders]]` name (default: the only one).
        #[arg(long, short)]
        embedder: Option<String>,
        /// Print each TEXT's BM25 query vector instead (`{"indices": [...], "values": [...]}`,
        /// for a `sparse_vectors` entry of kind = "bm25"; Qdrant applies the IDF).
        #[arg(long, conflicts_with = "embedder")]
        sparse: bool,
        #[arg(required = true)]
        text: Vec<String>,
    },
}

impl Command {
    /// The config file every command takes.
    pub fn config(&self) -> &std::path::Path {
        match self {
            Command::Run { config }
            | Command::Apply { config }
            | Command::Check { config }
            | Command::Resync { config, .. }
            | Command::Rebuild { config, .. }
            | Command::Verify { config, .. }
            | Command::Embed { config, .. }
            | Command::Wait { config, .. }
            | Command::Status { config, .. } => config,
            Command::DeadLetter { action } => match action {
                DeadLetterAction::List { config, .. } | DeadLetterAction::Replay { config, .. } => {
                    config
                }
            },
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Summarise the records not replayed yet, by table and reason (exit 0 when there are none,
    /// 1 otherwise).
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Re-apply the records of the watched tables whose rows map now (reading each row as it is
    /// now, fenced like every write) and mark them replayed; the rest stay, with today's
    /// reason. Exit 0 when nothing of those tables is left, 1 otherwise.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this table (`schema.table` or `table`).
        #[arg(long, short)]
        table: Option<String>,
    },
}

/// `500ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 500ms, 5s or 2m"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" => n * 60_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s or m)")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("5s").unwrap().as_millis(), 5000);
        assert_eq!(parse_duration("7").unwrap().as_millis(), 7000);
        assert_eq!(parse_duration("2m").unwrap().as_millis(), 120_000);
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
    }
}
