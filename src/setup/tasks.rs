//! Every long-running task of a mode, owned and joined: spawned into one [`JoinSet`] under a
//! name, watched for the first failure, joined at shutdown.
//!
//! A task that returns `Err` (other than `Error::Shutdown`) or panics has failed for good: its
//! name and reason are logged, readiness flips (`Health::failed`), and the mode stops in order
//! and returns the failure, so the process exits 1 and its supervisor restarts it. Nothing is
//! lost by that: the slot (or a consumer offset) is acknowledged only after durable writes.

use crate::error::{ok_if_stopped, Error};
use crate::metrics::health::Health;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

/// How long stopping tasks are waited for before they are aborted.
const JOIN_GRACE: Duration = Duration::from_secs(5);

pub struct Tasks {
    set: JoinSet<Result<(), Error>>,
    names: Vec<(Id, &'static str)>,
    health: Arc<Health>,
}

impl Tasks {
    pub fn new(health: Arc<Health>) -> Self {
        Self {
            set: JoinSet::new(),
            names: Vec::new(),
            health,
        }
    }

    /// Where failures flip readiness.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Spawns `task` under `name` (names need not be unique: copy workers share one).
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), Error>> + Send + 'static,
    ) {
        let handle = self.set.spawn(task);
        self.names.push((handle.id(), name));
    }

    /// A task that runs until its token stops it and has nothing to report.
    pub fn spawn_quiet(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        self.spawn(name, async move {
            task.await;
            Ok(())
        });
    }

    fn name(&self, id: Id) -> &'static str {
        self.names
            .iter()
            .find(|(i, _)| *i == id)
            .map_or("unnamed", |(_, n)| n)
    }

    /// Waits for the first task that fails (tasks that end cleanly are let go); pending forever
    /// when none does. The failure is logged and readiness flipped before it is returned.
    pub async fn first_failure(&mut self) -> Error {
        loop {
            let Some(joined) = self.set.join_next_with_id().await else {
                return std::future::pending().await;
            };
            if let Some(e) = self.failure(joined) {
                return e;
            }
        }
    }

    fn failure(
        &self,
        joined: Result<(Id, Result<(), Error>), tokio::task::JoinError>,
    ) -> Option<Error> {
        let (task, reason) = match joined {
            Ok((_, Ok(()))) | Ok((_, Err(Error::Shutdown))) => return None,
            // The operator's hint travels with the reason: the error itself ends here.
            Ok((id, Err(e))) => (
                self.name(id),
                match e.hint() {
                    Some(h) => format!("{e} (hint: {h})"),
                    None => e.to_string(),
                },
            ),
            Err(e) if e.is_cancelled() => return None,
            Err(e) => (self.name(e.id()), panic_reason(e)),
        };
        tracing::error!(task, reason = %reason, "task failed; stopping (the supervisor restarts the process, nothing acknowledged is lost)");
        self.health.failed(task, &reason);
        Some(Error::Task {
            task: task.to_owned(),
            reason,
        })
    }

    /// Runs the mode's main loop `main` beside the tasks. When a task fails first, `stop` is
    /// cancelled and `main` finishes its stop. Returns `main`'s outcome and that failure.
    pub async fn run_main<T>(
        &mut self,
        stop: &CancellationToken,
        main: impl Future<Output = T>,
    ) -> (T, Option<Error>) {
        tokio::pin!(main);
        tokio::select! {
            done = &mut main => (done, None),
            failure = self.first_failure() => {
                stop.cancel();
                (main.await, Some(failure))
            }
        }
    }

    /// The mode's end, once every task's token is cancelled: joins them all (see
    /// [`Tasks::join_all`]). A task's failure wins over `outcome`; a stop is a clean exit.
    pub async fn end(self, outcome: Result<(), Error>, failed: Option<Error>) -> Result<(), Error> {
        let joined = self.join_all(JOIN_GRACE).await;
        match failed {
            Some(e) => Err(e),
            None => ok_if_stopped(outcome.and(joined)),
        }
    }

    /// Joins every task (their tokens are cancelled by now), waiting `grace` at most for the
    /// stragglers, which are then aborted and logged. Returns the first failure among them.
    pub async fn join_all(mut self, grace: Duration) -> Result<(), Error> {
        let mut first = None;
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match tokio::time::timeout_at(deadline, self.set.join_next_with_id()).await {
                Ok(None) => break,
                Ok(Some(joined)) => {
                    let id = match &joined {
                        Ok((id, _)) => *id,
                        Err(e) => e.id(),
                    };
                    if let Some(e) = self.failure(joined) {
                        first.get_or_insert(e);
                    }
                    // Joined: no longer a straggler to name.
                    self.names.retain(|(i, _)| *i != id);
                }
                Err(_) => {
                    for (id, name) in &self.names {
                        tracing::warn!(task = name, id = %id, "task did not stop within the grace; aborted");
                    }
                    self.set.abort_all();
                    while self.set.join_next().await.is_some() {}
                    break;
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn panic_reason(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .map_or_else(|| "panicked".to_owned(), |m| format!("panicked: {m}")),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_by_name_and_flips_readiness() {
        let health = Health::new(&[]);
        let mut tasks = Tasks::new(health.clone());
        tasks.spawn_quiet("fine", async {});
        tasks.spawn_quiet("sampler", async { panic!("boom") });
        let e = tasks.first_failure().await;
        assert!(
            matches!(&e, Error::Task { task, reason } if task == "sampler" && reason.contains("boom")),
            "{e}"
        );
        assert!(health.ready().is_err());
        assert!(tasks.join_all(Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test]
    async fn join_all_aborts_a_task_that_does_not_stop() {
        let mut tasks = Tasks::new(Health::new(&[]));
        tasks.spawn_quiet("stuck", std::future::pending());
        tasks.spawn("stopped", async { Err(Error::Shutdown) });
        assert!(tasks.join_all(Duration::from_millis(50)).await.is_ok());
    }
}
