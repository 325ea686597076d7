//! Control messages that travel in the WAL (`pg_logical_emit_message(true, 'pg2qdrant', json)`):
//! chunk watermarks and resync requests. Transactional, so each arrives in commit order with the
//! data, at a position of its own. Pure encode/decode.

use serde::{Deserialize, Serialize};

/// The logical-message prefix of every control message.
pub const PREFIX: &str = "pg2qdrant";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// A chunk read is about to start (low watermark).
    Low { slot: String, chunk: String },
    /// A chunk read finished (high watermark): its rows take this message's position.
    High { slot: String, chunk: String },
    /// Re-copy `table` (schema.table) while streaming; from `pg2qdrant resync`. With a
    /// condition (`--where`, checked by `source::condition`), only the rows matching it.
    Resync {
        slot: String,
        table: String,
        #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
        condition: Option<String>,
    },
}

impl Control {
    pub fn slot(&self) -> &str {
        match self {
            Control::Low { slot, .. }
            | Control::High { slot, .. }
            | Control::Resync { slot, .. } => slot,
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("control messages serialize")
    }

    /// Decodes a message of our prefix; the error says what was wrong (never panics).
    pub fn decode(content: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(content).map_err(|e| {
            format!(
                "not a pg2qdrant control message ({e}): {:?}",
                String::from_utf8_lossy(&content[..content.len().min(200)])
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        for c in [
            Control::Low {
                slot: "s".into(),
                chunk: "r:1".into(),
            },
            Control::High {
                slot: "s".into(),
                chunk: "r:1".into(),
            },
            Control::Resync {
                slot: "s".into(),
                table: "public.t".into(),
                condition: None,
            },
            Control::Resync {
                slot: "s".into(),
                table: "public.t".into(),
                condition: Some("n < 3 AND title = 'a'".into()),
            },
        ] {
            assert_eq!(Control::decode(c.encode().as_bytes()).unwrap(), c);
        }
        // A request of an earlier version (no condition) is a whole-table resync.
        assert_eq!(
            Control::decode(br#"{"kind":"resync","slot":"s","table":"public.t"}"#).unwrap(),
            Control::Resync {
                slot: "s".into(),
                table: "public.t".into(),
                condition: None
            }
        );
        assert!(Control::decode(b"\xff\x00garbage").is_err());
        assert!(Control::decode(br#"{"kind":"low","slot":"s"}"#).is_err());
        assert!(Control::decode(br#"{"kind":"drop","slot":"s"}"#).is_err());
    }
}
