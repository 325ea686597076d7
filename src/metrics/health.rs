//! Readiness: what `/readyz` answers, from what the stages report.
//!
//! Each component of a mode is registered at start as "not yet" (a reason); the stages report up
//! or down as they learn: the replication loop (`stream`: the slot's stream is open and
//! consistent), the sampler's probes (`postgres`: catalog queries answer; `slot`: the slot exists
//! and its `wal_status` is not `lost`; `qdrant`: its health check answers), the writer's calls
//! (`qdrant`, `kafka`, `embedder`, `postgres`: a call failed transiently / succeeded). A component
//! reported by both a probe and calls is up only when both say so: a health check that answers
//! does not hide writes that keep failing, and an idle writer's last success does not hide a
//! server that stopped answering. Ready means every component is up. Each state is also a gauge,
//! `pg2qdrant_up{component}`, and readiness is `pg2qdrant_ready`, so the dashboard and the alert
//! rules see what the orchestrator sees.
//!
//! `/healthz` is liveness only (the process answers): an orchestrator restarting the connector
//! because Qdrant is down would gain nothing, the writer already retries.

use crate::config::Mode;
use crate::metrics::names;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Health {
    /// Component → reporter (`probe`, `calls`) → None when up, else why not.
    parts: Mutex<BTreeMap<&'static str, BTreeMap<&'static str, Option<String>>>>,
}

/// The components `/readyz` waits for in `mode` with this config.
pub fn components(cfg: &crate::config::Config, mode: Mode) -> Vec<&'static str> {
    let writes_qdrant = mode.writes_qdrant(cfg);
    let mut out = if mode == Mode::Apply {
        vec!["kafka"]
    } else {
        vec!["stream", "postgres", "slot"]
    };
    if mode == Mode::Run && cfg.kafka.is_some() {
        out.push("kafka");
    }
    if writes_qdrant {
        out.push("qdrant");
        if !cfg.embedders.is_empty() {
            out.push("embedder");
        }
    }
    out
}

/// Who reports a state: the sampler's periodic probe, or the outcome of real calls; `START` is
/// the "not yet" every component begins with, gone at its first report.
const PROBE: &str = "probe";
const CALLS: &str = "calls";
const START: &str = "start";
/// The pseudo-component of a task that failed for good.
const FAILED: &str = "process";

impl Health {
    /// A mode's components, none up yet.
    pub fn new(components: &[&'static str]) -> Arc<Self> {
        let h = Health::default();
        h.parts.lock().expect("health lock").extend(
            components
                .iter()
                .map(|c| (*c, BTreeMap::from([(START, Some("starting".to_owned()))]))),
        );
        metrics::gauge!(names::READY).set(0.0);
        for c in components {
            metrics::gauge!(names::UP, "component" => *c).set(0.0);
        }
        Arc::new(h)
    }

    /// A call to the component succeeded (or the stage that owns it found it working).
    pub fn up(&self, component: &'static str) {
        self.set(component, CALLS, None);
    }

    /// A call to the component failed transiently.
    pub fn down(&self, component: &'static str, reason: impl Into<String>) {
        self.set(component, CALLS, Some(reason.into()));
    }

    /// The sampler's periodic probe of the component.
    pub fn probe(&self, component: &'static str, outcome: Result<(), String>) {
        self.set(component, PROBE, outcome.err());
    }

    /// A task of the process failed for good (it is stopping): never ready again.
    pub fn failed(&self, task: &str, reason: impl std::fmt::Display) {
        let mut parts = self.parts.lock().expect("health lock");
        parts
            .entry(FAILED)
            .or_default()
            .insert(CALLS, Some(format!("task {task} failed: {reason}")));
        metrics::gauge!(names::READY).set(0.0);
    }

    fn set(&self, component: &'static str, reporter: &'static str, state: Option<String>) {
        let mut parts = self.parts.lock().expect("health lock");
        // Only the mode's components count (a writer shared by modes reports what it has).
        let Some(part) = parts.get_mut(component) else {
            return;
        };
        part.remove(START);
        part.insert(reporter, state);
        let up = part.values().all(Option::is_none);
        metrics::gauge!(names::UP, "component" => component).set(f64::from(u8::from(up)));
        let ready = parts.values().all(|p| p.values().all(Option::is_none));
        metrics::gauge!(names::READY).set(f64::from(u8::from(ready)));
    }

    /// Ok when every component is up, else each one that is not, with its reason.
    pub fn ready(&self) -> Result<(), Vec<String>> {
        let parts = self.parts.lock().expect("health lock");
        let down: Vec<String> = parts
            .iter()
            .flat_map(|(c, p)| p.values().flatten().map(move |r| format!("{c}: {r}")))
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(down)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_registered_component_is_up() {
        let h = Health::new(&["stream", "qdrant"]);
        assert_eq!(h.ready().unwrap_err().len(), 2);
        h.up("stream");
        h.up("qdrant");
        h.up("kafka"); // not registered: ignored
        assert!(h.ready().is_ok());
        h.down("qdrant", "connection refused");
        assert_eq!(
            h.ready().unwrap_err(),
            vec!["qdrant: connection refused".to_owned()]
        );
        h.down("kafka", "down"); // still ignored
        assert_eq!(h.ready().unwrap_err().len(), 1);
        // A probe that answers does not hide calls that fail, nor the other way round.
        h.probe("qdrant", Ok(()));
        assert!(h.ready().is_err());
        h.up("qdrant");
        assert!(h.ready().is_ok());
        h.failed("copy worker", "panicked");
        assert_eq!(
            h.ready().unwrap_err(),
            vec!["process: task copy worker failed: panicked".to_owned()]
        );
        h.up("qdrant");
        assert!(h.ready().is_err(), "a failed task is never ready again");
        h.probe("qdrant", Err("health check: refused".into()));
        assert_eq!(h.ready().unwrap_err().len(), 2);
    }
}
