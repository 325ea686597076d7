//! What is sampled rather than counted, every few seconds while `run` streams (and the heartbeat,
//! `pipeline::heartbeat`, on the same connection): lag in bytes
//! (the server's WAL position − our acknowledged LSN), lag in seconds (`pipeline::lag`), the
//! slot's health from `pg_replication_slots`, whether PostgreSQL and Qdrant answer (for
//! `/readyz`), whether the publication still publishes every watched table, and the last
//! `verify` report.

use crate::config::Config;
use crate::lsn::Lsn;
use crate::metrics::health::Health;
use crate::metrics::names;
use crate::source::catalog::Catalog;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the sampler runs.
const EVERY: Duration = Duration::from_secs(5);
/// The `wal_status` values PostgreSQL reports (one gauge series each, so an alert can match).
const WAL_STATUSES: [&str; 4] = ["reserved", "extended", "unreserved", "lost"];

pub struct Sampler {
    pub cfg: Config,
    pub durable: watch::Receiver<Lsn>,
    pub lag: Arc<super::lag::LagClock>,
    pub health: Arc<Health>,
    /// Qdrant's client when `run` writes it directly.
    pub qdrant: Option<qdrant_client::Qdrant>,
}

impl Sampler {
    /// Samples every [`EVERY`] and writes a heartbeat every `source.heartbeat_ms` (unless 0),
    /// on one connection, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut catalog: Option<Catalog> = None;
        let mut verified = None;
        let mut unpublished = std::collections::HashSet::new();
        let mut sample = tokio::time::interval(EVERY);
        let beats = self.cfg.source.heartbeat_ms;
        let mut heartbeat = tokio::time::interval(Duration::from_millis(beats.max(1)));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await; // the first beat after one interval
        loop {
            let beat = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sample.tick() => false,
                _ = heartbeat.tick(), if beats > 0 => true,
            };
            if catalog.is_none() {
                match Catalog::connect(&self.cfg.source).await {
                    Ok(c) => catalog = Some(c),
                    Err(e) => self.health.probe("postgres", Err(e.to_string())),
                }
            }
            if beat {
                if let Some(c) = &catalog {
                    if let Err(e) = super::heartbeat::beat(c).await {
                        tracing::warn!(error = %e, hint = e.hint().unwrap_or(""), "heartbeat failed");
                        self.health.probe("postgres", Err(e.to_string()));
                        catalog = None;
                    }
                }
                continue;
            }
            crate::report::export_last(&self.cfg.checkpoint.verify_path(), &mut verified);
            metrics::gauge!(names::LAG_SECONDS).set(self.lag.seconds_behind());
            if let Some(c) = &catalog {
                let sampled = match self.postgres(c).await {
                    Ok(()) => self.published(c, &mut unpublished).await,
                    e => e,
                };
                if let Err(e) = sampled {
                    self.health.probe("postgres", Err(e.to_string()));
                    catalog = None;
                }
            }
            if let Some(q) = &self.qdrant {
                let answered = q.health_check().await;
                self.health.probe(
                    "qdrant",
                    answered.map(drop).map_err(|e| format!("health check: {e}")),
                );
            }
        }
    }

    /// Every watched table still in the publication. A table taken out of it (`ALTER
    /// PUBLICATION … DROP TABLE`, or `DROP COLUMN … CASCADE` of a column its row filter reads)
    /// sends no more changes, and nothing in the stream says so: it is reported here, once, as
    /// stopped (`mapping::schema`; the gauge stays 1 until a restart), until it is back (then a
    /// resync is asked for).
    async fn published(
        &self,
        c: &Catalog,
        unpublished: &mut std::collections::HashSet<crate::event::TableName>,
    ) -> Result<(), crate::Error> {
        let publication = &self.cfg.source.publication;
        let Some(published) = c.publication_tables(publication).await? else {
            return Ok(()); // the slot's stream fails on its own, naming the publication
        };
        for t in &self.cfg.tables {
            let table = crate::event::TableName::parse(&t.table);
            let gone = !published.contains(&table);
            if gone && unpublished.insert(table.clone()) {
                tracing::error!(table = %table, publication = %publication,
                    "{table} is no longer in publication {publication} (ALTER PUBLICATION … DROP TABLE, or DROP COLUMN … CASCADE of a column its row filter reads): none of its changes reach pg2qdrant from here on; the other tables go on. Fix: make the config match the table (tables ({table}) where), restart (the publication gets the table back), then run `pg2qdrant resync --table {table}`");
                metrics::gauge!(names::TABLE_STOPPED, "table" => table.to_string()).set(1.0);
            } else if !gone && unpublished.remove(&table) {
                tracing::warn!(table = %table, publication = %publication,
                    "{table} is in publication {publication} again; changes made while it was out are missing: run `pg2qdrant resync --table {table}`");
            }
        }
        Ok(())
    }

    /// Lag in bytes and the slot's health.
    async fn postgres(&self, c: &Catalog) -> Result<(), crate::Error> {
        let now = c.current_wal_lsn().await?;
        let acked = *self.durable.borrow();
        let behind = now.as_u64().saturating_sub(acked.as_u64());
        metrics::gauge!(names::REPLICATION_LAG_BYTES).set(behind as f64);
        self.lag.sampled_bytes(behind);
        self.health.probe("postgres", Ok(()));
        let slot = &self.cfg.source.slot;
        match c.slot_health(slot).await? {
            None => self.health.probe(
                "slot",
                Err(format!("replication slot {slot} does not exist")),
            ),
            Some(s) => {
                let status = s.wal_status.as_deref().unwrap_or("reserved");
                for known in WAL_STATUSES {
                    metrics::gauge!(names::SLOT_WAL_STATUS, "status" => known)
                        .set(f64::from(u8::from(known == status)));
                }
                metrics::gauge!(names::SLOT_SAFE_WAL_SIZE)
                    .set(s.safe_wal_size.map_or(-1.0, |b| b as f64));
                metrics::gauge!(names::SLOT_RETAINED_WAL)
                    .set(s.retained.unwrap_or(0).max(0) as f64);
                self.health.probe(
                    "slot",
                    if status == "lost" {
                        Err(format!("replication slot {slot} is lost (wal_status = lost): restart to copy again"))
                    } else {
                        Ok(())
                    },
                );
            }
        }
        Ok(())
    }
}
