//! Retrying what is transient: capped exponential backoff, and the one retry loop every stage
//! uses (it also decides how a stop cuts a retry short).

use super::{Disposition, Error};

/// Capped exponential backoff with a little jitter, for every retry loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: std::time::Duration,
    max: std::time::Duration,
}

impl Backoff {
    pub fn new(max: std::time::Duration) -> Self {
        Self {
            next: std::time::Duration::from_millis(100).min(max),
            max,
        }
    }
    /// The delay to wait now; doubles the next one up to the cap.
    pub fn next_delay(&mut self) -> std::time::Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.subsec_nanos() % 50)
            .unwrap_or(0);
        d + std::time::Duration::from_millis(u64::from(jitter))
    }
    pub fn reset(&mut self) {
        self.next = std::time::Duration::from_millis(100).min(self.max);
    }
}

/// Runs `f` until it succeeds or fails definitely; transient failures are logged as "{what}
/// failed; retrying" and retried with capped exponential backoff. Once `shutdown` is cancelled,
/// retries go on for `grace` at most (zero: stop at once, even mid-wait) and then
/// `Error::Shutdown` is returned.
pub async fn retry_transient<T, Fut>(
    what: &str,
    max: std::time::Duration,
    shutdown: &tokio_util::sync::CancellationToken,
    grace: std::time::Duration,
    mut f: impl FnMut() -> Fut,
) -> Result<T, Error>
where
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut backoff = Backoff::new(max);
    let mut stop_by: Option<tokio::time::Instant> = None;
    loop {
        // An attempt in flight (a request to a server that does not answer) is cut short too:
        // a stop waits the grace for it, no longer.
        let attempt = f();
        let known = stop_by;
        let stop = async {
            shutdown.cancelled().await;
            if !grace.is_zero() {
                let deadline = known.unwrap_or_else(|| tokio::time::Instant::now() + grace);
                tokio::time::sleep_until(deadline).await;
            }
        };
        let outcome = tokio::select! {
            r = attempt => r,
            _ = stop => return Err(Error::Shutdown),
        };
        match outcome {
            Ok(v) => return Ok(v),
            Err(e) if e.disposition() == Disposition::Transient => {
                // The other side's `Retry-After`, up to the backoff cap, if longer than ours.
                let delay = backoff
                    .next_delay()
                    .max(e.retry_after().unwrap_or_default().min(max));
                tracing::warn!(error = %e, hint = e.hint().unwrap_or(""), retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
                let mut sleep = delay;
                if shutdown.is_cancelled() {
                    let deadline =
                        *stop_by.get_or_insert_with(|| tokio::time::Instant::now() + grace);
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(Error::Shutdown);
                    }
                    // Never sleep past the grace.
                    sleep = sleep.min(deadline - now);
                }
                tokio::select! {
                    _ = shutdown.cancelled(), if grace.is_zero() => return Err(Error::Shutdown),
                    // A stop requested meanwhile: try once more now, then within the grace.
                    _ = shutdown.cancelled(), if stop_by.is_none() => {}
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`retry_transient`] for set-up steps: no grace, a stop ends the wait at once with
/// `Err(Error::Shutdown)` (which [`ok_if_stopped`] turns into a clean exit at the top).
pub async fn retry_until_stopped<T, Fut>(
    what: &str,
    max: std::time::Duration,
    shutdown: &tokio_util::sync::CancellationToken,
    f: impl FnMut() -> Fut,
) -> Result<T, Error>
where
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    retry_transient(what, max, shutdown, std::time::Duration::ZERO, f).await
}

/// A mode's outcome: a stop requested while it waited or retried is a clean exit.
pub fn ok_if_stopped(r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(Error::Shutdown) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped() {
        let mut b = Backoff::new(std::time::Duration::from_millis(400));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert!(
            delays[0] < 200 && *delays.last().unwrap() < 460,
            "{delays:?}"
        );
    }

    fn busy(retry_after: u64) -> Error {
        Error::Embed {
            embedder: "e".into(),
            reason: "429".into(),
            retry_after: Some(std::time::Duration::from_secs(retry_after)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_what_the_service_asked() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let r = retry_transient(
            "t",
            std::time::Duration::from_secs(30),
            &tokio_util::sync::CancellationToken::new(),
            std::time::Duration::ZERO,
            || {
                calls += 1;
                let first = calls == 1;
                async move {
                    if first {
                        Err(busy(7))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        assert!(r.is_ok());
        assert!(started.elapsed() >= std::time::Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_is_not_held_by_a_long_retry_after() {
        let stop = tokio_util::sync::CancellationToken::new();
        let grace = std::time::Duration::from_secs(5);
        let started = tokio::time::Instant::now();
        let canceller = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            canceller.cancel();
        });
        let r: Result<(), Error> = retry_transient(
            "t",
            std::time::Duration::from_secs(60),
            &stop,
            grace,
            || async { Err(busy(60)) },
        )
        .await;
        assert!(matches!(r, Err(Error::Shutdown)), "{r:?}");
        // Virtual time: the stop came at 1 s, the grace ends at 6 s, not the 60 s asked for.
        assert!(
            started.elapsed() <= std::time::Duration::from_secs(7),
            "{:?}",
            started.elapsed()
        );
    }
}
