//! Resync requests (`pg2qdrant resync`, through the WAL): taken from the stream, merged with a
//! copy already running, and refused when a partial one's condition does not pass
//! (`source::condition`).

use super::{set_state_metric, Coordinator};
use crate::checkpoint::state::{CopyReason, Status, TableCopy};
use crate::error::Error;
use crate::event::TableName;
use crate::lsn::Lsn;

impl Coordinator {
    /// Stream side: a resync request at commit LSN `at`, of the whole table or (`condition`)
    /// of the rows matching it. Persisted at once, so a stop right after it still copies the
    /// table on the next start. A request meeting a copy still running restarts it at `at` so
    /// that it covers both: a whole-table copy stays whole, two partial ones read either
    /// condition.
    pub fn request(&self, table: &str, at: Lsn, condition: Option<String>) -> Result<(), Error> {
        let name = TableName::parse(table);
        if !self.mappings.contains_key(&name) {
            tracing::warn!(
                table,
                "resync requested for a table this connector does not mirror; ignored"
            );
            return Ok(());
        }
        let mut inner = self.lock();
        let key = name.to_string();
        let running = inner.state.tables.get(&key);
        // The request a copy serves; a whole-table copy that started after a request covers it
        // (a copy of a state file without `requested` too).
        let taken = |c: &TableCopy| match (c.requested, &c.condition) {
            (0, None) => c.start_lsn,
            (r, _) => r,
        };
        if running.is_some_and(|c| taken(c) >= at.as_u64()) {
            return Ok(()); // replayed: this request (or a later one) was taken already
        }
        if let Some(Err(why)) = condition.as_deref().map(crate::source::condition::check) {
            // Anyone may write into the WAL: the shape is checked here, the rest at the plan.
            tracing::error!(table = %name, at = %at, "a partial resync request was refused, nothing is copied: {why}");
            return Ok(());
        }
        let condition = match (running.filter(|c| c.status == Status::Copying), condition) {
            (_, None) => None,
            (None, Some(c)) => Some(c),
            (Some(r), Some(c)) => r
                .condition
                .as_ref()
                .map(|earlier| format!("({earlier}) OR ({c})")),
        };
        match &condition {
            None => {
                tracing::info!(table = %name, at = %at, "resync requested: copying the table again while streaming")
            }
            Some(c) => {
                tracing::info!(table = %name, at = %at, condition = %c, "partial resync requested: copying the rows matching the condition again while streaming")
            }
        }
        let mut copy = TableCopy::new(CopyReason::Resync, at.as_u64());
        copy.requested = at.as_u64();
        copy.condition = condition;
        inner.state.tables.insert(key, copy);
        self.launch(&mut inner, name);
        self.persist(&inner)
    }

    /// A partial resync's condition (`None`: the copy reads every row).
    pub fn condition(&self, table: &TableName) -> Option<String> {
        self.lock()
            .state
            .tables
            .get(&table.to_string())
            .and_then(|c| c.condition.clone())
    }

    /// The copy's condition was refused (`source::condition`: it came through the WAL, which
    /// any role may write): the copy ends without reading a row.
    pub fn refuse(&self, table: &TableName, generation: u64, why: &str) -> Result<(), Error> {
        let mut inner = self.lock();
        if !Self::current(&inner, table, generation) {
            return Ok(());
        }
        inner.live.remove(table);
        if let Some(copy) = inner.state.tables.get_mut(&table.to_string()) {
            tracing::error!(table = %table, condition = copy.condition.as_deref().unwrap_or(""),
                "a partial resync request was refused, nothing is copied (requests travel through the WAL, where any role may write; `pg2qdrant resync --where` checks its condition the same way): {why}");
            copy.status = Status::Done;
        }
        set_state_metric(table, Some(Status::Done));
        self.persist(&inner)?;
        drop(inner);
        self.settled.notify_one();
        self.copied.notify_one();
        Ok(())
    }
}
