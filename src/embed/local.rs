//! A BERT-family sentence-transformers model run in-process on ONNX Runtime, exactly as
//! sentence-transformers runs it: the tokenizer from `tokenizer.json` with its saved truncation
//! and fixed padding replaced (truncation at `max_seq_length` of `sentence_bert_config.json`, 256
//! for all-MiniLM-L6-v2 where the file says 128; each forward pass pads to its own longest
//! input), the encoder's last hidden state, mean pooling over the attention mask (the only
//! pooling `1_Pooling/config.json` may ask for here), and L2 normalisation when `modules.json`
//! lists a Normalize module. The encoder, pooling and normalisation are one ONNX graph written
//! from `model.safetensors` at load time ([`super::graph`]) and optimised by the runtime
//! ([`super::runtime`]). `tests/embed.rs` compares the vectors with sentence-transformers' own.
//!
//! Nothing is downloaded: a missing file is an error naming it and how to get it.

use super::graph::{self, Precision};
use crate::error::Error;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// Most tokens, padding included, in one forward pass (rows × the pass's longest input), unless
/// the embedder's `max_batch_tokens` says otherwise.
pub const PASS_TOKENS: usize = 2048;

const FIX: &str = "point the embedder's path at a sentence-transformers model directory (scripts/services.sh fetches all-MiniLM-L6-v2 into ~/.cache/pg2qdrant/models)";

pub struct LocalEmbedder {
    /// The encoder graph; a run takes the session whole (the runtime's threads serve one run).
    session: std::sync::Mutex<ort::session::Session>,
    /// Truncates; never pads (each forward pass pads its own rows, see [`LocalEmbedder::embed`]).
    tokenizer: Tokenizer,
    /// The padding token's id.
    pad_id: u32,
    max_tokens: usize,
    /// Most rows, and most tokens counting padding, in one forward pass.
    pass_rows: usize,
    pass_tokens: usize,
    dimensions: usize,
    identity: String,
}

/// How a local model is run (`[[embedders]]` `threads`, `runtime`, `quantize`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// CPU threads one forward pass uses (0: one).
    pub threads: usize,
    /// The ONNX Runtime library; `None`: `ORT_DYLIB_PATH`.
    pub runtime: Option<PathBuf>,
    /// `Int8`: the projections run as dynamically quantised int8 GEMMs (faster, slightly
    /// different vectors: the model's identity records it, so points are re-embedded).
    pub precision: Precision,
    /// Names the config entry in errors (`embedders[0]`); empty: none (the library can only
    /// come from `ORT_DYLIB_PATH`).
    pub field: String,
    /// Most texts in one forward pass (0: no limit but the tokens).
    pub batch_size: usize,
    /// Most tokens, padding included, in one forward pass (0: [`PASS_TOKENS`]).
    pub max_batch_tokens: usize,
}

/// The encoder's numbers in `config.json` (Hugging Face's BERT configuration).
#[derive(Deserialize)]
struct BertConfig {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_position")]
    position_embedding_type: String,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position() -> String {
    "absolute".into()
}

/// One embedded batch: the vectors, and how many inputs were cut at the model's maximum length.
#[derive(Debug)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub truncated: usize,
}

fn file(dir: &Path, name: &str) -> Result<PathBuf, Error> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::prerequisite(
            format!("model directory {} has no {name}", dir.display()),
            FIX,
        ))
    }
}

fn json(dir: &Path, name: &str) -> Result<serde_json::Value, Error> {
    let p = file(dir, name)?;
    let text = std::fs::read_to_string(&p).map_err(Error::io(format!("read {}", p.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::prerequisite(format!("{} is not valid JSON: {e}", p.display()), FIX))
}

fn model_error<E: std::fmt::Display>(dir: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| {
        Error::prerequisite(
            format!("model in {} cannot be loaded: {e}", dir.display()),
            FIX,
        )
    }
}

/// The identity stored on points: the directory name, and a fingerprint of the configuration and
/// of the weights (their first MiB and their length), so other weights count as another model;
/// int8 vectors are another model's too (`:int8`).
fn identity(dir: &Path, config: &str, head: &[u8], len: u64, precision: Precision) -> String {
    let mut fingerprint = config.as_bytes().to_vec();
    fingerprint.extend_from_slice(head);
    fingerprint.extend_from_slice(&(len as usize).to_le_bytes());
    format!(
        "local:{}:{}{}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uuid::Uuid::new_v5(&crate::mapping::key::NAMESPACE, &fingerprint),
        match precision {
            Precision::F32 => "",
            Precision::Int8 => ":int8",
        }
    )
}

/// What a model directory says besides its weights.
struct Settings {
    config: BertConfig,
    /// `config.json` as read (part of the identity).
    config_text: String,
    /// Tokens per input at most (`sentence_bert_config.json`, within the positions).
    max_tokens: usize,
    /// Whether the sentence-transformers modules end with `Normalize` (default: yes).
    normalize: bool,
}

impl Settings {
    /// Reads `dir`'s configuration, refusing a model this encoder cannot run (not a gelu BERT
    /// with absolute positions, or a pooling other than mean tokens).
    fn read(dir: &Path) -> Result<Self, Error> {
        let config_text = std::fs::read_to_string(file(dir, "config.json")?)
            .map_err(Error::io("read config.json"))?;
        let config: BertConfig = serde_json::from_str(&config_text)
            .map_err(|e| Error::prerequisite(format!("{}/config.json: {e}", dir.display()), FIX))?;
        if config.hidden_act != "gelu" || config.position_embedding_type != "absolute" {
            return Err(Error::prerequisite(
                format!(
                    "{}/config.json: hidden_act {:?} and position_embedding_type {:?}",
                    dir.display(),
                    config.hidden_act,
                    config.position_embedding_type
                ),
                "only BERT encoders with gelu and absolute positions are supported",
            ));
        }
        let max_tokens = match dir.join("sentence_bert_config.json").is_file() {
            true => json(dir, "sentence_bert_config.json")?["max_seq_length"]
                .as_u64()
                .map(|n| n as usize),
            false => None,
        }
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);
        if dir.join("1_Pooling/config.json").is_file() {
            let pooling = json(dir, "1_Pooling/config.json")?;
            if pooling["pooling_mode_mean_tokens"] != serde_json::Value::Bool(true) {
                return Err(Error::prerequisite(
                    format!(
                        "{}/1_Pooling/config.json asks for a pooling other than mean tokens",
                        dir.display()
                    ),
                    "only mean-pooling sentence-transformers models are supported",
                ));
            }
        }
        let normalize = match dir.join("modules.json").is_file() {
            true => json(dir, "modules.json")?.as_array().is_some_and(|m| {
                m.iter().any(|x| {
                    x["type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with(".Normalize"))
                })
            }),
            false => true,
        };
        Ok(Self {
            config,
            config_text,
            max_tokens,
            normalize,
        })
    }
}

/// `dir`'s tokenizer, truncating at `max_tokens`, unpadded (batches are padded by hand), and
/// its padding token's id.
fn tokenizer(dir: &Path, max_tokens: usize) -> Result<(Tokenizer, u32), Error> {
    let mut tokenizer = Tokenizer::from_file(file(dir, "tokenizer.json")?)
        .map_err(|e| Error::prerequisite(format!("{}/tokenizer.json: {e}", dir.display()), FIX))?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            ..Default::default()
        }))
        .map_err(|e| Error::prerequisite(format!("tokenizer truncation: {e}"), FIX))?;
    let pad_id = tokenizer
        .get_padding()
        .map(|p| p.pad_id)
        .or_else(|| tokenizer.token_to_id("[PAD]"))
        .unwrap_or(0);
    tokenizer.with_padding(None);
    Ok((tokenizer, pad_id))
}

impl LocalEmbedder {
    /// The [`identity`](Self::identity) of the model in `dir` run at `precision`, without
    /// loading it (verify, check).
    pub fn identity_of(dir: &Path, precision: Precision) -> Result<String, Error> {
        use std::io::Read as _;
        let config = std::fs::read_to_string(file(dir, "config.json")?)
            .map_err(Error::io("read config.json"))?;
        let path = file(dir, "model.safetensors")?;
        let mut f =
            std::fs::File::open(&path).map_err(Error::io(format!("open {}", path.display())))?;
        let len = f
            .metadata()
            .map_err(Error::io(format!("stat {}", path.display())))?
            .len();
        let mut head = Vec::with_capacity(1 << 20);
        f.by_ref()
            .take(1 << 20)
            .read_to_end(&mut head)
            .map_err(Error::io(format!("read {}", path.display())))?;
        Ok(identity(dir, &config, &head, len, precision))
    }

    /// Loads the model in `dir` in f32 on the runtime of `ORT_DYLIB_PATH`; `threads` bounds the
    /// CPU threads one batch uses.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, Error> {
        Self::open(
            dir,
            &Options {
                threads,
                ..Options::default()
            },
        )
    }

    /// Loads the model in `dir` as `options` say.
    pub fn open(dir: &Path, options: &Options) -> Result<Self, Error> {
        let Settings {
            config,
            config_text,
            max_tokens,
            normalize,
        } = Settings::read(dir)?;
        let weights_path = file(dir, "model.safetensors")?;
        let weights = std::fs::read(&weights_path)
            .map_err(Error::io(format!("read {}", weights_path.display())))?;
        let precision = options.precision;
        let identity = identity(
            dir,
            &config_text,
            &weights[..weights.len().min(1 << 20)],
            weights.len() as u64,
            precision,
        );
        let onnx = graph::build(
            &graph::Weights::parse(weights).map_err(model_error(dir))?,
            &graph::Shape {
                hidden: config.hidden_size,
                layers: config.num_hidden_layers,
                heads: config.num_attention_heads,
                intermediate: config.intermediate_size,
                eps: config.layer_norm_eps as f32,
            },
            normalize,
            precision,
        )
        .map_err(model_error(dir))?;
        let runtime = match options.field.as_str() {
            "" => "ORT_DYLIB_PATH".to_owned(),
            entry => format!("{entry}.runtime"),
        };
        let env = super::runtime::environment(&runtime, options.runtime.as_deref())?;
        let session = session(&env, options.threads.max(1), &onnx).map_err(model_error(dir))?;
        let (tokenizer, pad_id) = tokenizer(dir, max_tokens)?;
        Ok(Self {
            session: std::sync::Mutex::new(session),
            tokenizer,
            pad_id,
            max_tokens,
            pass_rows: match options.batch_size {
                0 => usize::MAX,
                n => n,
            },
            pass_tokens: match options.max_batch_tokens {
                0 => PASS_TOKENS,
                n => n,
            },
            dimensions: config.hidden_size,
            identity,
        })
    }

    /// What the vectors are built with (stored on points next to the input hash).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Inputs longer than this many word pieces are cut.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Embeds `inputs` (CPU-bound: call from a blocking thread); one vector per input, in
    /// input order.
    ///
    /// Length-aware, as sentence-transformers does and a little more: the inputs are ordered by
    /// token count and cut into forward passes of at most `batch_size` texts and
    /// `max_batch_tokens` tokens ([`PASS_TOKENS`] by default), padding included, so a pass pads its rows to its own longest input, not to the longest of the
    /// call (mixed chat messages of 3 to 300 words would otherwise spend most of the work on
    /// padding). Attention and pooling are masked, so a vector does not depend on its pass.
    pub fn embed(&self, inputs: &[&str]) -> Result<Embedded, String> {
        if inputs.is_empty() {
            return Ok(Embedded {
                vectors: Vec::new(),
                truncated: 0,
            });
        }
        let encodings = self
            .tokenizer
            .encode_batch(inputs.to_vec(), true)
            .map_err(|e| format!("tokenize: {e}"))?;
        let truncated = encodings
            .iter()
            .filter(|e| !e.get_overflowing().is_empty())
            .count();
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let mut vectors = vec![Vec::new(); ids.len()];
        for pass in passes(&ids, self.pass_rows, self.pass_tokens) {
            let rows: Vec<&[u32]> = pass.iter().map(|&i| ids[i]).collect();
            let out = self.forward(&rows)?;
            for (i, v) in pass.into_iter().zip(out) {
                vectors[i] = v;
            }
        }
        Ok(Embedded { vectors, truncated })
    }

    /// One forward pass over `rows` (token ids), each padded to the longest: their vectors.
    fn forward(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut mask = Vec::with_capacity(rows.len() * len);
        for r in rows {
            ids.extend(r.iter().map(|&t| i64::from(t)));
            ids.extend(std::iter::repeat_n(i64::from(self.pad_id), len - r.len()));
            mask.extend(std::iter::repeat_n(1i32, r.len()));
            mask.extend(std::iter::repeat_n(0i32, len - r.len()));
        }
        let err = |e: ort::Error| format!("model: {e}");
        let shape = [rows.len(), len];
        let ids = ort::value::Tensor::from_array((shape, ids)).map_err(err)?;
        let mask = ort::value::Tensor::from_array((shape, mask)).map_err(err)?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let out = session
            .run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])
            .map_err(err)?;
        let (_, values) = out["embedding"].try_extract_tensor::<f32>().map_err(err)?;
        Ok(values
            .chunks_exact(self.dimensions)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// A session of the `onnx` graph: every graph optimisation ONNX Runtime has (constant folding,
/// fusions, layouts), `threads` for one pass and no other, and threads that sleep between passes
/// instead of spinning (the cores are shared with Postgres and Qdrant).
fn session(
    env: &ort::environment::Environment,
    threads: usize,
    onnx: &[u8],
) -> ort::Result<ort::session::Session> {
    use ort::session::builder::GraphOptimizationLevel;
    ort::session::Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(threads)?
        .with_inter_threads(1)?
        .with_intra_op_spinning(false)?
        .commit_from_memory(onnx)
}

/// The indexes of `rows` ordered by length (stable: equal lengths keep their order) and cut into
/// passes of at most `max_rows` rows and `budget` tokens counting padding (rows × the pass's
/// longest); a row longer than the budget is a pass alone.
fn passes(rows: &[&[u32]], max_rows: usize, budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].len());
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted: this row is the longest of the pass if it joins.
        if !current.is_empty()
            && (current.len() == max_rows || (current.len() + 1) * rows[i].len() > budget)
        {
            out.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl super::Embedder for LocalEmbedder {
    fn identity(&self) -> &str {
        LocalEmbedder::identity(self)
    }

    fn dimensions(&self) -> Option<usize> {
        Some(LocalEmbedder::dimensions(self))
    }

    /// On a blocking thread: the model computes on its own `threads`, never on the runtime's.
    fn embed_batch(
        self: std::sync::Arc<Self>,
        texts: Vec<String>,
    ) -> futures_util::future::BoxFuture<'static, Result<Embedded, super::EmbedError>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                self.embed(&refs)
            })
            .await
            .map_err(|e| format!("embedder task failed: {e}"))
            .and_then(|r| r)
            // Any text tokenizes (cut to the window), so a failed run is the model's or its
            // runtime's, never an input's: an outage, retried (see `EmbedError`).
            .map_err(|reason| super::EmbedError::Transient {
                reason,
                retry_after: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_order_rows_by_length_and_hold_the_token_budget() {
        let lens = [30usize, 3, 300, 5, 3, 40, 12];
        let rows: Vec<Vec<u32>> = lens.iter().map(|&n| vec![1; n]).collect();
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let passes = passes(&refs, usize::MAX, 64);
        // Every row once; each pass within the budget (padding counted), or one long row alone.
        let mut seen: Vec<usize> = passes.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lens.len()).collect::<Vec<_>>());
        for p in &passes {
            let longest = p.iter().map(|&i| lens[i]).max().unwrap();
            assert!(p.len() == 1 || p.len() * longest <= 64, "{p:?}");
        }
        // Ordered by length: short rows share a pass, the 300-token row is alone.
        assert_eq!(passes[0], vec![1, 4, 3, 6]);
        assert_eq!(passes.last().unwrap(), &vec![2]);
        // And at most max_rows rows.
        let capped = super::passes(&refs, 2, 1 << 20);
        assert_eq!(capped, vec![vec![1, 4], vec![3, 6], vec![0, 5], vec![2]]);
    }
}
