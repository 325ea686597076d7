//! Embedders: text in, vectors out.
//!
//! Every kind implements [`Embedder`] (its contract is written on the trait); [`load`] makes one
//! from its config, and [`record`] is what a point keeps of how its vectors were made.
//!
//! `local` runs a BERT-family sentence model in-process on ONNX Runtime ([`graph`] writes the
//! encoder from the model's safetensors, [`runtime`] loads the library), behind a queue that
//! embeds concurrent callers' texts together ([`gather`]); the model files come from a local
//! directory only (`scripts/services.sh` fetches all-MiniLM-L6-v2 and the runtime).

mod gather;
pub mod graph;
pub mod local;
mod onnx;
pub mod openai;
pub mod record;
pub mod runtime;

pub use local::{Embedded, LocalEmbedder};
pub use openai::OpenAiEmbedder;

/// Why an embedding call failed, for the caller's retry or dead-letter decision.
#[derive(Debug, Clone)]
pub enum EmbedError {
    /// Retry the same call later: the service or model as a whole is out (rate limit, down,
    /// timeout, a refused key, an unknown model, a failed runtime). Nothing is parked for it.
    Transient {
        reason: String,
        /// What the service asked for (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    /// This call's inputs cannot be embedded as they are (the service refused what was sent);
    /// the caller isolates the input at fault and parks only that one.
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

/// Text in, vectors out: one seam for every kind of embedder.
///
/// Contract (callers: the pipeline's embedding stage, `verify`'s repairs, `pg2qdrant embed`):
/// - `embed_batch` returns one vector per input, in input order, each of [`Embedder::dimensions`]
///   when that is known;
/// - the same input and the same [`Embedder::identity`] give the same vector, so a point that
///   records the identity and a hash of its input is never embedded again;
/// - `Err(EmbedError::Transient)` means nothing of the batch is usable and the same call may
///   succeed later (the caller retries it); `Err(EmbedError::Definite)` means these inputs will
///   never embed (the caller finds the input at fault and dead-letters it);
/// - it may be called concurrently from several tasks; an implementation bounds its own threads
///   and never blocks the async runtime (a local model runs on blocking threads).
pub trait Embedder: Send + Sync {
    /// What a point records as its vector's model (changes with the model, not the process).
    fn identity(&self) -> &str;
    /// The vectors' size, when known before the first call.
    fn dimensions(&self) -> Option<usize>;
    /// Embeds `texts` (see the contract above).
    fn embed_batch(
        self: std::sync::Arc<Self>,
        texts: Vec<String>,
    ) -> futures_util::future::BoxFuture<'static, Result<Embedded, EmbedError>>;
}

/// A gathered call of a local model takes at most this many passes' worth of texts (`batch_size`
/// texts each): enough to fill passes from many small transactions, and small enough that two
/// full writer batches are not merged into one call (they would then finish together and leave
/// the model idle while both are written).
const GATHER_PASSES: usize = 8;

/// How a local embedder's projections compute (`quantize`).
pub fn precision(cfg: &crate::config::EmbedderConfig) -> graph::Precision {
    match cfg.quantize {
        Some(crate::config::Quantize::Int8) => graph::Precision::Int8,
        None => graph::Precision::F32,
    }
}

/// Loads `[[embedders]]` entry `index` (a local model reads its files: call from a blocking
/// thread when it matters).
pub fn load(
    index: usize,
    cfg: &crate::config::EmbedderConfig,
) -> Result<std::sync::Arc<dyn Embedder>, crate::error::Error> {
    use crate::config::EmbedderKind;
    Ok(match cfg.kind {
        EmbedderKind::Local => {
            let field = format!("embedders[{index}]");
            let options = local::Options {
                threads: cfg.threads(),
                runtime: cfg.runtime.clone(),
                precision: precision(cfg),
                batch_size: cfg.batch_size,
                max_batch_tokens: cfg.max_batch_tokens,
                field: field.clone(),
            };
            let model = LocalEmbedder::open(&cfg.path, &options).map_err(|e| match e {
                e @ crate::error::Error::Config { .. } => e,
                e => crate::error::Error::config(format!("{field}.path"), e.to_string()),
            })?;
            // Concurrent callers' texts ordered and padded together (see `gather`).
            std::sync::Arc::new(gather::Gathered::new(
                std::sync::Arc::new(model),
                cfg.batch_size * GATHER_PASSES,
            ))
        }
        EmbedderKind::Openai => std::sync::Arc::new(OpenAiEmbedder::new(index, cfg)?),
    })
}

/// `pg2qdrant embed`: the vectors of `texts` by the embedder `name` of `cfg` (default: the only
/// one), as the connector computes them, through [`Embedder`] (a local model or a service).
pub async fn embed_texts(
    cfg: &crate::config::Config,
    name: Option<&str>,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, crate::error::Error> {
    use crate::error::Error;
    let chosen = match name {
        Some(n) => cfg.embedders.iter().position(|e| e.name == n),
        None if cfg.embedders.len() == 1 => Some(0),
        None => None,
    }
    .ok_or_else(|| {
        let names: Vec<&str> = cfg.embedders.iter().map(|e| e.name.as_str()).collect();
        Error::config(
            "--embedder",
            format!("name one of the config's [[embedders]]: {names:?}"),
        )
    })?;
    let c = cfg.embedders[chosen].clone();
    let model = tokio::task::spawn_blocking(move || load(chosen, &c))
        .await
        .map_err(|e| Error::prerequisite(format!("loading the embedder: {e}"), "see the log"))??;
    let name = &cfg.embedders[chosen].name;
    match model.embed_batch(texts.to_vec()).await {
        Ok(e) => Ok(e.vectors),
        Err(EmbedError::Transient {
            reason,
            retry_after,
        }) => Err(Error::Embed {
            embedder: name.clone(),
            reason,
            retry_after,
        }),
        Err(EmbedError::Definite(reason)) => Err(Error::prerequisite(
            format!("embedder {name:?} refused the text: {reason}"),
            "check the text and the embedder's settings (model, url, dimensions)",
        )),
    }
}
