//! A chunked table's settings (`tables[].chunk`, see `mapping::chunk`).

use serde::{Deserialize, Serialize};

/// `chunk = { max_tokens, overlap, chunking }`: the embedding text split into chunks of at most
/// `max_tokens` tokens (the embedder's tokenizer): fixed windows sharing `overlap` tokens, or
/// (`chunking = "content"`) cut where the text says so (`mapping::chunk::content`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkConfig {
    pub max_tokens: usize,
    #[serde(default)]
    pub overlap: usize,
    #[serde(default)]
    pub chunking: Chunking,
}

/// Where chunk boundaries go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Chunking {
    /// Every `max_tokens - overlap` tokens from the start; chunk ids by index.
    #[default]
    Windows,
    /// At paragraphs, sentences and a rolling hash over tokens; chunk ids by content.
    Content,
}
