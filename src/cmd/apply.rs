//! `pg2qdrant apply`: one member of the `[kafka]` consumer group, until SIGINT/SIGTERM.

use super::{until_signal, Outcome};
use crate::config::Config;
use crate::error::Error;

pub async fn execute(cfg: &Config) -> Result<Outcome, Error> {
    until_signal(|stop| crate::apply::run(cfg.clone(), stop)).await
}
