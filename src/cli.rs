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
    /// Validate the config and the live prerequisites; non-zero exit when any check fails.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}
