//! Readiness: what `/readyz` answers, from what the stages report.
//!
//! Each component of a mode is registered at start as "not yet" (a reason); the stage that owns
//! it reports up or down as it learns: the replication loop (`stream`: the slot's stream is open
//! and consistent), the sampler (`postgres`: catalog queries answer; `slot`: the slot exists and
//! its `wal_status` is not `lost`; `qdrant`: its health check answers), the writer (`qdrant`,
//! `kafka`: a write failed transiently / succeeded). Ready means every component is up. Each
//! state is also a gauge, `pg2qdrant_up{component}`, and readiness is `pg2qdrant_ready`, so the
//! dashboard and the alert rules see what the orchestrator sees.
//!
//! `/healthz` is liveness only (the process answers): an orchestrator restarting the connector
//! because Qdrant is down would gain nothing, the writer already retries.

use crate::metrics::names;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Health {
    /// Component → None when up, else why not.
    parts: Mutex<BTreeMap<&'static str, Option<String>>>,
}

impl Health {
    /// A mode's components, none up yet.
    pub fn new(components: &[&'static str]) -> Arc<Self> {
        let h = Health::default();
        h.parts
            .lock()
            .expect("health lock")
            .extend(components.iter().map(|c| (*c, Some("starting".to_owned()))));
        for c in components {
            h.down(c, "starting");
        }
        Arc::new(h)
    }

    pub fn up(&self, component: &'static str) {
        self.set(component, None);
    }

    pub fn down(&self, component: &'static str, reason: impl Into<String>) {
        self.set(component, Some(reason.into()));
    }

    fn set(&self, component: &'static str, state: Option<String>) {
        let mut parts = self.parts.lock().expect("health lock");
        // Only the mode's components count (a writer shared by modes reports what it has).
        if !parts.contains_key(component) {
            return;
        }
        metrics::gauge!(names::UP, "component" => component)
            .set(f64::from(u8::from(state.is_none())));
        parts.insert(component, state);
        let ready = parts.values().all(Option::is_none);
        metrics::gauge!(names::READY).set(f64::from(u8::from(ready)));
    }

    /// Ok when every component is up, else each one that is not, with its reason.
    pub fn ready(&self) -> Result<(), Vec<String>> {
        let parts = self.parts.lock().expect("health lock");
        let down: Vec<String> = parts
            .iter()
            .filter_map(|(c, r)| r.as_ref().map(|r| format!("{c}: {r}")))
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
    }
}
