//! The `[kafka]` section: brokers, topics, and librdkafka properties passed through.
//!
//! Properties are handed to librdkafka as given (security.protocol, SASL, TLS, ...), except
//! the few that carry pg2qdrant's delivery guarantees, which are fixed and refused when set
//! otherwise (see [`KafkaConfig::validate`]). Secret-looking properties are never printed:
//! `Debug` shows `<redacted>` for them.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const DEFAULT_TOPIC_TEMPLATE: &str = "pg2qdrant.{schema}.{table}";
pub const DEFAULT_GROUP_ID: &str = "pg2qdrant";
pub const DEFAULT_DLQ_TOPIC: &str = "pg2qdrant.dlq";
pub const DEFAULT_PARTITIONS: i32 = 3;
pub const DEFAULT_REPLICATION_FACTOR: i32 = 1;
pub const DEFAULT_COMPRESSION: &str = "lz4";

/// Producer and consumer properties pg2qdrant sets itself: each with the only value that keeps
/// its guarantees (`None`: any value refused).
pub const FIXED_PROPERTIES: &[(&str, Option<&str>)] = &[
    ("enable.idempotence", Some("true")),
    ("acks", Some("all")),
    ("enable.auto.commit", Some("false")),
    ("enable.auto.offset.store", Some("false")),
    ("group.id", None),
    ("bootstrap.servers", None),
];

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic of a table: `{schema}` and `{table}` are replaced.
    #[serde(default = "default_topic_template")]
    pub topic_template: String,
    /// Partitions of a topic pg2qdrant creates (an existing topic keeps its own).
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of a topic pg2qdrant creates.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// The consumer group of `pg2qdrant apply`.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Where `apply` puts messages it cannot decode or map (reason in the headers).
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    /// librdkafka properties (`"security.protocol" = "SASL_SSL"`, `"sasl.password" = ...`).
    /// `compression.type` defaults to lz4.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_topic_template() -> String {
    DEFAULT_TOPIC_TEMPLATE.to_owned()
}
fn default_partitions() -> i32 {
    DEFAULT_PARTITIONS
}
fn default_replication_factor() -> i32 {
    DEFAULT_REPLICATION_FACTOR
}
fn default_group_id() -> String {
    DEFAULT_GROUP_ID.to_owned()
}
fn default_dlq_topic() -> String {
    DEFAULT_DLQ_TOPIC.to_owned()
}

impl KafkaConfig {
    /// A section with defaults (an env override may create it).
    pub fn with_brokers(brokers: String) -> Self {
        Self {
            brokers,
            topic_template: default_topic_template(),
            partitions: DEFAULT_PARTITIONS,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            group_id: default_group_id(),
            dlq_topic: default_dlq_topic(),
            properties: BTreeMap::new(),
        }
    }

    /// The topic of `schema.table`.
    pub fn topic(&self, schema: &str, table: &str) -> String {
        self.topic_template
            .replace("{schema}", schema)
            .replace("{table}", table)
    }

    /// `partition.assignment.strategy` when it names a cooperative (incremental) assignor.
    fn incremental_strategy(&self) -> Option<&str> {
        let v = self.properties.get("partition.assignment.strategy")?;
        v.contains("cooperative").then_some(v.as_str())
    }

    /// `group.protocol` when it is not the classic one (the consumer protocol of KIP-848
    /// assigns incrementally).
    fn incremental_protocol(&self) -> Option<&str> {
        let v = self.properties.get("group.protocol")?;
        (!v.trim().eq_ignore_ascii_case("classic")).then_some(v.as_str())
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.brokers.trim().is_empty() {
            return Err(Error::config(
                "kafka.brokers",
                "must name at least one broker (host:port[,host:port])".to_owned(),
            ));
        }
        if !self.topic_template.contains("{table}") {
            return Err(Error::config(
                "kafka.topic_template",
                format!(
                    "{:?} must contain {{table}} (one topic per table; e.g. {DEFAULT_TOPIC_TEMPLATE:?})",
                    self.topic_template
                ),
            ));
        }
        let sample = self.topic("public", "t");
        if !sample
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(Error::config(
                "kafka.topic_template",
                format!("{:?} gives topic names with characters Kafka refuses: use a-z, A-Z, 0-9, '.', '_' and '-'", self.topic_template),
            ));
        }
        // The eager rebalance protocol: after a rebalance every partition starts again from
        // its committed offset, which lets an applier drop the batch it was taking (see
        // `apply`'s "Why a rebalance brings no deleted row back").
        let incremental = [
            ("partition.assignment.strategy", self.incremental_strategy()),
            ("group.protocol", self.incremental_protocol()),
        ];
        if let Some((name, Some(v))) = incremental.into_iter().find(|(_, v)| v.is_some()) {
            return Err(Error::config(
                format!("kafka.properties.{name}"),
                format!("{v:?} hands partitions over incrementally; pg2qdrant's appliers need the eager protocol (range or roundrobin, with group.protocol = \"classic\"): remove it"),
            ));
        }
        if self.partitions < 1 {
            return Err(Error::config(
                "kafka.partitions",
                "must be at least 1".to_owned(),
            ));
        }
        if self.replication_factor < 1 {
            return Err(Error::config(
                "kafka.replication_factor",
                "must be at least 1".to_owned(),
            ));
        }
        for (name, value) in [("group_id", &self.group_id), ("dlq_topic", &self.dlq_topic)] {
            if value.trim().is_empty() {
                return Err(Error::config(
                    format!("kafka.{name}"),
                    "must not be empty".to_owned(),
                ));
            }
        }
        for (key, value) in &self.properties {
            if let Some((_, fixed)) = FIXED_PROPERTIES.iter().find(|(k, _)| k == key) {
                let same = fixed.is_some_and(|f| f == value || (*key == "acks" && value == "-1"));
                if !same {
                    return Err(Error::config(
                        format!("kafka.properties.{key:?}"),
                        match fixed {
                            Some(f) => format!("pg2qdrant sets it to {f} (its delivery guarantee depends on it): remove it"),
                            None => "set by pg2qdrant from the section's own keys (brokers, group_id): remove it".to_owned(),
                        },
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A property whose value must never be printed.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with(".key")
        || k.contains("key.pem")
        || k.contains("token")
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret(k) {
                        "<redacted>"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic_template", &self.topic_template)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("group_id", &self.group_id)
            .field("dlq_topic", &self.dlq_topic)
            .field("properties", &props)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut k = KafkaConfig::with_brokers("b:9092".into());
        k.properties
            .insert("sasl.password".into(), "hunter2".into());
        k.properties
            .insert("ssl.key.password".into(), "hunter3".into());
        k.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        let shown = format!("{k:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("SASL_SSL"), "{shown}");
    }

    #[test]
    fn guarantees_cannot_be_switched_off() {
        let mut k = KafkaConfig::with_brokers("b:9092".into());
        k.properties
            .insert("enable.idempotence".into(), "false".into());
        let err = k.validate().unwrap_err().to_string();
        assert!(err.contains("enable.idempotence"), "{err}");
        k.properties.clear();
        k.properties.insert("acks".into(), "-1".into());
        k.validate().unwrap();
        k.topic_template = "cdc".into();
        assert!(k
            .validate()
            .unwrap_err()
            .to_string()
            .contains("kafka.topic_template"));
    }

    #[test]
    fn the_cooperative_rebalance_protocol_is_refused_naming_the_property() {
        let mut k = KafkaConfig::with_brokers("b:9092".into());
        for (name, value) in [
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("group.protocol", "consumer"),
        ] {
            k.properties.insert(name.into(), value.into());
            let err = k.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("kafka.properties.{name}")), "{err}");
            assert!(err.contains("eager"), "{err}");
            k.properties.clear();
        }
        k.properties
            .insert("partition.assignment.strategy".into(), "roundrobin".into());
        k.properties
            .insert("group.protocol".into(), "classic".into());
        k.validate().unwrap();
    }
}
