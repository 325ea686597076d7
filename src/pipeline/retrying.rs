//! The transient retry every destination shares.

use crate::error::{retry_transient, Disposition, Error};
use crate::metrics::health::Health;
use crate::metrics::names;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a write is still retried after shutdown was requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Retries transient failures with capped backoff, counting failed attempts per service
/// (`pg2qdrant_write_retries_total`) and showing the service on `/readyz` (down until an attempt
/// succeeds). After shutdown it gives up after [`SHUTDOWN_GRACE`] with [`Error::Shutdown`]: the
/// batch was not acknowledged and will be replayed.
#[derive(Clone)]
pub struct Retrying {
    pub max_backoff: Duration,
    pub shutdown: CancellationToken,
    pub health: Arc<Health>,
}

impl Retrying {
    /// Runs `f` until it succeeds or fails for good, counting retries against `service`.
    pub async fn run<T, F, Fut>(&self, service: &'static str, mut f: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let counted = || {
            let attempt = f();
            async move {
                let r = attempt.await;
                match &r {
                    Ok(_) => self.health.up(service),
                    Err(e) if e.disposition() == Disposition::Transient => {
                        metrics::counter!(names::WRITE_RETRIES, "sink" => service).increment(1);
                        self.health.down(service, e.to_string());
                    }
                    Err(_) => {}
                }
                r
            }
        };
        let r = retry_transient(
            "write",
            self.max_backoff,
            &self.shutdown,
            SHUTDOWN_GRACE,
            counted,
        )
        .await;
        if matches!(r, Err(Error::Shutdown)) {
            tracing::warn!("shutting down with an unwritten batch; it was not acknowledged and will be replayed");
        }
        r
    }
}
