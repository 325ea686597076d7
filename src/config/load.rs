//! Reading the file and applying `PG2QDRANT__SECTION__KEY` environment overrides.

use super::{Config, Format, SnapshotMode, TlsMode};
use crate::error::Error;
use std::path::Path;

pub const ENV_PREFIX: &str = "PG2QDRANT__";

/// Reads, overrides from the process environment, and validates.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(
            path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )
    })?;
    let mut cfg = parse(&text).map_err(|e| match e {
        Error::Config { field, message } if field.is_empty() => Error::Config {
            field: path.display().to_string(),
            message,
        },
        other => other,
    })?;
    apply_env(&mut cfg, std::env::vars())?;
    cfg.validate()?;
    Ok(cfg)
}

/// Parses TOML text (no env, no validation). Unknown keys are errors that name the key.
pub fn parse(text: &str) -> Result<Config, Error> {
    toml::from_str(text).map_err(|e| Error::config("", e.to_string().trim_end().to_owned()))
}

/// Applies `PG2QDRANT__SECTION__KEY=value` overrides. An unknown key under the prefix is an
/// error, as in the file, so a typo never silently does nothing.
pub fn apply_env(
    cfg: &mut Config,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), Error> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let bad = |what: &str| {
            Error::config(
                name.clone(),
                format!("{what} (got {:?})", redact_if_secret(&key, &value)),
            )
        };
        let num = |v: &str| v.parse::<u64>().map_err(|_| bad("expected a whole number"));
        let boolean = |v: &str| match v {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(bad("expected true or false")),
        };
        match key.as_str() {
            "source.url" => cfg.source.url = value,
            "source.slot" => cfg.source.slot = value,
            "source.publication" => cfg.source.publication = value,
            "source.create_slot" => cfg.source.create_slot = boolean(&value)?,
            "source.create_publication" => cfg.source.create_publication = boolean(&value)?,
            "source.tls" => {
                cfg.source.tls = match value.as_str() {
                    "disable" => TlsMode::Disable,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    _ => return Err(bad("expected disable, require, verify-ca or verify-full")),
                }
            }
            "source.ca_file" => cfg.source.ca_file = Some(value.into()),
            "source.status_interval_ms" => cfg.source.status_interval_ms = num(&value)?,
            "source.snapshot" => {
                cfg.source.snapshot = match value.as_str() {
                    "initial" => SnapshotMode::Initial,
                    "never" => SnapshotMode::Never,
                    "initial_only" => SnapshotMode::InitialOnly,
                    _ => return Err(bad("expected initial, never or initial_only")),
                }
            }
            "source.format" => {
                cfg.source.format = match value.as_str() {
                    "auto" => Format::Auto,
                    "text" => Format::Text,
                    "binary" => Format::Binary,
                    _ => return Err(bad("expected auto, text or binary")),
                }
            }
            "source.snapshot_on_slot_loss" => cfg.source.snapshot_on_slot_loss = boolean(&value)?,
            "source.heartbeat_ms" => cfg.source.heartbeat_ms = num(&value)?,
            "log.format" => {
                cfg.log.format = match value.as_str() {
                    "text" => crate::config::LogFormat::Text,
                    "json" => crate::config::LogFormat::Json,
                    _ => return Err(bad("expected text or json")),
                }
            }
            "source.snapshot_workers" => cfg.source.snapshot_workers = Some(num(&value)? as usize),
            "source.snapshot_chunk_pages" => {
                cfg.source.snapshot_chunk_pages =
                    u32::try_from(num(&value)?).map_err(|_| bad("too large"))?
            }
            "qdrant.url" => cfg.qdrant.url = value,
            "qdrant.api_key" => cfg.qdrant.api_key = Some(value).filter(|v| !v.is_empty()),
            "qdrant.batch_size" => cfg.qdrant.batch_size = num(&value)? as usize,
            "qdrant.linger_ms" => cfg.qdrant.linger_ms = num(&value)?,
            "qdrant.parallel" => cfg.qdrant.parallel = num(&value)? as usize,
            "qdrant.timeout_ms" => cfg.qdrant.timeout_ms = num(&value)?,
            "qdrant.max_backoff_ms" => cfg.qdrant.max_backoff_ms = num(&value)?,
            "qdrant.direct" => cfg.qdrant.direct = boolean(&value)?,
            k if k.starts_with("kafka.") => kafka_override(cfg, &k["kafka.".len()..], value.clone(), &bad)?,
            "checkpoint.path" => cfg.checkpoint.path = value.into(),
            "checkpoint.snapshot_path" => cfg.checkpoint.snapshot_path = Some(value.into()),
            "dead_letter.path" => cfg.dead_letter.path = value.into(),
            "metrics.addr" => cfg.metrics.addr = value,
            // PG2QDRANT__EMBEDDERS__<NAME>__PATH (THREADS, BATCH_SIZE, MAX_BATCH_TOKENS, RUNTIME,
            // QUANTIZE): the entry named <NAME>.
            k if k.starts_with("embedders.") => {
                let rest = &k["embedders.".len()..];
                let Some((entry, field)) = rest.rsplit_once('.') else {
                    return Err(bad("expected PG2QDRANT__EMBEDDERS__<NAME>__<PATH|THREADS|BATCH_SIZE|MAX_BATCH_TOKENS|RUNTIME|QUANTIZE>"));
                };
                let Some(e) = cfg
                    .embedders
                    .iter_mut()
                    .find(|e| e.name.to_ascii_lowercase() == entry)
                else {
                    return Err(bad("no [[embedders]] entry has that name"));
                };
                match field {
                    "path" => e.path = value.into(),
                    "threads" => e.threads = Some(num(&value)? as usize),
                    "batch_size" => e.batch_size = num(&value)? as usize,
                    "max_batch_tokens" => e.max_batch_tokens = num(&value)? as usize,
                    "runtime" => e.runtime = Some(value).filter(|p| !p.is_empty()).map(Into::into),
                    "quantize" => {
                        e.quantize = match value.as_str() {
                            "" | "none" => None,
                            "int8" => Some(crate::config::Quantize::Int8),
                            _ => return Err(bad("expected int8 or none")),
                        }
                    }
                    _ => return Err(bad("expected PATH, THREADS, BATCH_SIZE, MAX_BATCH_TOKENS, RUNTIME or QUANTIZE after the embedder name")),
                }
            }
            _ => {
                return Err(Error::config(
                    name.clone(),
                    "unknown override; known: SOURCE__{URL,SLOT,PUBLICATION,CREATE_SLOT,CREATE_PUBLICATION,TLS,CA_FILE,\
                     STATUS_INTERVAL_MS,SNAPSHOT,SNAPSHOT_ON_SLOT_LOSS,SNAPSHOT_WORKERS,SNAPSHOT_CHUNK_PAGES,FORMAT}, \
                     QDRANT__{URL,API_KEY,BATCH_SIZE,LINGER_MS,TIMEOUT_MS,MAX_BACKOFF_MS,DIRECT,PARALLEL}, \
                     KAFKA__{BROKERS,TOPIC_TEMPLATE,PARTITIONS,REPLICATION_FACTOR,GROUP_ID,DLQ_TOPIC,PROPERTIES__<NAME>}, \
                     CHECKPOINT__{PATH,SNAPSHOT_PATH}, DEAD_LETTER__PATH, METRICS__ADDR, \
                     EMBEDDERS__<NAME>__{PATH,THREADS,BATCH_SIZE,MAX_BATCH_TOKENS,RUNTIME,QUANTIZE}"
                        .to_owned(),
                ))
            }
        }
    }
    Ok(())
}

/// `PG2QDRANT__KAFKA__<KEY>`; `PROPERTIES__SASL_PASSWORD` sets the librdkafka property
/// `sasl.password` (lower case, `_` for `.`). Creates the section when the file has none.
fn kafka_override(
    cfg: &mut Config,
    key: &str,
    value: String,
    bad: &dyn Fn(&str) -> Error,
) -> Result<(), Error> {
    let k = cfg
        .kafka
        .get_or_insert_with(|| super::KafkaConfig::with_brokers(String::new()));
    let int = |v: &str| v.parse::<i32>().map_err(|_| bad("expected a whole number"));
    match key {
        "brokers" => k.brokers = value,
        "topic_template" => k.topic_template = value,
        "partitions" => k.partitions = int(&value)?,
        "replication_factor" => k.replication_factor = int(&value)?,
        "group_id" => k.group_id = value,
        "dlq_topic" => k.dlq_topic = value,
        p if p.starts_with("properties.") => {
            let name = p["properties.".len()..].replace(['_', '.'], ".");
            if name.is_empty() {
                return Err(bad("expected PG2QDRANT__KAFKA__PROPERTIES__<NAME>, e.g. PROPERTIES__SASL_PASSWORD for sasl.password"));
            }
            k.properties.insert(name, value);
        }
        _ => return Err(bad("expected BROKERS, TOPIC_TEMPLATE, PARTITIONS, REPLICATION_FACTOR, GROUP_ID, DLQ_TOPIC or PROPERTIES__<NAME> after KAFKA")),
    }
    Ok(())
}

fn redact_if_secret<'a>(key: &str, value: &'a str) -> &'a str {
    if key.contains("url") || key.contains("key") || super::kafka::is_secret(key) {
        "<redacted>"
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [source]
        url = "postgres://u@127.0.0.1/db"
        slot = "s"
        publication = "p"
        [[tables]]
        table = "public.t"
        collection = "c"
        vector = { column = "v", size = 3, distance = "Cosine" }
    "#;

    /// The README's minimal configuration, as a reader would copy it.
    fn readme_minimal() -> String {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## A minimal configuration")
            .nth(1)
            .expect("the README has a minimal configuration");
        let block = section
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block in it");
        block.to_owned()
    }

    #[test]
    fn the_readme_minimal_configuration_loads_and_validates() {
        let cfg = parse(&readme_minimal()).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.tables.len(), 1);
        assert!(cfg.tables[0].collection_config.create);
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = parse(&MINIMAL.replace("slot = \"s\"", "slot = \"s\"\nslott = 1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("slott"), "{err}");
    }

    #[test]
    fn env_overrides_win_and_unknown_env_is_rejected() {
        let mut cfg = parse(MINIMAL).unwrap();
        apply_env(
            &mut cfg,
            [
                ("PG2QDRANT__SOURCE__SLOT".to_owned(), "other".to_owned()),
                ("PG2QDRANT__QDRANT__BATCH_SIZE".to_owned(), "7".to_owned()),
                ("UNRELATED".to_owned(), "x".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(cfg.source.slot, "other");
        assert_eq!(cfg.qdrant.batch_size, 7);
        let err = apply_env(
            &mut cfg,
            [("PG2QDRANT__SOURCE__SLOTT".to_owned(), "x".to_owned())],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("PG2QDRANT__SOURCE__SLOTT"),
            "{err}"
        );
        let err = apply_env(
            &mut cfg,
            [("PG2QDRANT__QDRANT__LINGER_MS".to_owned(), "soon".to_owned())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
    }

    #[test]
    fn kafka_overrides_create_the_section_and_map_property_names() {
        let mut cfg = parse(MINIMAL).unwrap();
        apply_env(
            &mut cfg,
            [
                ("PG2QDRANT__KAFKA__BROKERS".to_owned(), "k:9092".to_owned()),
                ("PG2QDRANT__KAFKA__PARTITIONS".to_owned(), "6".to_owned()),
                (
                    "PG2QDRANT__KAFKA__PROPERTIES__SASL_PASSWORD".to_owned(),
                    "s3cret".to_owned(),
                ),
            ],
        )
        .unwrap();
        let k = cfg.kafka.as_ref().unwrap();
        assert_eq!((k.brokers.as_str(), k.partitions), ("k:9092", 6));
        assert_eq!(k.properties["sasl.password"], "s3cret");
        let err = apply_env(
            &mut cfg,
            [
                (
                    "PG2QDRANT__KAFKA__PROPERTIES__SASL_PASSWORD".to_owned(),
                    String::new(),
                ),
                ("PG2QDRANT__KAFKA__PARTITIONS".to_owned(), "many".to_owned()),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("PG2QDRANT__KAFKA__PARTITIONS"), "{err}");
    }
}
