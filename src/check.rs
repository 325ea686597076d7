//! `pg2qdrant check`: the config and every live prerequisite, one line per check.

use crate::config::Config;
use crate::sink::qdrant::{self, collections};
use crate::source::catalog::{Catalog, CheckLine};

/// Runs every check; the caller prints them and exits non-zero when any failed.
pub async fn run(cfg: &Config) -> Vec<CheckLine> {
    let mut lines = vec![CheckLine {
        ok: true,
        what: "config".into(),
        detail: "valid".into(),
    }];
    lines.extend(copies(cfg));
    lines.extend(embedders(cfg));
    lines.extend(kafka(cfg).await);
    lines.extend(postgres(cfg).await);
    let Some(client) = qdrant(cfg, &mut lines).await else {
        return lines;
    };
    lines.extend(rebuilds(cfg));
    // During a rebuild the tables write its new collection: check that one (the state's error
    // is the "rebuild state" line above; the configured collections are checked then).
    let planned = crate::setup::rebuild::planned(cfg).unwrap_or_default();
    let effective = crate::setup::rebuild::effective(cfg.clone(), &planned);
    for (i, t) in effective.tables.iter().enumerate() {
        lines.extend(collection(&client, i, t).await);
    }
    lines
}

/// PostgreSQL reachable, then its prerequisites: wal_level, keys, slot, publication, the
/// point ids and the value format.
async fn postgres(cfg: &Config) -> Vec<CheckLine> {
    let c = match Catalog::connect(&cfg.source).await {
        Ok(c) => c,
        Err(e) => {
            return vec![CheckLine {
                ok: false,
                what: "postgres".into(),
                detail: match e.hint() {
                    Some(h) => format!("{e}; fix: {h}"),
                    None => e.to_string(),
                },
            }]
        }
    };
    let mut lines = vec![CheckLine {
        ok: true,
        what: "postgres".into(),
        detail: "reachable".into(),
    }];
    lines.extend(c.check(&cfg.source, &cfg.tables).await);
    lines.extend(c.check_publication(&cfg.source, &cfg.tables).await);
    lines.push(ids(&c, cfg).await);
    lines.push(format(&c, cfg).await);
    lines
}

/// Qdrant's client when Qdrant answers (its line added either way).
async fn qdrant(cfg: &Config, lines: &mut Vec<CheckLine>) -> Option<qdrant_client::Qdrant> {
    let client = match qdrant::client(&cfg.qdrant) {
        Ok(c) => c,
        Err(e) => {
            lines.push(CheckLine {
                ok: false,
                what: "qdrant".into(),
                detail: e.to_string(),
            });
            return None;
        }
    };
    match client.health_check().await {
        Ok(h) => lines.push(CheckLine {
            ok: true,
            what: "qdrant".into(),
            detail: format!("reachable, version {}", h.version),
        }),
        Err(e) => {
            lines.push(CheckLine {
                ok: false,
                what: "qdrant".into(),
                detail: format!("{e}: is Qdrant running at qdrant.url?"),
            });
            return None;
        }
    }
    Some(client)
}

/// A line per rebuild in progress, or the state file's error.
fn rebuilds(cfg: &Config) -> Vec<CheckLine> {
    match crate::setup::rebuild::status(cfg) {
        Ok(rebuilds) => rebuilds
            .into_iter()
            .map(|(alias, detail)| CheckLine {
                ok: true,
                what: format!("rebuild of {alias}"),
                detail,
            })
            .collect(),
        Err(e) => vec![CheckLine {
            ok: false,
            what: "rebuild state".into(),
            detail: e.to_string(),
        }],
    }
}

/// Table `i`'s collection: whether it is an alias, exists (or will be created) and is
/// compatible, and its payload indexes.
async fn collection(
    client: &qdrant_client::Qdrant,
    i: usize,
    t: &crate::config::TableConfig,
) -> Vec<CheckLine> {
    let behind = match collections::alias_target(client, &t.collection).await {
        Ok(Some(c)) => format!(" (an alias of {c})"),
        Ok(None) => String::new(),
        Err(e) => {
            return vec![CheckLine {
                ok: false,
                what: format!("tables[{i}] collection {}", t.collection),
                detail: format!("looking up whether it is an alias failed: {e}"),
            }]
        }
    };
    let what = format!("tables[{i}] collection {}{behind}", t.collection);
    let line = |ok: bool, detail: String| CheckLine {
        ok,
        what: what.clone(),
        detail,
    };
    let (state, exists) = match client.collection_exists(&t.collection).await {
        Ok(false) if t.collection_config.create => (
            line(true, "missing; will be created at start".into()),
            false,
        ),
        Ok(false) => (
            line(false, "missing and collection_config.create = false".into()),
            false,
        ),
        Ok(true) => match collections::compatible(client, t).await {
            Ok(Ok(())) => (line(true, "exists and is compatible".into()), true),
            Ok(Err(p)) => (line(false, format!("incompatible: {p}")), false),
            Err(e) => (line(false, e.to_string()), false),
        },
        Err(e) => (line(false, e.to_string()), false),
    };
    let mut lines = vec![state];
    if !t.collection_config.payload_indexes.is_empty() && exists {
        // Informational: the connector creates what is missing at start.
        lines.push(match collections::indexes(client, t).await {
            Ok(phrases) => CheckLine {
                ok: true,
                what: format!("tables[{i}] payload indexes of {}", t.collection),
                detail: phrases.join("; "),
            },
            Err(e) => failed(&format!("tables[{i}] payload indexes"), &e),
        });
    }
    lines
}

/// Where each table's copy of existing rows stands (from the copy state file).
fn copies(cfg: &Config) -> Vec<CheckLine> {
    use crate::checkpoint::state::{StateFile, Status};
    use crate::config::SnapshotMode;
    let file = StateFile::new(&cfg.checkpoint.snapshot_path());
    let state = match file.load() {
        Ok(s) => s,
        Err(e) => {
            return vec![CheckLine {
                ok: false,
                what: "copy state".into(),
                detail: e.to_string(),
            }]
        }
    };
    cfg.tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let name = crate::event::TableName::parse(&t.table).to_string();
            let detail = match state.tables.get(&name) {
                Some(c) if c.status == Status::Done => format!("copy done ({})", c.reason),
                Some(c) => format!(
                    "copying ({}): {} of {} chunks durable, resumes at start",
                    c.reason,
                    c.done.len(),
                    c.chunks.map_or("?".to_owned(), |n| n.to_string())
                ),
                None if cfg.source.snapshot == SnapshotMode::Never => {
                    "existing rows are not copied (source.snapshot = never)".to_owned()
                }
                None => "existing rows are copied at start".to_owned(),
            };
            CheckLine {
                ok: true,
                what: format!("tables[{i}] {name}"),
                detail,
            }
        })
        .collect()
}

/// A check that could not run: the error, with its fix when known.
fn failed(what: &str, e: &crate::Error) -> CheckLine {
    CheckLine {
        ok: false,
        what: what.into(),
        detail: match e.hint() {
            Some(h) => format!("cannot be checked: {e}; fix: {h}"),
            None => format!("cannot be checked: {e}"),
        },
    }
}

/// Whether two tables' point ids can collide in one collection.
async fn ids(c: &Catalog, cfg: &Config) -> CheckLine {
    let spaces = async {
        let keys = c.resolve_keys(&cfg.tables).await?;
        let mut spaces = Vec::with_capacity(keys.len());
        for (t, key) in cfg.tables.iter().zip(&keys) {
            spaces.push(crate::setup::compile::id_space(c, t, key).await?);
        }
        Ok::<_, crate::Error>(spaces)
    };
    let spaces = match spaces.await {
        Ok(s) => s,
        Err(e) => return failed("point ids", &e),
    };
    match crate::setup::compile::refuse_colliding_ids(&cfg.tables, &spaces) {
        Ok(()) => CheckLine {
            ok: true,
            what: "point ids".into(),
            detail: "no two tables can write the same id into one collection".into(),
        },
        Err(e) => CheckLine {
            ok: false,
            what: "point ids".into(),
            detail: e.to_string(),
        },
    }
}

/// Which form values will travel in, and why text when it is text.
async fn format(c: &Catalog, cfg: &Config) -> CheckLine {
    let what = "source.format";
    let mappings = match crate::setup::compile::compile(c, &cfg.tables, &cfg.embedders).await {
        Ok(m) => m,
        Err(e) => return failed(what, &e),
    };
    match crate::source::format::decide(c, cfg.source.format, &mappings).await {
        Ok((true, _)) => CheckLine {
            ok: true,
            what: what.into(),
            detail: "binary".into(),
        },
        Ok((false, why)) => CheckLine {
            ok: true,
            what: what.into(),
            detail: format!("text: {}", why.unwrap_or_default()),
        },
        Err(e) => failed(what, &e),
    }
}

/// Each embedder's model files (local) or settings (openai), without loading a model.
fn embedders(cfg: &Config) -> Vec<CheckLine> {
    cfg.embedders
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let what = format!("embedder {}", e.name);
            match e.kind {
                crate::config::EmbedderKind::Local => {
                    let runtime = crate::embed::runtime::library(e.runtime.as_deref())
                        .filter(|p| p.is_file());
                    let precision = crate::embed::precision(e);
                    match crate::embed::LocalEmbedder::identity_of(&e.path, precision) {
                        Ok(_) if runtime.is_none() => CheckLine {
                            ok: false,
                            what,
                            detail: format!(
                                "embedders[{i}].runtime: no ONNX Runtime library at {}; set it (or ORT_DYLIB_PATH) to libonnxruntime.so of PyPI's onnxruntime wheel, {} or later",
                                e.runtime.as_ref().map_or_else(
                                    || "ORT_DYLIB_PATH (unset)".to_owned(),
                                    |p| p.display().to_string()
                                ),
                                crate::embed::runtime::MIN_VERSION
                            ),
                        },
                        Ok(id) => CheckLine {
                            ok: true,
                            what,
                            detail: format!(
                                "model files present ({id}); ONNX Runtime library at {}",
                                runtime.unwrap_or_default().display()
                            ),
                        },
                        Err(err) => CheckLine {
                            ok: false,
                            what,
                            detail: err.to_string(),
                        },
                    }
                }
                crate::config::EmbedderKind::Openai => {
                    match e.api_key_env.as_ref().filter(|v| std::env::var(v).is_err()) {
                        Some(var) => CheckLine {
                            ok: false,
                            what,
                            detail: format!("the API key variable {var} is not set"),
                        },
                        None => CheckLine {
                            ok: true,
                            what,
                            detail: format!(
                                "{} at {} (not called by check)",
                                e.model.as_deref().unwrap_or("?"),
                                e.url.as_deref().unwrap_or("?")
                            ),
                        },
                    }
                }
            }
        })
        .collect()
}

/// `[kafka]`: the brokers answer, and each table's topic (and the dead-letter topic) exists or
/// can be created (asked of the brokers with validate-only creation).
async fn kafka(cfg: &Config) -> Vec<CheckLine> {
    let Some(k) = &cfg.kafka else {
        return Vec::new();
    };
    let line = |ok: bool, what: String, detail: String| CheckLine { ok, what, detail };
    let mut topics: Vec<String> = cfg
        .tables
        .iter()
        .map(|t| {
            let t = crate::event::TableName::parse(&t.table);
            k.topic(&t.schema, &t.name)
        })
        .collect();
    topics.push(k.dlq_topic.clone());
    let existing = match crate::kafka::client::partitions(k, &topics).await {
        Ok(e) => e,
        Err(e) => {
            return vec![line(
                false,
                "kafka".into(),
                format!("{e}: are kafka.brokers ({}) reachable, and kafka.properties right for their security?", k.brokers),
            )]
        }
    };
    let mut out = vec![line(
        true,
        "kafka".into(),
        format!("brokers {} reachable", k.brokers),
    )];
    for t in &topics {
        out.push(match existing.get(t) {
            Some(n) => line(true, format!("topic {t}"), format!("exists, {n} partitions")),
            None => match crate::kafka::client::can_create(k, t).await {
                Ok(()) => line(
                    true,
                    format!("topic {t}"),
                    format!(
                        "missing: created at start with {} partitions, replication factor {}",
                        k.partitions, k.replication_factor
                    ),
                ),
                Err(e) => line(
                    false,
                    format!("topic {t}"),
                    format!("missing, and the brokers refuse to create it: {e}; create it yourself or fix kafka.partitions / kafka.replication_factor"),
                ),
            },
        });
    }
    out
}
