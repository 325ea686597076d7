//! `pg2qdrant verify`: every row against its point; fails on drift.

use super::{ConfigFile, Outcome};
use crate::config::Config;
use crate::error::Error;
use crate::verify::TableReport;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub file: ConfigFile,
    /// Only this table (default: every table of the config).
    #[arg(long, short)]
    pub table: Option<String>,
    /// Upsert missing and stale points, delete orphans (fenced), then verify again.
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    pub async fn execute(self, cfg: &Config) -> Result<Outcome, Error> {
        let reports = crate::verify::run(cfg, self.table.as_deref(), self.repair).await?;
        let in_sync = reports.iter().all(|r| r.drift() == 0);
        Ok(Outcome::rendered(in_sync, &reports, self.json, |reports| {
            reports.iter().map(text).collect()
        }))
    }
}

fn text(r: &TableReport) -> String {
    let state = if r.drift() == 0 { "in sync" } else { "DRIFT" };
    let repaired = if r.repaired > 0 {
        format!("; repaired {} before this check", r.repaired)
    } else {
        String::new()
    };
    let mut out = format!(
        "{} → {}: {state}: {} rows, {} points; missing {}, orphaned {}, stale {}; {} changed during the check (skipped), {} unmappable (dead-lettered by the connector){repaired}\n",
        r.table, r.collection, r.rows, r.points, r.missing, r.orphaned, r.stale, r.skipped_changed, r.unmappable,
    );
    for (kind, keys) in [
        ("missing", &r.missing_keys),
        ("orphaned", &r.orphaned_keys),
        ("stale", &r.stale_keys),
    ] {
        if !keys.is_empty() {
            let shown: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            out.push_str(&format!("  {kind} (up to 10): {}\n", shown.join(" ")));
        }
    }
    if r.lagging {
        out.push_str(
            "  note: the connector had not caught up; counts may include changes not applied yet\n",
        );
    }
    out
}
