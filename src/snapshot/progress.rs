//! Copy progress for people: a progress bar per table when stderr is a terminal, a log line per
//! table every few seconds otherwise (rows copied, estimated total, rows/s, ETA).

use super::coordinator::{Coordinator, CopyProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LOG_EVERY: Duration = Duration::from_secs(10);

pub async fn report(coordinator: Arc<Coordinator>, shutdown: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_millis(500)
    } else {
        LOG_EVERY
    };
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let now = coordinator.progress();
        if terminal {
            draw(&multi, &mut bars, &now);
        } else {
            for p in &now {
                log(p);
            }
        }
    }
    for b in bars.values() {
        b.abandon();
    }
}

fn draw(multi: &MultiProgress, bars: &mut HashMap<String, ProgressBar>, now: &[CopyProgress]) {
    let live: Vec<String> = now.iter().map(|p| p.table.to_string()).collect();
    bars.retain(|t, b| {
        let keep = live.contains(t);
        if !keep {
            b.finish_with_message("done");
        }
        keep
    });
    for p in now {
        let bar = bars.entry(p.table.to_string()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new(p.estimated.max(1)));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>24} [{bar:30}] {pos}/{len} rows  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            b.set_prefix(p.table.to_string());
            b
        });
        bar.set_length(p.estimated.max(p.rows).max(1));
        bar.set_position(p.rows);
        bar.set_message(format!(
            "chunks {}/{}",
            p.chunks_done,
            p.chunks.map_or("?".to_owned(), |c| c.to_string())
        ));
    }
}

fn log(p: &CopyProgress) {
    let secs = p.started.elapsed().as_secs_f64().max(1e-3);
    let rate = p.rows as f64 / secs;
    let eta = if p.estimated > p.rows && rate > 0.0 {
        format!("{:.0}s", (p.estimated - p.rows) as f64 / rate)
    } else {
        "-".to_owned()
    };
    tracing::info!(table = %p.table, rows = p.rows, estimated = p.estimated, rows_per_s = format!("{rate:.0}"),
        eta = %eta, chunks_done = p.chunks_done, chunks = ?p.chunks, "copying");
}
