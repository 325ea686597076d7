//! `pg2qdrant wait`: read-your-writes from the shell; passes once everything committed up to an
//! LSN is in Qdrant.

use super::{ConfigFile, Outcome};
use crate::config::Config;
use crate::error::Error;
use crate::metrics::client::Waited;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub file: ConfigFile,
    /// `X/Y`, e.g. `0/16B3748`.
    #[arg(long, value_parser = crate::lsn::parse_lsn)]
    pub lsn: crate::lsn::Lsn,
    /// How long to wait: `500ms`, `5s`, `2m` (a bare number is seconds).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

impl Args {
    pub async fn execute(self, cfg: &Config) -> Result<Outcome, Error> {
        let (lsn, timeout) = (self.lsn, self.timeout);
        Ok(
            match crate::metrics::client::wait(&cfg.metrics, lsn, timeout).await? {
                Waited::Reached(d) => Outcome::done(format!(
                    "durable at {d}: every change committed up to {lsn} is in Qdrant\n"
                )),
                Waited::TimedOut(d) => Outcome::when(
                    false,
                    format!("timed out after {timeout:?}: durable at {d}, not yet at {lsn}\n"),
                ),
            },
        )
    }
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
