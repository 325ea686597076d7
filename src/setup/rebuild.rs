//! The set-up side of a rebuild (see `rebuild` for the whole design and why the switch is
//! safe): the request file, taking it into the snapshot state at start, the config with every
//! rebuilt table writing its new collection, and the shadow mappings that keep the old
//! collections current until the switch (`snapshot::switch`).

use crate::checkpoint::state::{Rebuild, State, StateFile};
use crate::config::{Config, TableConfig, META_FIELD};
use crate::error::Error;
use crate::event::TableName;
use crate::mapping::TableMapping;
use crate::sink::qdrant::collections;
use crate::source::catalog::Catalog;
use qdrant_client::Qdrant;
use serde::{Deserialize, Serialize};

/// What `pg2qdrant rebuild` asks of the connector's next start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub alias: String,
    #[serde(flatten)]
    pub rebuild: Rebuild,
}

/// The request `pg2qdrant rebuild` left at `path`, if any. An unreadable or corrupt file is an
/// error naming it and the fix, never "no request".
pub fn read_request(path: &std::path::Path) -> Result<Option<Request>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::io(format!(
                "read rebuild request {}",
                path.display()
            ))(e))
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::config(
            "checkpoint.path",
            format!(
                "{} is not a rebuild request ({e}); delete it and run `pg2qdrant rebuild` again",
                path.display()
            ),
        )
    })
}

/// `t` writing the collection `name` itself (not through its alias).
pub fn writing(t: &TableConfig, name: &str) -> TableConfig {
    let mut t = t.clone();
    t.collection = name.to_owned();
    t.collection_config.alias = false;
    t.collection_config.create = true;
    t
}

/// Why a rebuild needs `qdrant.direct = true`, and the way.
pub fn needs_direct(alias: &str) -> Error {
    Error::config(
        "qdrant.direct",
        format!(
            "rebuilding {alias} needs the connector to write Qdrant itself: it switches the alias when the new collection holds every row, and with direct = false appliers write Qdrant, so it cannot know when that is. Set qdrant.direct = true for the rebuild (appliers may keep running: they write the alias, which is the old collection until the switch, fenced), and back to false once `pg2qdrant check` no longer lists the rebuild"
        ),
    )
}

/// At start: takes a pending request into the snapshot state, then returns the config with
/// every table of a rebuild writing its new collection, and the state. A rebuild needs the
/// direct path ([`needs_direct`]).
pub fn prepare(cfg: Config) -> Result<(Config, State), Error> {
    let file = StateFile::new(&cfg.checkpoint.snapshot_path());
    let path = cfg.checkpoint.rebuild_path();
    if !cfg.qdrant.direct {
        let pending = read_request(&path)?.map(|r| r.alias);
        let taken = file.load()?.rebuilds.into_keys().next();
        if let Some(alias) = pending.or(taken) {
            return Err(needs_direct(&alias));
        }
    }
    if let Some(r) = read_request(&path)? {
        file.accept_rebuild(&r.alias, r.rebuild.clone())?;
        std::fs::remove_file(&path).map_err(Error::io(format!("remove {}", path.display())))?;
        tracing::info!(alias = %r.alias, old = %r.rebuild.old, new = %r.rebuild.target, tables = ?r.rebuild.tables,
            "rebuild requested: copying into the new collection while streaming into both");
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
pub fn planned(cfg: &Config) -> Result<State, Error> {
    let mut state = StateFile::new(&cfg.checkpoint.snapshot_path()).load()?;
    if let Some(r) = read_request(&cfg.checkpoint.rebuild_path())? {
        state.rebuilds.insert(r.alias, r.rebuild);
    }
    Ok(state)
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
    if let Some(r) = read_request(&cfg.checkpoint.rebuild_path())? {
        out.push((
            r.alias,
            format!(
                "rebuild into {} requested; the connector's next start builds it",
                r.rebuild.target
            ),
        ));
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
    let identities = crate::embed::record::identities(&cfg.embedders)?;
    for r in state.rebuilds.values() {
        for (t, mapping) in cfg.tables.iter().zip(mappings.iter_mut()) {
            if t.collection != r.target {
                continue;
            }
            let table = TableName::parse(&t.table);
            match shadow_config(client, t, &r.old, &identities).await? {
                Ok(old) => {
                    let mut compiled =
                        super::compile::compile(catalog, &[old], &cfg.embedders).await?;
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
    let (params, custom) = collections::vector_params(client, old).await?;
    let mut s = writing(t, old);
    s.collection_config.create = false;
    // The old collection keeps its own sharding: custom needs the column that placed its points.
    match (custom, &s.collection_config.sharding) {
        (false, _) => s.collection_config.sharding = None,
        (true, Some(_)) => {}
        (true, None) => {
            return Ok(Err(
                "it uses custom sharding, and the config no longer names the column of its shard keys (collection_config.sharding)".to_owned(),
            ))
        }
    }
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
            let field = crate::embed::record::record_name(name);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_rebuild_request_is_an_error_naming_the_file_not_no_request() {
        let dir = std::env::temp_dir().join(format!("pg2qdrant-rq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rebuild.json");
        assert!(read_request(&path).unwrap().is_none());
        std::fs::write(&path, b"{\"alias\": ").unwrap();
        let e = read_request(&path).unwrap_err();
        assert!(e.to_string().contains("rebuild.json"), "{e}");
        assert!(e.to_string().contains("pg2qdrant rebuild"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
