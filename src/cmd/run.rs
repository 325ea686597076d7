//! `pg2qdrant run`: copy what is not copied yet, then stream until SIGINT/SIGTERM.

use super::{until_signal, Outcome};
use crate::config::Config;
use crate::error::Error;

pub async fn execute(cfg: &Config) -> Result<Outcome, Error> {
    until_signal(|stop| crate::app::run(cfg.clone(), stop)).await
}
