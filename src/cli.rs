//! Command line: the commands and their dispatch (each command's own file is under `cmd/`).

use crate::cmd::{self, ConfigFile, Outcome, TableArgs};
use crate::config::Config;
use crate::error::Error;
use clap::{Parser, Subcommand};

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

/// The commands; each one's arguments and what it does live in its own file under `cmd/`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream changes until SIGINT/SIGTERM.
    Run(ConfigFile),
    /// Consume the change events of `[kafka]` as one member of its consumer group and write
    /// them into Qdrant, until SIGINT/SIGTERM (start several to share the partitions).
    Apply(ConfigFile),
    /// Validate the config and the live prerequisites; non-zero exit when any check fails.
    Check(ConfigFile),
    /// Ask the running connector (or its next start) to copy a table again while streaming.
    Resync(cmd::resync::Args),
    /// Build a new collection behind the table's alias (with the config's settings, e.g. a new
    /// model) while streaming, then switch the alias to it and drop the old one. Creates the
    /// collection and leaves the request for the connector's next start. Every table writing the
    /// alias of the table named is rebuilt.
    Rebuild(TableArgs),
    /// Compare every row with its point; exit 1 on drift, 0 when equal (after --repair: when
    /// everything was fixed).
    Verify(cmd::verify::Args),
    /// The dead-letter file: what is parked, and applying it once the cause is fixed.
    #[command(subcommand)]
    DeadLetter(cmd::dead_letter::Action),
    /// Wait until the running connector (`run` with qdrant.direct = true, at the config's
    /// metrics.addr) has every change committed up to LSN durable in Qdrant (read-your-writes:
    /// the app reads the LSN with `SELECT pg_current_wal_insert_lsn()` after its commit). Exit 0 when
    /// it has, 1 on timeout.
    Wait(cmd::wait::Args),
    /// The running connector's sync status (asked at the config's metrics.addr): per table the
    /// copy, the last verify, dead letters; lag and readiness. Exit 0 when ready and in sync,
    /// 1 otherwise (or when none is running), so it can gate a deploy.
    Status(cmd::status::Args),
    /// Print the vector of each TEXT as a JSON array, one per line, computed by a configured
    /// embedder exactly as the connector computes points' vectors (for queries).
    Embed(cmd::embed::Args),
}

impl Command {
    /// The config file every command takes.
    pub fn config(&self) -> &std::path::Path {
        let file = match self {
            Command::Run(file) | Command::Apply(file) | Command::Check(file) => file,
            Command::Resync(a) => &a.target.file,
            Command::Rebuild(a) => &a.file,
            Command::Verify(a) => &a.file,
            Command::DeadLetter(a) => a.file(),
            Command::Wait(a) => &a.file,
            Command::Status(a) => &a.file,
            Command::Embed(a) => &a.file,
        };
        &file.config
    }

    /// Runs the command with its loaded configuration.
    pub async fn execute(self, cfg: &Config) -> Result<Outcome, Error> {
        match self {
            Command::Run(_) => cmd::run::execute(cfg).await,
            Command::Apply(_) => cmd::apply::execute(cfg).await,
            Command::Check(_) => cmd::check::execute(cfg).await,
            Command::Resync(a) => cmd::resync::execute(a, cfg).await,
            Command::Rebuild(a) => cmd::rebuild::execute(a, cfg).await,
            Command::Verify(a) => a.execute(cfg).await,
            Command::DeadLetter(a) => a.execute(cfg).await,
            Command::Wait(a) => a.execute(cfg).await,
            Command::Status(a) => a.execute(cfg).await,
            Command::Embed(a) => a.execute(cfg).await,
        }
    }

    /// What the command reports when its configuration does not load: `check` reports it as
    /// its first failed line; every other command fails with the error.
    pub fn unloadable(&self, e: Error) -> Result<Outcome, Error> {
        match self {
            Command::Check(_) => Ok(cmd::check::unloadable(&e)),
            _ => Err(e),
        }
    }
}
