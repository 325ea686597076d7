//! `pg2qdrant dead-letter list|replay`: what is parked, and applying it once the cause is fixed.

use super::{ConfigFile, Outcome};
use crate::config::Config;
use crate::deadletter::parked::Group;
use crate::error::Error;

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Summarise the records not replayed yet, by table and reason (exit 0 when there are none,
    /// 1 otherwise).
    List {
        #[command(flatten)]
        file: ConfigFile,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Re-apply the records of the watched tables whose rows map now (reading each row as it is
    /// now, fenced like every write) and mark them replayed; the rest stay, with today's
    /// reason. Exit 0 when nothing of those tables is left, 1 otherwise.
    Replay {
        #[command(flatten)]
        file: ConfigFile,
        /// Only this table (`schema.table` or `table`).
        #[arg(long, short)]
        table: Option<String>,
    },
}

impl Action {
    pub fn file(&self) -> &ConfigFile {
        match self {
            Action::List { file, .. } | Action::Replay { file, .. } => file,
        }
    }

    pub async fn execute(self, cfg: &Config) -> Result<Outcome, Error> {
        match self {
            Action::List { json, .. } => {
                let groups = crate::deadletter::parked::list(&cfg.dead_letter.path, &cfg.tables)?;
                let path = cfg.dead_letter.path.display().to_string();
                Ok(Outcome::rendered(groups.is_empty(), &groups, json, |g| {
                    listed(g, &path)
                }))
            }
            Action::Replay { table, .. } => replay(cfg, table.as_deref()).await,
        }
    }
}

fn listed(groups: &[Group], path: &str) -> String {
    if groups.is_empty() {
        return format!("no dead letters pending in {path}\n");
    }
    let mut out = String::new();
    for g in groups {
        out.push_str(&format!(
            "{} × {}: {} (LSN {} … {})\n",
            g.count, g.table, g.reason, g.first_lsn, g.last_lsn
        ));
        let keys: Vec<String> = g.samples.iter().map(|k| k.to_string()).collect();
        let more = if g.count > keys.len() { ", …" } else { "" };
        out.push_str(&format!("  keys: {}{more}\n", keys.join(", ")));
        if let Some(h) = &g.hint {
            out.push_str(&format!("  {h}\n"));
        }
    }
    out
}

async fn replay(cfg: &Config, table: Option<&str>) -> Result<Outcome, Error> {
    let done = crate::verify::replay::replay(cfg, table).await?;
    let mut out = String::new();
    if done.is_empty() {
        out.push_str("nothing to replay for the config's tables\n");
    }
    let mut left = 0;
    for r in &done {
        out.push_str(&format!(
            "{}: {} replayed, {} still failing, {} without a key\n",
            r.table,
            r.applied,
            r.still_failing.len(),
            r.without_key
        ));
        for (key, reason) in r.still_failing.iter().take(10) {
            out.push_str(&format!("  {key}: {reason}\n"));
        }
        left += r.still_failing.len() + r.without_key;
    }
    Ok(Outcome::when(left == 0, out))
}
