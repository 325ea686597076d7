//! `pg2qdrant resync`: ask the running connector (or its next start) to copy a table again, or
//! only the rows matching a condition.

use super::{Outcome, TableArgs};
use crate::config::Config;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TableArgs,
    /// Copy only the rows matching this condition: one boolean SQL expression over the table's
    /// columns (e.g. "customer_id = 42", "updated_at >= '2026-12-01'"). Chunked, resumable and
    /// online like a whole-table copy; points of other rows are left as they are.
    #[arg(long = "where", value_name = "CONDITION")]
    pub condition: Option<String>,
}

pub async fn execute(args: Args, cfg: &Config) -> Result<Outcome, Error> {
    let table = args.target.table;
    let (lsn, matching) =
        crate::snapshot::request_resync(cfg, &table, args.condition.as_deref()).await?;
    Ok(Outcome::done(match (matching, args.condition) {
        (Some(n), Some(c)) => format!(
            "resync of {table} where {c} requested at {lsn}: {n} rows match now; the running connector copies them again while streaming (or its next start does)\n"
        ),
        _ => format!(
            "resync of {table} requested at {lsn}: the running connector copies it again while streaming (or its next start does)\n"
        ),
    }))
}
