//! `pg2qdrant status`: the running connector's sync status; passes when ready and in sync.

use super::{ConfigFile, Outcome};
use crate::config::Config;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub file: ConfigFile,
    /// Print the status document (JSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    pub async fn execute(self, cfg: &Config) -> Result<Outcome, Error> {
        let status = crate::metrics::client::status(&cfg.metrics).await?;
        Ok(Outcome::rendered(status.in_sync, &status, self.json, |s| {
            s.render()
        }))
    }
}
