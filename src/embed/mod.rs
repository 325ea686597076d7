//! Embedders: text in, vectors out.
//!
//! An [`Embedder`] is called with a batch of inputs and returns one vector per input, in order.
//! Contract for implementations:
//! - the same input and the same [`Embedder::identity`] give the same vector (a point stores the
//!   identity and a hash of its input, so unchanged text is never embedded again);
//! - `Err` means nothing of the batch is usable; whether to retry is the error's
//!   [`crate::error::Error::disposition`] (a model that cannot load is definite, a busy service
//!   transient);
//! - calls may run concurrently from several tasks; an implementation bounds its own threads.
//!
//! `local` runs a BERT-family sentence model in-process (candle); the model files come from
//! a local directory only (`scripts/services.sh` fetches all-MiniLM-L6-v2).

pub mod local;
pub mod openai;

pub use local::{Embedded, LocalEmbedder};
pub use openai::OpenAiEmbedder;

/// Why an embedding call failed, for the caller's retry or dead-letter decision.
#[derive(Debug, Clone)]
pub enum EmbedError {
    /// Retry the same call later (rate limit, service down, timeout).
    Transient {
        reason: String,
        /// What the service asked for (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    /// This call's inputs cannot be embedded as they are.
    Definite(String),
}

impl std::fmt::Display for EmbedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmbedError::Transient { reason, .. } | EmbedError::Definite(reason) => {
                f.write_str(reason)
            }
        }
    }
}

/// `pg2qdrant embed`: the vectors of `texts` by the embedder `name` of `cfg` (default: the only
/// one), as the connector computes them.
pub fn embed_texts(
    cfg: &crate::config::Config,
    name: Option<&str>,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, crate::error::Error> {
    use crate::error::Error;
    let chosen = match name {
        Some(n) => cfg.embedders.iter().find(|e| e.name == n),
        None if cfg.embedders.len() == 1 => cfg.embedders.first(),
        None => None,
    }
    .ok_or_else(|| {
        let names: Vec<&str> = cfg.embedders.iter().map(|e| e.name.as_str()).collect();
        Error::config(
            "--embedder",
            format!("name one of the config's [[embedders]]: {names:?}"),
        )
    })?;
    let model = LocalEmbedder::load(&chosen.path, chosen.threads())?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.embed(&refs).map(|e| e.vectors).map_err(|e| {
        Error::prerequisite(
            format!("embedder {:?}: {e}", chosen.name),
            "check the model directory",
        )
    })
}
