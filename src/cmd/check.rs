//! `pg2qdrant check`: one line per prerequisite; fails when any does.

use super::Outcome;
use crate::config::Config;
use crate::error::Error;

pub async fn execute(cfg: &Config) -> Result<Outcome, Error> {
    let lines = crate::check::run(cfg).await;
    let mut out = String::new();
    for l in &lines {
        let state = if l.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!("{state} {}: {}\n", l.what, l.detail));
    }
    Ok(Outcome::when(lines.iter().all(|l| l.ok), out))
}

/// A configuration that does not load is `check`'s first failed line, not an error.
pub fn unloadable(e: &Error) -> Outcome {
    Outcome::when(false, format!("FAIL config: {e}\n"))
}
