//! The binary: parse the command line, load the configuration (its log format sets up the
//! log), run the command, print what it prints, exit with its status.

use clap::Parser;
use pg2qdrant::cli::Cli;
use pg2qdrant::Error;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: allocation and free were a quarter of the connector's
/// CPU per row in the profile (many small payload values per row, freed on another thread).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Loaded once: its log format sets up the log (a config that does not load is reported in
    // text, by the command below).
    let loaded = pg2qdrant::config::load(cli.command.config());
    let format = loaded.as_ref().map(|c| c.log.format).unwrap_or_default();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PG2QDRANT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        pg2qdrant::config::LogFormat::Json => logs.json().init(),
        pg2qdrant::config::LogFormat::Text => logs.init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let outcome = match loaded {
            Ok(cfg) => cli.command.execute(&cfg).await,
            Err(e) => cli.command.unloadable(e),
        };
        match outcome {
            Ok(o) => {
                print!("{}", o.stdout);
                if o.passed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => fail(e),
        }
    })
}

fn fail(e: Error) -> ExitCode {
    match e.hint() {
        Some(h) => tracing::error!(hint = h, "{e}"),
        None => tracing::error!("{e}"),
    }
    match e {
        Error::Config { .. } => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}
