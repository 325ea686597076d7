//! `pg2qdrant rebuild`: a new collection behind the table's alias, built by the next start;
//! every table writing that alias is rebuilt.

use super::{Outcome, TableArgs};
use crate::config::Config;
use crate::error::Error;

pub async fn execute(args: TableArgs, cfg: &Config) -> Result<Outcome, Error> {
    let r = crate::rebuild::request(cfg, &args.table).await?;
    let (target, old) = (&r.rebuild.target, &r.rebuild.old);
    Ok(Outcome::done(format!(
        "created collection {target} for alias {} (tables {}). Start the connector with this config (restart it if it runs): it copies into {target} while streaming into both, then points {} at it and drops {old}. Searches through the alias use {old} until then.\n",
        r.alias,
        r.rebuild.tables.join(", "),
        r.alias,
    )))
}
