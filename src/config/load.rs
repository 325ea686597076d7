//! Reading the file, with the environment's overrides (`env`) applied to its tree.

use super::Config;
use crate::error::Error;
use std::path::Path;

/// Reads, overrides from the process environment, and validates.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(
            path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )
    })?;
    let cfg = with_env(&text, std::env::vars()).map_err(|e| match e {
        Error::Config { field, message } if field.is_empty() => Error::Config {
            field: path.display().to_string(),
            message,
        },
        other => other,
    })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Parses TOML text (no env, no validation). Unknown keys are errors that name the key.
pub fn parse(text: &str) -> Result<Config, Error> {
    with_env(text, std::iter::empty())
}

/// Parses TOML text with the `PG2QDRANT__*` variables among `vars` applied (no validation; see
/// `env`). A key the file lacks may come from the environment. An error of the file's own is
/// given as toml's strict reading gives it, with its line, when that reading finds the same.
pub fn with_env(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, Error> {
    let tree: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::config("", e.to_string().trim_end().to_owned()))?;
    super::env::read(tree, vars).map_err(|e| match &e {
        Error::Config { field, message } if !field.starts_with(super::env::ENV_PREFIX) => {
            match toml::from_str::<Config>(text) {
                Err(strict) if strict.to_string().contains(message.as_str()) => {
                    Error::config("", strict.to_string().trim_end().to_owned())
                }
                _ => e,
            }
        }
        _ => e,
    })
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
    fn distance_takes_qdrant_spelling_and_all_lower_or_upper_case() {
        for spelled in ["Cosine", "cosine", "COSINE"] {
            let cfg = parse(&MINIMAL.replace("\"Cosine\"", &format!("\"{spelled}\""))).unwrap();
            let v = cfg.tables[0].vector.as_ref().unwrap();
            assert_eq!(v.distance, super::super::Distance::Cosine, "{spelled}");
        }
        let err = parse(&MINIMAL.replace("\"Cosine\"", "\"cosinus\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cosinus"), "{err}");
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = parse(&MINIMAL.replace("slot = \"s\"", "slot = \"s\"\nslott = 1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("slott"), "{err}");
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_overrides_win_and_unknown_env_is_rejected() {
        let cfg = with_env(
            MINIMAL,
            env(&[
                ("PG2QDRANT__SOURCE__SLOT", "123"),
                ("PG2QDRANT__QDRANT__BATCH_SIZE", "7"),
                ("PG2QDRANT__QDRANT__DIRECT", "false"),
                ("PG2QDRANT__SOURCE__TLS", "verify-full"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            cfg.source.slot, "123",
            "a string field keeps a numeric value"
        );
        assert_eq!(cfg.qdrant.batch_size, 7);
        assert!(!cfg.qdrant.direct);
        assert_eq!(cfg.source.tls, super::super::TlsMode::VerifyFull);
        let err = with_env(MINIMAL, env(&[("PG2QDRANT__SOURCE__SLOTT", "x")])).unwrap_err();
        assert!(
            err.to_string().contains("PG2QDRANT__SOURCE__SLOTT"),
            "{err}"
        );
        let err = with_env(MINIMAL, env(&[("PG2QDRANT__QDRANT__LINGER_MS", "soon")])).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("PG2QDRANT__QDRANT__LINGER_MS") && err.contains("a number"),
            "{err}"
        );
        let err = with_env(MINIMAL, env(&[("PG2QDRANT__SOURCE__TLS", "sometimes")])).unwrap_err();
        assert!(err.to_string().contains("PG2QDRANT__SOURCE__TLS"), "{err}");
    }

    #[test]
    fn a_key_the_file_lacks_comes_from_the_environment_and_an_empty_value_is_none_or_empty() {
        let text = MINIMAL.replace("url = \"postgres://u@127.0.0.1/db\"", "");
        let file_only = with_env(&text, Vec::new()).unwrap_err().to_string();
        assert!(file_only.contains("url"), "{file_only}");
        let cfg = with_env(
            &format!("{text}\n[qdrant]\napi_key = \"k\"\n"),
            env(&[
                ("PG2QDRANT__SOURCE__URL", "postgres://e@db/x"),
                ("PG2QDRANT__QDRANT__API_KEY", ""),
                ("PG2QDRANT__METRICS__ADDR", ""),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.source.url, "postgres://e@db/x");
        assert_eq!(cfg.qdrant.api_key, None, "empty: an optional key is none");
        assert_eq!(
            cfg.metrics.addr, "",
            "empty: a text key is empty (no endpoint)"
        );
    }

    #[test]
    fn embedders_are_overridden_by_name_and_tables_not_at_all() {
        let text = format!("{MINIMAL}\n[[embedders]]\nname = \"MiniLM\"\npath = \"/m\"\n");
        let cfg = with_env(
            &text,
            env(&[
                ("PG2QDRANT__EMBEDDERS__MINILM__PATH", "/models/x"),
                ("PG2QDRANT__EMBEDDERS__MINILM__THREADS", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.embedders[0].path, std::path::PathBuf::from("/models/x"));
        assert_eq!(cfg.embedders[0].threads, Some(3));
        let err = with_env(&text, env(&[("PG2QDRANT__EMBEDDERS__OTHER__PATH", "/x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no [[embedders]] entry"), "{err}");
        let err = with_env(&text, env(&[("PG2QDRANT__TABLES__0__TABLE", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PG2QDRANT__TABLES__0__TABLE"), "{err}");
    }

    #[test]
    fn a_secret_value_is_left_out_of_the_error() {
        let err = with_env(
            MINIMAL,
            env(&[("PG2QDRANT__KAFKA__PROPERTIES__SASL_PASSWORD", "s3cret")]),
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        let err = with_env(MINIMAL, env(&[("PG2QDRANT__QDRANT__API_KEY__X", "s3cret")]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret") && err.contains("api_key"), "{err}");
        // Where a message does hold the value of a secret key, it is left out.
        let applied = super::super::env::tests::applied("PG2QDRANT__QDRANT__API_KEY", "s3cret");
        let err = super::super::env::tests::blame_of(&applied, "qdrant.api_key", "bad \"s3cret\"")
            .to_string();
        assert!(
            !err.contains("s3cret") && err.contains("<redacted>"),
            "{err}"
        );
    }

    #[test]
    fn an_error_of_the_file_is_the_file_s_even_with_variables_set() {
        let with_url = |text: &str| {
            with_env(
                text,
                env(&[("PG2QDRANT__SOURCE__URL", "postgres://e@db/x")]),
            )
            .unwrap_err()
            .to_string()
        };
        let err = with_url(&MINIMAL.replace("slot = \"s\"", "slot = \"s\"\nslott = 1"));
        assert!(
            err.contains("slott") && err.contains("line") && !err.contains("PG2QDRANT__"),
            "{err}"
        );
        let err = with_url(&MINIMAL.replace("slot = \"s\"\n", ""));
        assert!(
            err.contains("slot") && !err.contains("PG2QDRANT__SOURCE__URL"),
            "{err}"
        );
    }

    #[test]
    fn kafka_property_names_take_single_or_double_underscores() {
        for var in [
            "PG2QDRANT__KAFKA__PROPERTIES__SASL_PASSWORD",
            "PG2QDRANT__KAFKA__PROPERTIES__SASL__PASSWORD",
        ] {
            let cfg = with_env(
                MINIMAL,
                env(&[("PG2QDRANT__KAFKA__BROKERS", "k:9092"), (var, "p")]),
            )
            .unwrap();
            assert_eq!(cfg.kafka.unwrap().properties["sasl.password"], "p", "{var}");
        }
    }

    #[test]
    fn kafka_overrides_create_the_section_and_map_property_names() {
        let vars = [
            ("PG2QDRANT__KAFKA__PROPERTIES__SASL_PASSWORD", "s3cret"),
            ("PG2QDRANT__KAFKA__BROKERS", "k:9092"),
            ("PG2QDRANT__KAFKA__PARTITIONS", "6"),
        ];
        let cfg = with_env(MINIMAL, env(&vars)).unwrap();
        let k = cfg.kafka.as_ref().unwrap();
        assert_eq!((k.brokers.as_str(), k.partitions), ("k:9092", 6));
        assert_eq!(k.properties["sasl.password"], "s3cret");
        let err = with_env(
            MINIMAL,
            env(&[
                ("PG2QDRANT__KAFKA__BROKERS", "k:9092"),
                ("PG2QDRANT__KAFKA__PROPERTIES__SASL_PASSWORD", ""),
                ("PG2QDRANT__KAFKA__PARTITIONS", "many"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("PG2QDRANT__KAFKA__PARTITIONS"), "{err}");
    }
}
