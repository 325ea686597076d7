use clap::Parser;
use pg2qdrant::cli::{Cli, Command, DeadLetterAction};
use pg2qdrant::{Config, Error};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

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
        let cfg = match loaded {
            Ok(c) => c,
            // `check` reports a config that does not load as its first failed line.
            Err(e) if matches!(cli.command, Command::Check { .. }) => {
                println!("FAIL config: {e}");
                return ExitCode::from(1);
            }
            Err(e) => return fail(e),
        };
        match dispatch(cli.command, &cfg).await {
            Ok(code) => code,
            Err(e) => fail(e),
        }
    })
}

/// Runs the command; `Ok` carries its exit code (a check or a verify may pass or not).
async fn dispatch(command: Command, cfg: &Config) -> Result<ExitCode, Error> {
    let passed = |ok: bool| {
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    };
    match command {
        Command::Run { .. } => until_signal(|stop| pg2qdrant::run(cfg.clone(), stop)).await,
        Command::Apply { .. } => {
            until_signal(|stop| pg2qdrant::apply::run(cfg.clone(), stop)).await
        }
        Command::Check { .. } => {
            let lines = pg2qdrant::check::run(cfg).await;
            for l in &lines {
                let state = if l.ok { "ok  " } else { "FAIL" };
                println!("{state} {}: {}", l.what, l.detail);
            }
            Ok(passed(lines.iter().all(|l| l.ok)))
        }
        Command::Resync { table, .. } => {
            let lsn = pg2qdrant::snapshot::request_resync(cfg, &table).await?;
            println!("resync of {table} requested at {lsn}: the running connector copies it again while streaming (or its next start does)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild { table, .. } => {
            let r = pg2qdrant::rebuild::request(cfg, &table).await?;
            println!(
                "created collection {} for alias {} (tables {}). Start the connector with this config (restart it if it runs): it copies into {} while streaming into both, then points {} at it and drops {}. Searches through the alias use {} until then.",
                r.rebuild.target, r.alias, r.rebuild.tables.join(", "), r.rebuild.target, r.alias, r.rebuild.old, r.rebuild.old
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            table,
            repair,
            json,
            ..
        } => {
            let reports = pg2qdrant::verify::run(cfg, table.as_deref(), repair).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).expect("report serializes")
                );
            } else {
                reports.iter().for_each(print_report);
            }
            Ok(passed(reports.iter().all(|r| r.drift() == 0)))
        }
        Command::DeadLetter { action } => dead_letter(cfg, action).await,
        Command::Wait { lsn, timeout, .. } => {
            use pg2qdrant::metrics::client::{wait, Waited};
            Ok(match wait(cfg, lsn, timeout).await? {
                Waited::Reached(d) => {
                    println!("durable at {d}: every change committed up to {lsn} is in Qdrant");
                    ExitCode::SUCCESS
                }
                Waited::TimedOut(d) => {
                    println!("timed out after {timeout:?}: durable at {d}, not yet at {lsn}");
                    ExitCode::from(1)
                }
            })
        }
        Command::Status { json, .. } => {
            let status = pg2qdrant::metrics::client::status(cfg).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).expect("status serializes")
                );
            } else {
                print!("{}", status.render());
            }
            Ok(passed(status.in_sync))
        }
        Command::Embed {
            sparse: true, text, ..
        } => {
            for t in &text {
                let q = pg2qdrant::mapping::bm25::Bm25::query(t);
                let v = serde_json::json!({"indices": q.indices, "values": q.values});
                println!("{v}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Embed { embedder, text, .. } => {
            for v in pg2qdrant::embed::embed_texts(cfg, embedder.as_deref(), &text).await? {
                println!("{}", serde_json::to_string(&v).expect("floats serialize"));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs a long-running mode until it ends or SIGTERM/SIGINT asks it to stop.
async fn until_signal<F, Fut>(mode: F) -> Result<ExitCode, Error>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let shutdown = CancellationToken::new();
    let running = mode(shutdown.clone());
    tokio::pin!(running);
    tokio::select! {
        r = &mut running => return r.map(|()| ExitCode::SUCCESS),
        () = signals() => shutdown.cancel(),
    }
    running.await.map(|()| ExitCode::SUCCESS)
}

async fn dead_letter(cfg: &Config, action: DeadLetterAction) -> Result<ExitCode, Error> {
    match action {
        DeadLetterAction::List { json, .. } => {
            let groups = pg2qdrant::deadletter::parked::list(cfg)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&groups).expect("groups serialize")
                );
            } else if groups.is_empty() {
                println!(
                    "no dead letters pending in {}",
                    cfg.dead_letter.path.display()
                );
            } else {
                for g in &groups {
                    println!(
                        "{} × {}: {} (LSN {} … {})",
                        g.count, g.table, g.reason, g.first_lsn, g.last_lsn
                    );
                    let keys: Vec<String> = g.samples.iter().map(|k| k.to_string()).collect();
                    let more = if g.count > keys.len() { ", …" } else { "" };
                    println!("  keys: {}{more}", keys.join(", "));
                    if let Some(h) = &g.hint {
                        println!("  {h}");
                    }
                }
            }
            Ok(if groups.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DeadLetterAction::Replay { table, .. } => {
            let done = pg2qdrant::verify::replay::replay(cfg, table.as_deref()).await?;
            if done.is_empty() {
                println!("nothing to replay for the config's tables");
            }
            let mut left = 0;
            for r in &done {
                println!(
                    "{}: {} replayed, {} still failing, {} without a key",
                    r.table,
                    r.applied,
                    r.still_failing.len(),
                    r.without_key
                );
                for (key, reason) in r.still_failing.iter().take(10) {
                    println!("  {key}: {reason}");
                }
                left += r.still_failing.len() + r.without_key;
            }
            Ok(if left == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn print_report(r: &pg2qdrant::verify::TableReport) {
    let state = if r.drift() == 0 { "in sync" } else { "DRIFT" };
    println!(
        "{} → {}: {state}: {} rows, {} points; missing {}, orphaned {}, stale {}; {} changed during the check (skipped), {} unmappable (dead-lettered by the connector){}",
        r.table,
        r.collection,
        r.rows,
        r.points,
        r.missing,
        r.orphaned,
        r.stale,
        r.skipped_changed,
        r.unmappable,
        if r.repaired > 0 { format!("; repaired {} before this check", r.repaired) } else { String::new() }
    );
    for (kind, keys) in [
        ("missing", &r.missing_keys),
        ("orphaned", &r.orphaned_keys),
        ("stale", &r.stale_keys),
    ] {
        if !keys.is_empty() {
            let shown: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            println!("  {kind} (up to 10): {}", shown.join(" "));
        }
    }
    if r.lagging {
        println!(
            "  note: the connector had not caught up; counts may include changes not applied yet"
        );
    }
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
