//! `pg2qdrant resync`: ask the running connector (or its next start) to copy a table again.

use super::{Outcome, TableArgs};
use crate::config::Config;
use crate::error::Error;

pub async fn execute(args: TableArgs, cfg: &Config) -> Result<Outcome, Error> {
    let table = args.table;
    let lsn = crate::snapshot::request_resync(cfg, &table).await?;
    Ok(Outcome::done(format!(
        "resync of {table} requested at {lsn}: the running connector copies it again while streaming (or its next start does)\n"
    )))
}
