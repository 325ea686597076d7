//! Configuration: TOML with unknown keys rejected, defaults as named constants, env overrides
//! `PG2QDRANT__SECTION__KEY`, and a `validate()` whose errors name the field path.

mod chunk;
mod collection;
mod env;
mod kafka;
mod load;
pub mod sparse;
pub mod template;
mod validate;

pub use chunk::{ChunkConfig, Chunking};
pub use collection::{CollectionConfig, IndexType, PayloadIndexConfig};
pub use kafka::{KafkaConfig, DEFAULT_COMPRESSION};

pub use load::{load, parse, with_env};
pub use sparse::{SparseKind, SparseVectorConfig};
pub use validate::{CHUNK_FIELDS, META_FIELD};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const DEFAULT_QDRANT_URL: &str = "http://127.0.0.1:6334";
pub const DEFAULT_BATCH_SIZE: usize = 256;
pub const DEFAULT_LINGER_MS: u64 = 20;
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 30_000;
pub const DEFAULT_CHECKPOINT_PATH: &str = "pg2qdrant.checkpoint";
pub const DEFAULT_DEAD_LETTER_PATH: &str = "pg2qdrant.deadletter.jsonl";
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9187";
pub const DEFAULT_STATUS_INTERVAL_MS: u64 = 1_000;
/// Heap pages per snapshot chunk (8 KiB each: 128 pages ≈ 1 MiB of table per chunk).
pub const DEFAULT_SNAPSHOT_CHUNK_PAGES: u32 = 128;
/// Most copy workers when `source.snapshot_workers` is not set (also capped by the cores).
pub const DEFAULT_MAX_SNAPSHOT_WORKERS: usize = 4;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    #[serde(default)]
    pub qdrant: QdrantConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub embedders: Vec<EmbedderConfig>,
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    /// Publish change events (`run`) and consume them (`apply`); see `kafka`.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
}

/// Which process this is: `run` (the slot's reader, and writer or publisher) or `apply` (a
/// member of the Kafka consumer group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Apply,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Apply => "apply",
        }
    }

    /// Whether this process writes Qdrant with `cfg` (an applier always; `run` unless it only
    /// publishes).
    pub fn writes_qdrant(self, cfg: &Config) -> bool {
        self == Mode::Apply || cfg.qdrant.direct
    }
}

/// Which embedder implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// A sentence-transformers BERT model run in-process (ONNX Runtime).
    #[default]
    Local,
    /// An OpenAI-compatible `/v1/embeddings` service.
    Openai,
}

/// How a local model's projections compute (`quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    Int8,
}

/// An `[[embedders]]` entry: vectors computed from text.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderConfig {
    /// Referred to by `embed = "<name>"` in a vector.
    pub name: String,
    #[serde(default)]
    pub kind: EmbedderKind,
    /// `local`: the model directory (model.safetensors, tokenizer.json, config.json, ...).
    #[serde(default)]
    pub path: std::path::PathBuf,
    /// `openai`: the API base URL (`https://api.openai.com/v1`, `http://ollama:11434/v1`).
    #[serde(default)]
    pub url: Option<String>,
    /// `openai`: the model name.
    #[serde(default)]
    pub model: Option<String>,
    /// `openai`: the environment variable holding the API key (never written in the file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `openai`: dimensions to ask for (models that can shorten their vectors) and to expect.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// `openai`: per request, milliseconds.
    #[serde(default = "default_embed_timeout_ms")]
    pub timeout_ms: u64,
    /// CPU threads one batch may use; default: the number of cores.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Most inputs embedded in one call.
    #[serde(default = "default_embed_batch_size")]
    pub batch_size: usize,
    /// `openai`: a tokenizer.json that counts tokens like the model (for `chunk` and the
    /// per-request token budget); without it a whitespace-separated word counts as a token.
    #[serde(default)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// `openai`: most tokens (as counted above) in one request; 0 = no limit. `local`: most
    /// tokens in one forward pass, padding included (texts of a pass are padded to its
    /// longest); 0 = 2048.
    #[serde(default)]
    pub max_batch_tokens: usize,
    /// `local`: the ONNX Runtime shared library (`libonnxruntime.so` of PyPI's onnxruntime
    /// wheel, 1.22 or later); default: the `ORT_DYLIB_PATH` environment variable.
    #[serde(default)]
    pub runtime: Option<std::path::PathBuf>,
    /// `local`: `"int8"` runs the projections as dynamically quantised int8 (faster, vectors a
    /// little off the model's: see docs/configuration.md, Embeddings); default: f32, the model's own vectors.
    #[serde(default)]
    pub quantize: Option<Quantize>,
    /// `openai`: requests in flight at once.
    #[serde(default = "default_embed_concurrency")]
    pub concurrency: usize,
}

impl Config {
    /// The `[[tables]]` entries of `table` (`schema.table`, or `table` in `public`), or an error
    /// naming `field` (the command-line option that named it) when there is none.
    pub fn tables_named(
        &self,
        field: &str,
        table: &str,
    ) -> Result<Vec<&TableConfig>, crate::error::Error> {
        let name = crate::event::TableName::parse(table);
        let found: Vec<&TableConfig> = self
            .tables
            .iter()
            .filter(|t| crate::event::TableName::parse(&t.table) == name)
            .collect();
        if found.is_empty() {
            let known: Vec<String> = self
                .tables
                .iter()
                .map(|t| crate::event::TableName::parse(&t.table).to_string())
                .collect();
            return Err(crate::error::Error::config(
                field,
                format!(
                    "{name} is not one of the config's [[tables]] ({})",
                    known.join(", ")
                ),
            ));
        }
        Ok(found)
    }
}

impl EmbedderConfig {
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS without certificate verification.
    Require,
    /// TLS, certificate checked against `ca_file` (or the system roots).
    VerifyCa,
    /// As verify-ca, and the host name must match.
    VerifyFull,
}

/// What happens to rows that existed before the connector first saw a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Copy a table's existing rows the first time the connector sees it, then stream.
    #[default]
    Initial,
    /// Stream only: rows that existed before are not copied.
    Never,
    /// Copy what has not been copied yet, then exit 0 (a one-off backfill). The slot is kept,
    /// so a later `run` streams on from exactly where the copy ended.
    InitialOnly,
}

/// The form column values travel in, on the stream and in the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Binary when every column of the watched tables has a type pg2qdrant decodes in binary
    /// (and PostgreSQL is 14 or newer), else text; the log names the column that forced text.
    #[default]
    Auto,
    /// PostgreSQL's text output (every type).
    Text,
    /// Binary send/recv forms (less CPU on both sides); refused at start when a column's type
    /// has no binary decoder.
    Binary,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `postgres://user:password@host:port/db` (or key=value form). Never logged.
    pub url: String,
    /// Replication slot name, `[a-z0-9_]{1,63}`.
    pub slot: String,
    /// Publication name.
    pub publication: String,
    /// Create the slot when it does not exist.
    #[serde(default = "yes")]
    pub create_slot: bool,
    /// Create the publication (for the configured tables) when it does not exist.
    #[serde(default = "yes")]
    pub create_publication: bool,
    #[serde(default)]
    pub tls: TlsMode,
    /// CA certificate (PEM) for verify-ca / verify-full.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How often progress is reported to the server, milliseconds.
    #[serde(default = "default_status_interval_ms")]
    pub status_interval_ms: u64,
    /// Copy existing rows: `initial` (default), `never`, `initial_only`.
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// When the slot is gone or lost (`wal_status = lost`) but the connector had streamed
    /// before: re-copy every table (true, default) or stop with an error (false). Never streams
    /// silently over the gap.
    #[serde(default = "yes")]
    pub snapshot_on_slot_loss: bool,
    /// Parallel copy workers; default: the number of cores, at most 4.
    #[serde(default)]
    pub snapshot_workers: Option<usize>,
    /// Heap pages (8 KiB) per copy chunk; progress is saved after every chunk.
    #[serde(default = "default_snapshot_chunk_pages")]
    pub snapshot_chunk_pages: u32,
    /// Value format on the stream and in the copy: `auto` (default), `text`, `binary`.
    #[serde(default)]
    pub format: Format,
    /// How often a heartbeat (a logical message) is written into the WAL, milliseconds; 0 turns
    /// it off. It keeps lag in seconds true and the slot advancing while the watched tables are
    /// idle and others are busy.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
}

impl SourceConfig {
    /// Copy workers to run.
    pub fn snapshot_workers(&self) -> usize {
        self.snapshot_workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(DEFAULT_MAX_SNAPSHOT_WORKERS)
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantConfig {
    /// gRPC URL (port 6334 by default).
    #[serde(default = "default_qdrant_url")]
    pub url: String,
    /// API key. Never logged.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Most changes in one write request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a change waits for its batch to fill, milliseconds.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Timeout of one request, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Cap of the retry backoff while Qdrant is unreachable, milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// With `[kafka]`: whether `run` also writes Qdrant itself (false: Kafka only, and
    /// `pg2qdrant apply` writes Qdrant).
    #[serde(default = "yes")]
    pub direct: bool,
    /// Batches written at once at most (disjoint points; acknowledged in order). Qdrant applies
    /// one shard's writes one at a time, so more than 2 helps only with several shards.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
}

impl Default for QdrantConfig {
    fn default() -> Self {
        Self {
            url: default_qdrant_url(),
            api_key: None,
            batch_size: DEFAULT_BATCH_SIZE,
            linger_ms: DEFAULT_LINGER_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_backoff_ms: DEFAULT_MAX_BACKOFF_MS,
            direct: true,
            parallel: DEFAULT_PARALLEL,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Local file holding the last durable LSN; written atomically and fsynced.
    #[serde(default = "default_checkpoint_path")]
    pub path: PathBuf,
    /// Snapshot (copy) progress per table; default: the checkpoint path + `.snapshot.json`.
    #[serde(default)]
    pub snapshot_path: Option<PathBuf>,
}

impl CheckpointConfig {
    pub fn snapshot_path(&self) -> PathBuf {
        self.snapshot_path
            .clone()
            .unwrap_or_else(|| self.beside(".snapshot.json"))
    }

    /// A `pg2qdrant rebuild` request, taken by the connector's next start.
    pub fn rebuild_path(&self) -> PathBuf {
        self.beside(".rebuild.json")
    }

    /// The last `verify` report, which the running connector exports as metrics.
    pub fn verify_path(&self) -> PathBuf {
        self.beside(".verify.json")
    }

    fn beside(&self, suffix: &str) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(suffix);
        p.into()
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            path: default_checkpoint_path(),
            snapshot_path: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSON-lines file receiving rows that cannot be mapped.
    #[serde(default = "default_dead_letter_path")]
    pub path: PathBuf,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self {
            path: default_dead_letter_path(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address of `/metrics` and `/healthz`; empty disables the listener.
    #[serde(default = "default_metrics_addr")]
    pub addr: String,
    /// `GET /wait` requests that may wait at once; past it the answer is 503.
    #[serde(default = "default_max_waiters")]
    pub max_waiters: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            addr: default_metrics_addr(),
            max_waiters: default_max_waiters(),
        }
    }
}

/// `[log]`: how log lines are written (to stderr). `PG2QDRANT_LOG` sets the level filter
/// (`info` by default, e.g. `pg2qdrant=debug`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, message, fields).
    Json,
}

/// Qdrant's spelling (`Cosine`); the all-lower and all-upper case forms are taken too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Distance {
    #[serde(alias = "cosine", alias = "COSINE")]
    Cosine,
    #[serde(alias = "euclid", alias = "EUCLID")]
    Euclid,
    #[serde(alias = "dot", alias = "DOT")]
    Dot,
    #[serde(alias = "manhattan", alias = "MANHATTAN")]
    Manhattan,
}

/// The unnamed vector of a collection.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VectorConfig {
    /// Source column: real[], float8[], pgvector, or a jsonb number array.
    #[serde(default)]
    pub column: String,
    /// Or computed from text by this embedder (`[[embedders]]` name).
    #[serde(default)]
    pub embed: Option<String>,
    /// The text to embed: a template of column names in braces (`"{title}\n{body}"`).
    #[serde(default)]
    pub text: Option<String>,
    /// Dimensions.
    pub size: u64,
    pub distance: Distance,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedVectorConfig {
    pub name: String,
    #[serde(default)]
    pub column: String,
    #[serde(default)]
    pub embed: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    pub size: u64,
    pub distance: Distance,
}

/// A payload field holding a timestamp column as integer unix seconds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnixSecondsConfig {
    pub column: String,
    pub field: String,
}

/// How numeric columns reach the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NumericMode {
    /// A JSON number (an integer when it fits i64, else the nearest f64): filterable.
    #[default]
    Number,
    /// The exact decimal text: every digit kept (money).
    String,
}

/// How point ids are made from keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IdMode {
    /// One integer key ≥ 0 → that number; one uuid key → that uuid; else UUIDv5.
    #[default]
    Auto,
    /// Always UUIDv5 over (schema, table, key): ids of different tables never collide.
    Uuid5,
}

/// One mirrored table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `schema.table` or `table` (schema public).
    pub table: String,
    pub collection: String,
    /// Key columns; default: the primary key.
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// `where = "<SQL boolean over the table's columns>"`: only rows for which it is true are
    /// mirrored (the publication's row filter, PostgreSQL 15; see `source::filter`).
    #[serde(default, rename = "where")]
    pub row_filter: Option<String>,
    /// The unnamed vector (exclusive with `vectors`).
    #[serde(default)]
    pub vector: Option<VectorConfig>,
    /// Named vectors (exclusive with `vector`).
    #[serde(default)]
    pub vectors: Vec<NamedVectorConfig>,
    /// Sparse vectors: a pgvector `sparsevec` column, or BM25 term weights of a text.
    #[serde(default)]
    pub sparse_vectors: Vec<SparseVectorConfig>,
    /// Payload columns; default: every column that is not a vector column.
    #[serde(default)]
    pub payload: Option<Vec<String>>,
    /// Columns left out of the default payload.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Payload field names by column name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    #[serde(default)]
    pub unix_seconds: Vec<UnixSecondsConfig>,
    /// A boolean column: rows where it is true are removed from Qdrant.
    #[serde(default)]
    pub soft_delete: Option<String>,
    /// `number` (default) or `string` for numeric columns.
    #[serde(default)]
    pub numeric: NumericMode,
    /// `auto` (default) or `uuid5` point ids.
    #[serde(default)]
    pub id: IdMode,
    #[serde(default)]
    pub collection_config: CollectionConfig,
    /// Long text becomes several points (see `mapping::chunk`): needs exactly one vector,
    /// computed from text.
    #[serde(default)]
    pub chunk: Option<ChunkConfig>,
}

/// One vector of a table (`vector` or an entry of `vectors`).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorColumn {
    /// Empty for the unnamed default vector.
    pub name: String,
    /// The column it is read from; empty for a vector computed from text.
    pub column: String,
    pub size: u64,
    pub distance: Distance,
}

/// A vector computed from text by an embedder.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedVector {
    /// Empty for the unnamed default vector.
    pub name: String,
    /// The `[[embedders]]` name.
    pub embedder: String,
    /// The text template (`{column}` placeholders).
    pub text: String,
    pub size: u64,
}

impl TableConfig {
    /// Every vector of the table.
    pub fn vector_columns(&self) -> Vec<VectorColumn> {
        let one = |name: &str, column: &str, size: u64, distance: Distance| VectorColumn {
            name: name.to_owned(),
            column: column.to_owned(),
            size,
            distance,
        };
        match &self.vector {
            Some(v) => vec![one("", &v.column, v.size, v.distance)],
            None => self
                .vectors
                .iter()
                .map(|v| one(&v.name, &v.column, v.size, v.distance))
                .collect(),
        }
    }

    /// The vectors computed from text.
    pub fn embedded_vectors(&self) -> Vec<EmbeddedVector> {
        let one = |name: &str, embed: &Option<String>, text: &Option<String>, size: u64| {
            embed.as_ref().map(|e| EmbeddedVector {
                name: name.to_owned(),
                embedder: e.clone(),
                text: text.clone().unwrap_or_default(),
                size,
            })
        };
        match &self.vector {
            Some(v) => one("", &v.embed, &v.text, v.size).into_iter().collect(),
            None => self
                .vectors
                .iter()
                .filter_map(|v| one(&v.name, &v.embed, &v.text, v.size))
                .collect(),
        }
    }
}

fn default_embed_concurrency() -> usize {
    2
}

fn yes() -> bool {
    true
}
fn default_embed_batch_size() -> usize {
    32
}
fn default_embed_timeout_ms() -> u64 {
    30_000
}
fn default_heartbeat_ms() -> u64 {
    10_000
}

fn default_status_interval_ms() -> u64 {
    DEFAULT_STATUS_INTERVAL_MS
}
fn default_snapshot_chunk_pages() -> u32 {
    DEFAULT_SNAPSHOT_CHUNK_PAGES
}
fn default_qdrant_url() -> String {
    DEFAULT_QDRANT_URL.to_owned()
}
/// Writes in flight by default: one being written while the next is embedded and sent.
pub const DEFAULT_PARALLEL: usize = 2;

fn default_parallel() -> usize {
    DEFAULT_PARALLEL
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}
fn default_linger_ms() -> u64 {
    DEFAULT_LINGER_MS
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_max_backoff_ms() -> u64 {
    DEFAULT_MAX_BACKOFF_MS
}
fn default_checkpoint_path() -> PathBuf {
    PathBuf::from(DEFAULT_CHECKPOINT_PATH)
}
fn default_dead_letter_path() -> PathBuf {
    PathBuf::from(DEFAULT_DEAD_LETTER_PATH)
}
fn default_max_waiters() -> usize {
    1024
}
fn default_metrics_addr() -> String {
    DEFAULT_METRICS_ADDR.to_owned()
}
