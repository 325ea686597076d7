//! `pg2qdrant rebuild`: a new collection behind the same alias, built while streaming, then
//! switched to in one step.
//!
//! A table's `collection` may name a Qdrant alias (`collection_config.alias = true` creates it
//! that way). Searches go through the alias. A rebuild (a model change, a new vector size,
//! other index settings) must never let them see an empty collection, or one that mixes vectors
//! of two models.
//!
//! ```text
//!  pg2qdrant rebuild ─▶ new collection T (the config's settings) + request file
//!  next start        ─▶ request → snapshot state (rebuilds[alias] = {old O, target T}),
//!                       the alias's tables marked for a copy (reason "rebuild")
//!  while copying     ─▶ stream: T with the config's mapping, O with the old one (shadow)
//!                       copy: T only                              searches: alias → O
//!  copy durable      ─▶ alias → T (one atomic alias operation)     searches: alias → T
//!                    ─▶ O retired (no more writes), dropped, rebuild forgotten
//! ```
//!
//! # Why the switch is safe
//!
//! - **T is complete at the switch.** T is filled by the same copy-while-streaming machinery as
//!   a resync (`snapshot`): every row is copied or streamed, and rows deleted before the copy
//!   are swept; the switch waits until the state records every table's copy as durable.
//! - **T never holds an old vector.** Only the config's mapping writes T: its embedders, its
//!   sizes. At start the mixed-model check runs against T, not the alias.
//! - **O never holds a new vector.** The shadow mapping is the table's mapping with O's vector
//!   sizes and the embedder whose identity O's points record (that embedder must still be in
//!   `[[embedders]]`; without it, or when O's vectors do not fit, O is not written and serves
//!   what it had until the switch, which the log says). Shadow ops name O itself, never the
//!   alias, so a write in flight at the switch still lands in O.
//! - **Searches see O, then T.** Moving an alias is one Qdrant operation: atomic.
//! - **Crashes.** The request becomes state before its file is removed; the state says which
//!   collection each table writes; a start after a switch whose state was not yet cleared
//!   switches again (idempotent) and drops O if it still exists.

use crate::config::{Config, TableConfig, META_FIELD};
use crate::error::Error;
use crate::event::TableName;
use crate::mapping::TableMapping;
use crate::pipeline::assemble::Mappings;
use crate::sink::qdrant::{collections, QdrantSink};
use crate::snapshot::state::{Rebuild, State, StateFile};
use crate::snapshot::Coordinator;
use crate::source::catalog::Catalog;
use qdrant_client::Qdrant;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What `pg2qdrant rebuild` asks of the connector's next start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub alias: String,
    #[serde(flatten)]
    pub rebuild: Rebuild,
}

/// `pg2qdrant rebuild --table`: creates the new collection for the alias `table` writes (with
/// the config's settings) and leaves the request for the connector's next start.
pub async fn request(cfg: &Config, table: &str) -> Result<Request, Error> {
    let name = TableName::parse(table);
    let Some(t) = cfg
        .tables
        .iter()
        .find(|t| TableName::parse(&t.table) == name)
    else {
        return Err(Error::config(
            "--table",
            format!("{name} is not one of the config's [[tables]]"),
        ));
    };
    let alias = t.collection.clone();
    let state = StateFile::new(&cfg.checkpoint.snapshot_path()).load()?;
    if let Some(r) = state.rebuilds.get(&alias) {
        return Err(Error::prerequisite(
            format!(
                "{alias} is being rebuilt already (into {}, from {})",
                r.target, r.old
            ),
            "let the running connector finish it (it switches the alias when the copy is done)",
        ));
    }
    let client = crate::sink::qdrant::client(&cfg.qdrant)?;
    let Some(old) = collections::alias_target(&client, &alias).await? else {
        return Err(Error::prerequisite(
            format!("collection {alias:?} of {name} is not a Qdrant alias: a rebuild switches an alias to a new collection"),
            "set collection_config.alias = true with a collection name not taken yet, start the connector (it copies the table into a collection behind that alias) and point searches at the alias",
        ));
    };
    // A request the connector has not taken yet is replaced: its collection was never written.
    let path = cfg.checkpoint.rebuild_path();
    if let Some(earlier) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Request>(&b).ok())
        .filter(|r| r.alias == alias)
    {
        client
            .delete_collection(&earlier.rebuild.target)
            .await
            .map_err(Error::qdrant(format!(
                "drop {} of the replaced request",
                earlier.rebuild.target
            )))?;
    }
    let target = collections::new_name(&client, &alias).await?;
    let mut tables = Vec::new();
    for (i, t) in cfg.tables.iter().enumerate() {
        if t.collection != alias {
            continue;
        }
        collections::ensure(&client, i, &writing(t, &target), false).await?;
        tables.push(TableName::parse(&t.table).to_string());
    }
    let request = Request {
        alias,
        rebuild: Rebuild {
            old,
            target,
            tables,
        },
    };
    let bytes = serde_json::to_vec_pretty(&request).expect("request serializes");
    crate::checkpoint::write_atomically(&path, &bytes).map_err(Error::io(format!(
        "write rebuild request {}",
        path.display()
    )))?;
    Ok(request)
}

/// `t` writing the collection `name` itself (not through its alias).
fn writing(t: &TableConfig, name: &str) -> TableConfig {
    let mut t = t.clone();
    t.collection = name.to_owned();
    t.collection_config.alias = false;
    t.collection_config.create = true;
    t
}

/// At start: takes a pending request into the snapshot state, then returns the config with
/// every table of a rebuild writing its new collection, and the state.
pub fn prepare(cfg: Config) -> Result<(Config, State), Error> {
    let file = StateFile::new(&cfg.checkpoint.snapshot_path());
    let path = cfg.checkpoint.rebuild_path();
    match std::fs::read(&path) {
        Ok(bytes) => {
            let r: Request = serde_json::from_slice(&bytes).map_err(|e| {
                Error::config(
                    "checkpoint.path",
                    format!(
                        "{} is not a rebuild request ({e}); delete it and run `pg2qdrant rebuild` again",
                        path.display()
                    ),
                )
            })?;
            file.accept_rebuild(&r.alias, r.rebuild.clone())?;
            std::fs::remove_file(&path).map_err(Error::io(format!("remove {}", path.display())))?;
            tracing::info!(alias = %r.alias, old = %r.rebuild.old, new = %r.rebuild.target, tables = ?r.rebuild.tables,
                "rebuild requested: copying into the new collection while streaming into both");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("read {}", path.display()))(e)),
    }
    let state = file.load()?;
    Ok((effective(cfg, &state), state))
}

/// `cfg` with every table of a rebuild in `state` writing the rebuild's new collection.
pub fn effective(mut cfg: Config, state: &State) -> Config {
    for (alias, r) in &state.rebuilds {
        for t in cfg.tables.iter_mut().filter(|t| t.collection == *alias) {
            *t = writing(t, &r.target);
        }
    }
    cfg
}

/// For `check` (reads only): the snapshot state with a request not taken yet counted in.
pub fn planned(cfg: &Config) -> State {
    let mut state = StateFile::new(&cfg.checkpoint.snapshot_path())
        .load()
        .unwrap_or_default();
    if let Some(r) = std::fs::read(cfg.checkpoint.rebuild_path())
        .ok()
        .and_then(|b| serde_json::from_slice::<Request>(&b).ok())
    {
        state.rebuilds.insert(r.alias, r.rebuild);
    }
    state
}

/// For `check`: rebuilds in progress and a request not taken yet, as `(alias, what)`.
pub fn status(cfg: &Config) -> Result<Vec<(String, String)>, Error> {
    let state = StateFile::new(&cfg.checkpoint.snapshot_path()).load()?;
    let mut out: Vec<(String, String)> = state
        .rebuilds
        .iter()
        .map(|(alias, r)| {
            (
                alias.clone(),
                format!(
                    "rebuilding into {} (searches use {} until the copy is done)",
                    r.target, r.old
                ),
            )
        })
        .collect();
    if let Ok(bytes) = std::fs::read(cfg.checkpoint.rebuild_path()) {
        match serde_json::from_slice::<Request>(&bytes) {
            Ok(r) => out.push((
                r.alias,
                format!(
                    "rebuild into {} requested; the connector's next start builds it",
                    r.rebuild.target
                ),
            )),
            Err(e) => out.push((
                "?".to_owned(),
                format!(
                    "{} is not a rebuild request: {e}",
                    cfg.checkpoint.rebuild_path().display()
                ),
            )),
        }
    }
    Ok(out)
}

/// Gives each mapping of a rebuilt table the shadow that keeps its old collection current
/// (see the module doc for when there is none).
pub async fn attach_shadows(
    cfg: &Config,
    state: &State,
    catalog: &Catalog,
    client: &Qdrant,
    mappings: &mut [TableMapping],
) -> Result<(), Error> {
    let identities = crate::pipeline::embedding::identities(&cfg.embedders)?;
    for r in state.rebuilds.values() {
        for (t, mapping) in cfg.tables.iter().zip(mappings.iter_mut()) {
            if t.collection != r.target {
                continue;
            }
            let table = TableName::parse(&t.table);
            match shadow_config(client, t, &r.old, &identities).await? {
                Ok(old) => {
                    let mut compiled = crate::app::compile(catalog, &[old], &cfg.embedders).await?;
                    let shadow = compiled.pop().expect("one table compiled");
                    *mapping = mapping.clone().with_shadow(shadow);
                    tracing::info!(table = %table, old = %r.old, "the collection being replaced is kept current until the switch");
                }
                Err(why) => {
                    tracing::warn!(table = %table, old = %r.old, "the collection being replaced is not written until the switch (searches see it as it is): {why}")
                }
            }
        }
    }
    Ok(())
}

/// The table's config writing the old collection `old` with its vectors' sizes and the
/// embedder its points were built with; `Err(why)` when that cannot be.
async fn shadow_config(
    client: &Qdrant,
    t: &TableConfig,
    old: &str,
    identities: &std::collections::HashMap<String, String>,
) -> Result<Result<TableConfig, String>, Error> {
    if !client
        .collection_exists(old)
        .await
        .map_err(Error::qdrant(format!("look up collection {old}")))?
    {
        return Ok(Err(format!("collection {old} is gone")));
    }
    let params = collections::vector_params(client, old).await?;
    let mut s = writing(t, old);
    s.collection_config.create = false;
    let record = embedded_record(client, old, &TableName::parse(&t.table).to_string()).await?;
    let mut vectors: Vec<(
        &str,
        &mut u64,
        &mut crate::config::Distance,
        &mut Option<String>,
    )> = match &mut s.vector {
        Some(v) => vec![("", &mut v.size, &mut v.distance, &mut v.embed)],
        None => s
            .vectors
            .iter_mut()
            .map(|v| (v.name.as_str(), &mut v.size, &mut v.distance, &mut v.embed))
            .collect(),
    };
    for (name, size, distance, embed) in vectors.iter_mut() {
        let Some((_, old_size, old_distance)) = params.iter().find(|(n, ..)| n == name) else {
            return Ok(Err(format!("it has no vector {name:?}")));
        };
        **size = *old_size;
        **distance = *old_distance;
        if embed.is_some() {
            let field = crate::pipeline::embedding::record_name(name);
            let Some(model) = record
                .as_ref()
                .and_then(|r| r.get(field)?.get("model")?.as_str())
            else {
                return Ok(Err(format!(
                    "none of its points records the model of vector {name:?}"
                )));
            };
            let Some((embedder, _)) = identities.iter().find(|(_, id)| *id == model) else {
                return Ok(Err(format!(
                    "its vectors were built by {model}, which no [[embedders]] entry is: keep that entry in the config during the rebuild to keep it current"
                )));
            };
            **embed = Some(embedder.clone());
        }
    }
    Ok(Ok(s))
}

/// `_pg2qdrant.embedded` of one point of `table` in `collection`, if any.
async fn embedded_record(
    client: &Qdrant,
    collection: &str,
    table: &str,
) -> Result<Option<serde_json::Value>, Error> {
    use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
    use qdrant_client::qdrant::{Condition, Filter, PayloadIncludeSelector, ScrollPointsBuilder};
    let page = client
        .scroll(
            ScrollPointsBuilder::new(collection)
                .filter(Filter::must([
                    Condition::matches(format!("{META_FIELD}.table"), table.to_owned()),
                    Filter::must_not([Condition::is_empty(format!("{META_FIELD}.embedded"))])
                        .into(),
                ]))
                .limit(1)
                .with_payload(SelectorOptions::Include(PayloadIncludeSelector {
                    fields: vec![format!("{META_FIELD}.embedded")],
                }))
                .with_vectors(false),
        )
        .await
        .map_err(Error::qdrant(format!("read a point of {collection}")))?;
    Ok(page.result.into_iter().next().and_then(|p| {
        let payload = serde_json::Value::from(qdrant_client::Payload::from(p.payload));
        payload.get(META_FIELD)?.get("embedded").cloned()
    }))
}

const EVERY: Duration = Duration::from_secs(1);

/// Switches each rebuild whose copy is durable: alias → new collection, old one retired and
/// dropped, rebuild forgotten. Failures are retried on the next round.
pub async fn supervise(
    coordinator: Arc<Coordinator>,
    mappings: Arc<Mappings>,
    sink: Arc<QdrantSink>,
    client: Qdrant,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        for (alias, r) in coordinator.rebuilds_ready() {
            let switched = switch(&alias, &r, &mappings, &sink, &client).await;
            if let Err(e) = switched.and_then(|()| coordinator.rebuild_finished(&alias)) {
                tracing::warn!(alias = %alias, error = %e, "switching the rebuilt collection failed; retrying");
            }
        }
    }
}

async fn switch(
    alias: &str,
    r: &Rebuild,
    mappings: &Mappings,
    sink: &QdrantSink,
    client: &Qdrant,
) -> Result<(), Error> {
    collections::point_alias(client, alias, &r.target).await?;
    tracing::info!(alias, collection = %r.target, "rebuild done: the alias points at the new collection");
    for m in mappings
        .values()
        .filter(|m| r.tables.contains(&m.table.to_string()))
    {
        if m.retire_shadow().is_some() {
            tracing::debug!(table = %m.table, "old collection no longer written");
        }
    }
    sink.retire(&r.old);
    let exists = client
        .collection_exists(&r.old)
        .await
        .map_err(Error::qdrant(format!("look up collection {}", r.old)))?;
    if exists && r.old != r.target {
        client
            .delete_collection(&r.old)
            .await
            .map_err(Error::qdrant(format!("drop collection {}", r.old)))?;
        tracing::info!(collection = %r.old, "dropped the replaced collection");
    }
    Ok(())
}
