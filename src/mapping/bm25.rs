//! BM25 term weights of a text as a sparse vector (`sparse_vectors = [{ kind = "bm25" }]`), for
//! hybrid search: exact words (names, ticket numbers, error codes) that a dense sentence vector
//! blurs.
//!
//! Pure and deterministic. A text is cut into tokens: maximal runs of letters and digits
//! (Unicode), lower-cased, at most [`MAX_TOKEN_CHARS`] characters (longer runs are left out);
//! `TCK-48213` is the two tokens `tck` and `48213`. A token's dimension is the FNV-1a 32-bit hash
//! of its UTF-8 bytes. A document's weight for a token is its BM25 term-frequency part
//!
//! ```text
//!   w(t) = tf · (k1 + 1) / (tf + k1 · (1 − b + b · len / avg_len))
//! ```
//!
//! and the inverse document frequency is left to Qdrant: the collection's sparse vector is
//! created with `Modifier::Idf`, so Qdrant weighs each query token by how rare it is among the
//! collection's points at query time (nothing here needs corpus statistics, and a point never has
//! to be rewritten when others arrive). A query is each distinct token with weight 1
//! ([`Bm25::query`], printed by `pg2qdrant embed --sparse <name>`).
//!
//! The parameters are part of the encoder's name (`bm25(k1=1.2,b=0.75,avg_len=256)`), which is
//! what a point records as the vector's model: a point made with other parameters is computed
//! again, one made with the same text and parameters is kept (see `pipeline::embedding`).

use crate::event::Sparse;
use std::collections::HashMap;

pub const DEFAULT_K1: f32 = 1.2;
pub const DEFAULT_B: f32 = 0.75;
/// Qdrant's own BM25 (fastembed `Qdrant/bm25`) assumes this average length.
pub const DEFAULT_AVG_LEN: f32 = 256.0;
/// Longer runs of letters and digits are not words (base64, hashes): left out.
pub const MAX_TOKEN_CHARS: usize = 40;

/// A BM25 encoder with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25 {
    pub k1: f32,
    pub b: f32,
    pub avg_len: f32,
}

impl Default for Bm25 {
    fn default() -> Self {
        Self {
            k1: DEFAULT_K1,
            b: DEFAULT_B,
            avg_len: DEFAULT_AVG_LEN,
        }
    }
}

const PREFIX: &str = "bm25(";

impl Bm25 {
    pub fn from_config(c: &crate::config::SparseVectorConfig) -> Self {
        Self {
            k1: c.k1.unwrap_or(DEFAULT_K1),
            b: c.b.unwrap_or(DEFAULT_B),
            avg_len: c.avg_len.unwrap_or(DEFAULT_AVG_LEN),
        }
    }

    /// The encoder's name and identity: `bm25(k1=1.2,b=0.75,avg_len=256)`.
    pub fn name(&self) -> String {
        format!(
            "{PREFIX}k1={},b={},avg_len={})",
            self.k1, self.b, self.avg_len
        )
    }

    /// The encoder a [`Bm25::name`] names; `None` for any other name (an `[[embedders]]` one).
    pub fn parse(name: &str) -> Option<Self> {
        let inner = name.strip_prefix(PREFIX)?.strip_suffix(')')?;
        let mut out = Self::default();
        for part in inner.split(',') {
            let (k, v) = part.split_once('=')?;
            let v: f32 = v.parse().ok()?;
            match k {
                "k1" => out.k1 = v,
                "b" => out.b = v,
                "avg_len" => out.avg_len = v,
                _ => return None,
            }
        }
        Some(out)
    }

    /// A document's sparse vector: BM25 term-frequency weights of its tokens.
    pub fn document(&self, text: &str) -> Sparse {
        let mut tf: HashMap<u32, f32> = HashMap::new();
        let mut len = 0usize;
        for t in tokens(text) {
            len += 1;
            *tf.entry(index(&t)).or_default() += 1.0;
        }
        let norm = self.k1 * (1.0 - self.b + self.b * len as f32 / self.avg_len);
        Sparse::from_pairs(
            tf.into_iter()
                .map(|(i, f)| (i, f * (self.k1 + 1.0) / (f + norm)))
                .collect(),
        )
    }

    /// A query's sparse vector: each distinct token, weight 1 (Qdrant applies the IDF).
    pub fn query(text: &str) -> Sparse {
        let mut seen: Vec<u32> = tokens(text).map(|t| index(&t)).collect();
        seen.sort_unstable();
        seen.dedup();
        Sparse {
            values: vec![1.0; seen.len()],
            indices: seen,
        }
    }
}

/// `doc`'s vectors with its BM25 inputs computed (what `verify` compares with the point).
pub fn with_computed(doc: &crate::event::Document) -> Option<crate::event::Vectors> {
    let mut out = doc.vectors.clone();
    for input in &doc.embed {
        if let Some(b) = Bm25::parse(&input.embedder) {
            crate::event::Vectors::put(
                &mut out,
                &input.vector,
                crate::event::Vector::Sparse(b.document(&input.text)),
            );
        }
    }
    out
}

/// The text's tokens (see the module's description).
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.chars().count() <= MAX_TOKEN_CHARS)
        .map(str::to_lowercase)
}

/// A token's dimension: FNV-1a, 32 bits.
pub fn index(token: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in token.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lowercased_runs_of_letters_and_digits() {
        let t: Vec<String> = tokens("Ticket TCK-48213: Überweisung fehlgeschlagen!").collect();
        assert_eq!(
            t,
            ["ticket", "tck", "48213", "überweisung", "fehlgeschlagen"]
        );
        assert_eq!(tokens(&"x".repeat(41)).count(), 0);
    }

    #[test]
    fn fnv1a_matches_published_values() {
        // FNV-1a 32-bit test vectors (Fowler/Noll/Vo).
        assert_eq!(index(""), 0x811c_9dc5);
        assert_eq!(index("a"), 0xe40c_292c);
        assert_eq!(index("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn weights_saturate_with_frequency_and_fall_with_length() {
        let b = Bm25::default();
        let one = b.document("error");
        let three = b.document("error error error");
        assert_eq!(one.indices, [index("error")]);
        assert!(three.values[0] > one.values[0]);
        assert!(three.values[0] < 3.0 * one.values[0]);
        // tf = 1 in a document of average length: exactly 1.
        let avg = Bm25 { avg_len: 1.0, ..b };
        assert!((avg.document("error").values[0] - 1.0).abs() < 1e-6);
        let long = b.document(&format!("error {}", "word ".repeat(500)));
        let i = long
            .indices
            .iter()
            .position(|i| *i == index("error"))
            .unwrap();
        assert!(long.values[i] < one.values[0]);
        // Sorted by index, indices distinct.
        assert!(long.indices.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn name_round_trips_its_parameters() {
        let b = Bm25 {
            k1: 0.9,
            b: 0.4,
            avg_len: 20.0,
        };
        assert_eq!(b.name(), "bm25(k1=0.9,b=0.4,avg_len=20)");
        assert_eq!(Bm25::parse(&b.name()), Some(b));
        assert_eq!(Bm25::parse("minilm"), None);
        assert_eq!(Bm25::parse("bm25(k1=x)"), None);
    }

    #[test]
    fn query_is_each_distinct_token_once() {
        let q = Bm25::query("TCK-48213 tck");
        assert_eq!(q.indices.len(), 2);
        assert_eq!(q.values, [1.0, 1.0]);
    }
}
