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
//! The connector must write Qdrant itself (`qdrant.direct = true`): the switch waits for its
//! own durable writes of the new collection. Appliers (Kafka) write the alias, the old
//! collection until the switch; a rebuild with `direct = false` is refused, naming the way.
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

use crate::checkpoint::state::{Rebuild, StateFile};
use crate::config::Config;
use crate::error::Error;
use crate::event::TableName;
use crate::setup::rebuild::{read_request, writing, Request};
use crate::sink::qdrant::collections;

/// `pg2qdrant rebuild --table`: creates the new collection for the alias `table` writes (with
/// the config's settings) and leaves the request for the connector's next start.
pub async fn request(cfg: &Config, table: &str) -> Result<Request, Error> {
    let name = TableName::parse(table);
    let t = cfg.tables_named("--table", table)?[0];
    let alias = t.collection.clone();
    if !cfg.qdrant.direct {
        return Err(crate::setup::rebuild::needs_direct(&alias));
    }
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
    if let Some(earlier) = read_request(&path)?.filter(|r| r.alias == alias) {
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
