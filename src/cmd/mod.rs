//! One file per command (mini-redis's `cmd/` shape): each defines its arguments (clap `Args`),
//! runs with the loaded configuration, and returns an [`Outcome`]: what it prints on stdout and
//! whether it passed. `main.rs` parses, loads the configuration, dispatches and prints; an error
//! is the caller's to log (exit 2 for a configuration error, 1 for any other).

pub mod apply;
pub mod check;
pub mod dead_letter;
pub mod embed;
pub mod rebuild;
pub mod resync;
pub mod run;
pub mod status;
pub mod verify;
pub mod wait;

use crate::error::Error;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// The configuration file every command takes.
#[derive(Debug, clap::Args)]
pub struct ConfigFile {
    #[arg(long, short)]
    pub config: PathBuf,
}

/// The configuration file and one of its tables (`resync`, `rebuild`).
#[derive(Debug, clap::Args)]
pub struct TableArgs {
    #[command(flatten)]
    pub file: ConfigFile,
    /// `schema.table` or `table` (public), one of the config's tables.
    #[arg(long, short)]
    pub table: String,
}

/// What a command prints on stdout, and whether it passed (exit 0) or not (exit 1).
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub stdout: String,
    pub passed: bool,
}

impl Outcome {
    /// Passed, printing `stdout`.
    pub fn done(stdout: impl Into<String>) -> Self {
        Self::when(true, stdout)
    }

    pub fn when(passed: bool, stdout: impl Into<String>) -> Self {
        Self {
            stdout: stdout.into(),
            passed,
        }
    }

    /// `value` as pretty JSON (`--json`) or as `text` renders it.
    pub fn rendered<T: serde::Serialize>(
        passed: bool,
        value: &T,
        json: bool,
        text: impl FnOnce(&T) -> String,
    ) -> Self {
        let stdout = if json {
            let mut s = serde_json::to_string_pretty(value).expect("reports serialize");
            s.push('\n');
            s
        } else {
            text(value)
        };
        Self::when(passed, stdout)
    }
}

/// Runs a long-running mode until it ends or SIGTERM/SIGINT asks it to stop (then waits for
/// its clean stop).
pub async fn until_signal<F, Fut>(mode: F) -> Result<Outcome, Error>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let shutdown = CancellationToken::new();
    let running = mode(shutdown.clone());
    tokio::pin!(running);
    tokio::select! {
        r = &mut running => return r.map(|()| Outcome::done("")),
        () = signals() => shutdown.cancel(),
    }
    running.await.map(|()| Outcome::done(""))
}

/// Resolves at the first SIGTERM or SIGINT.
async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutdown requested");
}
