use clap::Parser;
use pg2qdrant::cli::{Cli, Command, DeadLetterAction};
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
        match cli.command {
            Command::Run { .. } => {
                let cfg = match loaded {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
                let shutdown = CancellationToken::new();
                tokio::spawn(signals(shutdown.clone()));
                match pg2qdrant::run(cfg, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                }
            }
            Command::Apply { .. } => {
                let cfg = match loaded {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
                let shutdown = CancellationToken::new();
                tokio::spawn(signals(shutdown.clone()));
                match pg2qdrant::kafka::apply::run(cfg, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                }
            }
            Command::Check { .. } => {
                let cfg = match loaded {
                    Ok(c) => c,
                    Err(e) => {
                        println!("FAIL config: {e}");
                        return ExitCode::from(1);
                    }
                };
                let lines = pg2qdrant::check::run(&cfg).await;
                for l in &lines {
                    println!(
                        "{} {}: {}",
                        if l.ok { "ok  " } else { "FAIL" },
                        l.what,
                        l.detail
                    );
                }
                if lines.iter().all(|l| l.ok) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Command::Resync { table, .. } => {
                let cfg = match loaded {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
                match pg2qdrant::snapshot::request_resync(&cfg, &table).await {
                    Ok(lsn) => {
                        println!("resync of {table} requested at {lsn}: the running connector copies it again while streaming (or its next start does)");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                }
            }
            Command::Rebuild { table, .. } => {
                let cfg = match loaded {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
                match pg2qdrant::rebuild::request(&cfg, &table).await {
                    Ok(r) => {
                        println!(
                            "created collection {} for alias {} (tables {}). Start the connector with this config (restart it if it runs): it copies into {} while streaming into both, then points {} at it and drops {}. Searches through the alias use {} until then.",
                            r.rebuild.target, r.alias, r.rebuild.tables.join(", "), r.rebuild.target, r.alias, r.rebuild.old, r.rebuild.old
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                }
            }
            Command::Verify {
                table,
                repair,
                json,
                ..
            } => {
                let cfg = match loaded {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
                let reports = match pg2qdrant::verify::run(&cfg, table.as_deref(), repair).await {
                    Ok(r) => r,
                    Err(e) => return fail(e),
                };
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&reports).expect("report serializes")
                    );
                } else {
                    for r in &reports {
                        print_report(r);
                    }
                }
                if reports.iter().all(|r| r.drift() == 0) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Command::DeadLetter { action } => {
                let cfg = match loaded {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
                dead_letter(&cfg, action).await
            }
            Command::Embed {
                embedder,
                text,
                ..
            } => {
                let cfg = match loaded {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
                match pg2qdrant::embed::embed_texts(&cfg, embedder.as_deref(), &text) {
                    Ok(vectors) => {
                        for v in vectors {
                            println!("{}", serde_json::to_string(&v).expect("floats serialize"));
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                }
            }
        }
    })
}

async fn dead_letter(cfg: &pg2qdrant::config::Config, action: DeadLetterAction) -> ExitCode {
    use pg2qdrant::deadletter::replay;
    match action {
        DeadLetterAction::List { json, .. } => {
            let groups = match replay::list(cfg) {
                Ok(g) => g,
                Err(e) => return fail(e),
            };
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
            }
            if !json {
                for g in &groups {
                    println!(
                        "{} × {}: {} (LSN {} … {})",
                        g.count, g.table, g.reason, g.first_lsn, g.last_lsn
                    );
                    if let Some(h) = &g.hint {
                        println!("  {h}");
                    }
                }
            }
            if groups.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        DeadLetterAction::Replay { table, .. } => {
            let done = match replay::replay(cfg, table.as_deref()).await {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
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
            if left == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
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

fn fail(e: pg2qdrant::Error) -> ExitCode {
    match e.hint() {
        Some(h) => tracing::error!(hint = h, "{e}"),
        None => tracing::error!("{e}"),
    }
    match e {
        pg2qdrant::Error::Config { .. } => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
