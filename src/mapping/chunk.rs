//! Chunking: the embedding text of a row split into windows of tokens, each its own point.
//!
//! A chunked row `R` with `n` chunks is the points `chunk(R, 0..n)`: ids UUIDv5 over
//! `[[schema, table, key…], i]` (never equal to a row id, which hashes a flat array), payload =
//! the row's payload plus `chunk_index`, `chunk_count` and `chunk_text`, vector = the chunk's
//! embedding. Every point of `R` records `R`'s key in `_pg2qdrant.key`, so the row's points can be
//! selected without knowing how many there were.
//!
//! # Why no stale chunk survives
//!
//! A change of `R` at position `P` becomes, in this order: delete the points of `R` with
//! `chunk_index ≥ n` older than `P`; upsert `chunk(R, i)` for `i < n`, each fenced at `P` like a
//! row. A delete of `R` (or a soft delete) is the first op with `n = 0`. So after the change,
//! `R`'s points older than `P` with an index `≥ n` are gone and those below are replaced: what
//! remains is exactly `R`'s `n` chunks (or newer ones, which the fences keep). A replay of an
//! older change may bring back chunks the newer one removed, exactly as a replayed insert
//! brings back a deleted row; the newer change follows in the replay and removes them again.
//! TRUNCATE and the copy's sweep select by table, so they take every chunk. The copy gives a
//! row's ops consecutive positions, the delete first, so it never removes the chunks written
//! after it. A TOAST merge of a chunked row is written from the whole row read back from
//! PostgreSQL (the writer does it): chunk texts can only be computed from the whole text.
//!
//! Within one batch, and between the batches the writer runs at once, a row's ops are ordered
//! by its *anchor*, the point `chunk(R, 0)`: every op of `R` names it.

pub mod content;

use crate::config::{ChunkConfig, Chunking};
use crate::error::Error;
use std::path::Path;
use tokenizers::Tokenizer;

/// Payload fields a chunk point adds to the row's payload.
pub use crate::config::CHUNK_FIELDS as FIELDS;

/// Counts tokens like an embedder's model: with its tokenizer.json, else by words.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// `None`: a whitespace-separated word counts as a token.
    tokenizer: Option<Tokenizer>,
}

impl Tokens {
    /// `tokenizer`: a tokenizer.json counting tokens like the embedder's model.
    pub fn load(tokenizer: Option<&Path>) -> Result<Self, Error> {
        let Some(p) = tokenizer else {
            return Ok(Self::default());
        };
        let mut t = Tokenizer::from_file(p).map_err(|e| {
            Error::prerequisite(
                format!("tokenizer {} cannot be loaded: {e}", p.display()),
                "point the embedder at a tokenizer.json (local: its model directory; openai: tokenizer = \"...\")",
            )
        })?;
        // The whole text: windows are cut here, not by the model's truncation.
        t.with_truncation(None).expect("no truncation is valid");
        t.with_padding(None);
        Ok(Self { tokenizer: Some(t) })
    }

    /// How many tokens `text` is.
    pub fn count(&self, text: &str) -> usize {
        self.spans(text).len()
    }

    /// Byte ranges of the tokens of `text`, in order.
    fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        let from_tokenizer = self.tokenizer.as_ref().and_then(|t| {
            let enc = t.encode(text, false).ok()?;
            let mut spans: Vec<(usize, usize)> = enc
                .get_offsets()
                .iter()
                .copied()
                .filter(|(a, b)| a < b && *b <= text.len())
                .collect();
            // Word pieces of one word share bounds; keep them in text order.
            spans.sort_unstable();
            Some(spans)
        });
        if let Some(s) = from_tokenizer {
            if s.iter()
                .all(|(a, b)| text.is_char_boundary(*a) && text.is_char_boundary(*b))
            {
                return s;
            }
        }
        words(text)
    }
}

/// Splits text into overlapping windows of tokens.
#[derive(Debug, Clone)]
pub struct Splitter {
    tokens: Tokens,
    max_tokens: usize,
    overlap: usize,
    chunking: Chunking,
}

impl Splitter {
    /// `tokenizer`: a tokenizer.json counting tokens like the embedder's model.
    pub fn load(cfg: &ChunkConfig, tokenizer: Option<&Path>) -> Result<Self, Error> {
        Ok(Self {
            tokens: Tokens::load(tokenizer)?,
            max_tokens: cfg.max_tokens,
            overlap: cfg.overlap,
            chunking: cfg.chunking,
        })
    }

    /// Whether chunk boundaries (and so chunk ids) follow the content (`content`).
    pub fn by_content(&self) -> bool {
        self.chunking == Chunking::Content
    }

    /// The chunks of `text`, in order; at least one (an empty text is one empty chunk).
    pub fn split<'a>(&self, text: &'a str) -> Vec<&'a str> {
        if self.by_content() {
            return content::split(&self.tokens, text, self.max_tokens);
        }
        let spans = self.tokens.spans(text);
        if spans.is_empty() {
            return vec![text];
        }
        let step = self.max_tokens - self.overlap;
        let mut out = Vec::with_capacity(spans.len() / step + 1);
        let mut start = 0;
        loop {
            let end = (start + self.max_tokens).min(spans.len());
            let from = spans[start].0;
            let to = spans[end - 1].1;
            out.push(text.get(from..to).unwrap_or(""));
            if end == spans.len() {
                return out;
            }
            start += step;
        }
    }
}

/// Byte ranges of the whitespace-separated words of `text`.
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_splitter(max_tokens: usize, overlap: usize) -> Splitter {
        Splitter::load(
            &ChunkConfig {
                max_tokens,
                overlap,
                chunking: Chunking::Windows,
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn windows_overlap_and_cover_the_text() {
        let s = words_splitter(4, 1);
        let text = "a b c d e f g h i j";
        assert_eq!(s.split(text), ["a b c d", "d e f g", "g h i j"]);
        assert_eq!(s.split("a b"), ["a b"]);
        assert_eq!(s.split("a b c d e"), ["a b c d", "d e"]);
    }

    #[test]
    fn empty_and_blank_text_is_one_chunk() {
        let s = words_splitter(4, 0);
        assert_eq!(s.split(""), [""]);
        assert_eq!(s.split("   "), ["   "]);
    }

    #[test]
    fn multibyte_text_is_cut_at_character_boundaries() {
        let s = words_splitter(2, 0);
        assert_eq!(s.split("héllo wörld ünïcode"), ["héllo wörld", "ünïcode"]);
    }
}
