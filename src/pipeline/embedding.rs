//! Vectors computed from text: before a batch is written, every document's pending
//! [`EmbedInput`](crate::event::EmbedInput)s are embedded (grouped by embedder: a local model
//! gets every text of the batch in one call and cuts its own length-ordered passes; a service
//! gets requests of its `batch_size` and `max_batch_tokens`) and moved into its vectors. The
//! point also records what each vector was built from (`_pg2qdrant.embedded.<vector>` = model
//! identity and a hash of the input), so a later change can tell whether the text changed.
//!
//! **Only changed text is embedded.** Before embedding, the points the batch writes are read
//! (`Sink::embedded`): where a point's record has the same model identity and input hash, its
//! stored vector is reused and the embedder is not called. An update of other columns, a replay
//! after a restart, and a resync of rows whose text did not change cost no embedding. (A change
//! whose text column is an unchanged TOAST value carries no input at all: the mapping leaves the
//! vector to the stored point.)
//!
//! BM25 sparse vectors (`sparse_vectors` of kind `bm25`, see `mapping::bm25`) come through here
//! too: their "embedder" is the encoder's name, so they are recorded, reused and counted like
//! embeddings, and computed in place (pure and cheap) instead of by a model.
//!
//! A copied row (snapshot) comes through here like a streamed one, so a copy embeds in full
//! batches. An input the embedder refuses is reported back for the dead-letter file; the rest of
//! the batch is written.

use crate::config::EmbedderKind;
use crate::config::{EmbedderConfig, TableConfig};
use crate::embed::record::{hash, record_name};
use crate::embed::{EmbedError, Embedder};
use crate::error::Error;
use crate::event::{Document, Op, PointKey, Vector, Vectors};
use crate::mapping::bm25::Bm25;
use crate::metrics::names;
use crate::sink::Sink;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// One embedder, loaded, with the limits of its calls.
struct Model {
    model: Arc<dyn Embedder>,
    /// Most inputs in one call.
    batch_size: usize,
    /// Most tokens in one call (0: no limit), counted by `tokens`.
    max_batch_tokens: usize,
    tokens: crate::mapping::chunk::Tokens,
    /// Calls in flight at once (a local model runs one batch at a time on its own threads).
    concurrency: usize,
}

impl Model {
    /// `(op, input)` pairs cut into calls (see [`group_calls`]).
    fn calls<'p>(&self, pairs: &'p [(usize, usize)], ops: &[Op]) -> Vec<&'p [(usize, usize)]> {
        let limited = self.max_batch_tokens > 0;
        group_calls(pairs, self.batch_size, self.max_batch_tokens, |p| {
            if limited {
                self.tokens.count(input_text(ops, p))
            } else {
                0
            }
        })
    }
}

/// Cuts `pairs` into calls of at most `batch_size` inputs and, when `max_tokens > 0`, at most
/// `max_tokens` tokens (`tokens` counts an input's); an input above the limit is a call alone.
fn group_calls<T>(
    pairs: &[T],
    batch_size: usize,
    max_tokens: usize,
    tokens: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for (k, pair) in pairs.iter().enumerate() {
        let n = tokens(pair);
        if k - start == batch_size || (max_tokens > 0 && k > start && sum + n > max_tokens) {
            out.push(&pairs[start..k]);
            start = k;
            sum = 0;
        }
        sum += n;
    }
    if start < pairs.len() {
        out.push(&pairs[start..]);
    }
    out
}

/// The configured embedders, loaded.
#[derive(Default)]
pub struct Embedders {
    by_name: HashMap<String, Model>,
}

/// What [`Embedders::compute`] found: a vector per (op, input), and the ops whose text the
/// embedder refused (with the reason).
#[derive(Debug, Default)]
struct Results {
    vectors: HashMap<(usize, usize), Vector>,
    failed: HashMap<usize, String>,
}

impl Embedders {
    /// Loads every `[[embedders]]` entry (reads model files: call from a blocking thread).
    pub fn load(cfgs: &[EmbedderConfig]) -> Result<Self, Error> {
        let mut by_name = HashMap::new();
        for (i, c) in cfgs.iter().enumerate() {
            let model = crate::embed::load(i, c)?;
            tracing::info!(embedder = %c.name, identity = model.identity(), dimensions = ?model.dimensions(), "embedder ready");
            let loaded = match c.kind {
                // One call with every text of the batch: the model orders them by length and
                // cuts its own passes by `batch_size` and `max_batch_tokens`.
                EmbedderKind::Local => Model {
                    model,
                    batch_size: usize::MAX,
                    max_batch_tokens: 0,
                    tokens: crate::mapping::chunk::Tokens::load(None)?,
                    concurrency: 1,
                },
                // A tokenizer only to keep requests within a token budget.
                EmbedderKind::Openai => Model {
                    model,
                    batch_size: c.batch_size,
                    max_batch_tokens: c.max_batch_tokens,
                    tokens: crate::mapping::chunk::Tokens::load(match c.max_batch_tokens {
                        0 => None,
                        _ => c.tokenizer.as_deref(),
                    })?,
                    concurrency: c.concurrency,
                },
            };
            by_name.insert(c.name.clone(), loaded);
        }
        Ok(Self { by_name })
    }

    /// [`Embedders::load`] on a blocking thread (model files are read and parsed).
    pub async fn load_blocking(cfgs: &[EmbedderConfig]) -> Result<Self, Error> {
        let cfgs = cfgs.to_vec();
        tokio::task::spawn_blocking(move || Self::load(&cfgs))
            .await
            .map_err(|e| Error::prerequisite(format!("loading embedders: {e}"), "see the log"))?
    }

    /// Loads `cfg`'s embedders and checks them against its tables: sizes, and the models the
    /// collections' points were embedded with (transient errors retried until `shutdown`,
    /// then `Err(Error::Shutdown)`).
    pub async fn load_checked(
        cfg: &crate::config::Config,
        sink: &crate::sink::qdrant::QdrantSink,
        max_backoff: std::time::Duration,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<Self, Error> {
        Self::load_blocking(&cfg.embedders)
            .await?
            .checked(cfg, sink, max_backoff, shutdown)
            .await
    }

    /// The checks of [`Embedders::load_checked`] on embedders already loaded (a run loads them
    /// while it sets up the source).
    pub async fn checked(
        self,
        cfg: &crate::config::Config,
        sink: &crate::sink::qdrant::QdrantSink,
        max_backoff: std::time::Duration,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<Self, Error> {
        self.check_sizes(&cfg.tables)?;
        crate::error::retry_transient(
            "check embedding models",
            max_backoff,
            shutdown,
            std::time::Duration::ZERO,
            || self.refuse_mixed_models(sink, &cfg.tables),
        )
        .await?;
        Ok(self)
    }

    /// Every vector computed from text has the size its embedder gives (when it says).
    pub fn check_sizes(&self, tables: &[TableConfig]) -> Result<(), Error> {
        for (i, t) in tables.iter().enumerate() {
            for crate::config::EmbeddedVector {
                name,
                embedder,
                size,
                ..
            } in t.embedded_vectors()
            {
                let Some(dims) = self
                    .by_name
                    .get(&embedder)
                    .and_then(|e| e.model.dimensions())
                else {
                    continue; // validated with the config; a service without dimensions is checked by Qdrant
                };
                let dims = dims as u64;
                if dims != size {
                    let field = if name.is_empty() {
                        format!("tables[{i}].vector.size")
                    } else {
                        format!("tables[{i}].vectors.{name}.size")
                    };
                    return Err(Error::config(
                        field,
                        format!("{size}, but embedder {embedder:?} gives {dims} dimensions; set size = {dims}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuses to mix vectors of two models in one collection: a table whose points were
    /// embedded by another model than the configured one is an error naming both and the way out.
    pub async fn refuse_mixed_models(
        &self,
        sink: &crate::sink::qdrant::QdrantSink,
        tables: &[TableConfig],
    ) -> Result<(), Error> {
        for (i, t) in tables.iter().enumerate() {
            let table = crate::event::TableName::parse(&t.table).to_string();
            for crate::config::EmbeddedVector { name, embedder, .. } in t.embedded_vectors() {
                let Some(identity) = self.identity(&embedder) else {
                    continue;
                };
                let others = sink
                    .embedded_by_other_models(&t.collection, &table, record_name(&name), identity)
                    .await?;
                if others > 0 {
                    return Err(Error::prerequisite(
                        format!(
                            "tables[{i}] {table}: {others} points in collection {} hold vectors embedded by another model than embedder {embedder:?} ({identity}); pg2qdrant does not mix vectors of two models in one collection",
                            t.collection
                        ),
                        "with the collection behind an alias (collection_config.alias), run `pg2qdrant rebuild --table` and start again: a new collection is built with the new model while searches keep using this one; otherwise point the table at a new collection and run `pg2qdrant resync --table`; or restore the previous model",
                    ));
                }
            }
        }
        Ok(())
    }

    /// What a point records as the model of a vector computed by `embedder`: a loaded model's
    /// identity, or a BM25 encoder's name (which holds its parameters).
    fn identity<'a>(&'a self, embedder: &'a str) -> Option<&'a str> {
        match self.by_name.get(embedder) {
            Some(e) => Some(e.model.identity()),
            None => Bm25::parse(embedder).map(|_| embedder),
        }
    }

    /// Computes into `done` the vectors of the pending inputs of `ops` that it does not hold
    /// yet, reusing `stored` vectors whose input did not change. A transient failure (service
    /// busy or down) is an error to call again with the same `done`: what an earlier attempt
    /// embedded is kept, never paid for twice. An input the embedder refuses is recorded in
    /// `done` as failed.
    async fn compute(
        &self,
        ops: &[Op],
        stored: &Stored,
        done: &std::sync::Mutex<Results>,
    ) -> Result<(), Error> {
        let mut out = std::mem::take(&mut *done.lock().expect("computed lock"));
        let result = self.compute_into(ops, stored, &mut out).await;
        *done.lock().expect("computed lock") = out;
        result
    }

    async fn compute_into(
        &self,
        ops: &[Op],
        stored: &Stored,
        out: &mut Results,
    ) -> Result<(), Error> {
        for (name, pairs) in self.wanted(ops, stored, out) {
            // BM25 (sparse_vectors kind = "bm25"): pure and cheap, computed here.
            if let (None, Some(bm25)) = (self.by_name.get(name), Bm25::parse(name)) {
                for pair in &pairs {
                    let v = bm25.document(input_text(ops, pair));
                    out.vectors.insert(*pair, Vector::Sparse(v));
                }
                metrics::counter!(names::EMBEDDINGS, "embedder" => name.to_owned())
                    .increment(pairs.len() as u64);
                continue;
            }
            let Some(e) = self.by_name.get(name) else {
                for (i, _) in pairs {
                    out.failed
                        .insert(i, format!("no embedder named {name:?} is loaded"));
                }
                continue;
            };
            embed_with(e, name, &pairs, ops, out).await?;
        }
        Ok(())
    }

    /// The (op, input) pairs of `ops` still to embed, by embedder: those `out` holds from an
    /// earlier attempt are left out, and so are those whose stored vector was embedded from the
    /// same input by the same model (reused into `out`).
    fn wanted<'o>(
        &self,
        ops: &'o [Op],
        stored: &Stored,
        out: &mut Results,
    ) -> HashMap<&'o str, Vec<(usize, usize)>> {
        let mut wanted: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            let Some(doc) = doc(op) else { continue };
            let point = stored.get(&(op.collection().to_string(), doc.key.clone()));
            for (j, input) in doc.embed.iter().enumerate() {
                if out.vectors.contains_key(&(i, j)) || out.failed.contains_key(&i) {
                    continue; // an earlier attempt has it
                }
                let reused = point.and_then(|(record, vs)| {
                    let identity = self.identity(&input.embedder)?;
                    let name = record_name(&input.vector);
                    (record.get(name)?.get("hash")?.as_str()? == hash(identity, &input.text))
                        .then(|| vs.get(&input.vector))?
                });
                match reused {
                    Some(v) => {
                        metrics::counter!(names::EMBED_UNCHANGED, "embedder" => input.embedder.to_string()).increment(1);
                        out.vectors.insert((i, j), v);
                    }
                    None => wanted.entry(&*input.embedder).or_default().push((i, j)),
                }
            }
        }
        wanted
    }

    /// Moves the computed vectors into the documents of `ops` (the same ops `computed` was made
    /// for) and records what each was built from. Returns the ops that could not be embedded,
    /// by index, with the reason.
    fn apply(&self, ops: &mut [Op], mut computed: Results) -> Vec<(usize, String)> {
        for (i, op) in ops.iter_mut().enumerate() {
            if computed.failed.contains_key(&i) {
                continue;
            }
            let Some(doc) = doc_mut(op) else { continue };
            for (j, input) in std::mem::take(&mut doc.embed).into_iter().enumerate() {
                let v = computed
                    .vectors
                    .remove(&(i, j))
                    .expect("computed for this op");
                let identity = self
                    .identity(&input.embedder)
                    .unwrap_or_default()
                    .to_owned();
                record(doc, &input.vector, &identity, &input.text);
                Vectors::put(&mut doc.vectors, &input.vector, v);
            }
        }
        let mut failed: Vec<(usize, String)> = computed.failed.into_iter().collect();
        failed.sort_unstable_by_key(|(i, _)| *i);
        failed
    }
}

/// Embeds `pairs` with model `e` (named `name`): up to its `concurrency` calls in flight,
/// results taken in order; every call that succeeded is kept in `out` even when another failed
/// transiently (that failure is returned, and the retry skips what is kept). A call the model
/// refuses is tried again input by input to find the one at fault.
async fn embed_with(
    e: &Model,
    name: &str,
    pairs: &[(usize, usize)],
    ops: &[Op],
    out: &mut Results,
) -> Result<(), Error> {
    let text = |p: &(usize, usize)| input_text(ops, p).to_owned();
    let mut waiting = e
        .calls(pairs, ops)
        .into_iter()
        .map(|g| (g, g.iter().map(text).collect::<Vec<_>>()));
    let mut calls = futures_util::stream::FuturesOrdered::new();
    let mut transient = None;
    loop {
        while calls.len() < e.concurrency {
            let Some((group, texts)) = waiting.next() else {
                break;
            };
            calls.push_back(call_group(&e.model, name, group, texts));
        }
        let Some((group, result)) = calls.next().await else {
            break;
        };
        let result = match result {
            Ok(r) => r,
            Err(err) => {
                transient.get_or_insert(err);
                continue;
            }
        };
        match result {
            Ok(vs) => {
                for (&pair, v) in group.iter().zip(vs) {
                    out.vectors.insert(pair, Vector::Dense(v));
                }
            }
            // Find the input at fault: one at a time.
            Err(_) => {
                for (&pair, text) in group.iter().map(|p| (p, text(p))) {
                    match call(&e.model, name, vec![text]).await? {
                        Ok(mut v) => {
                            out.vectors.insert(pair, Vector::Dense(v.remove(0)));
                        }
                        Err(reason) => {
                            metrics::counter!(names::EMBED_FAILED, "embedder" => name.to_owned())
                                .increment(1);
                            out.failed
                                .insert(pair.0, format!("embedder {name:?}: {reason}"));
                        }
                    }
                }
            }
        }
    }
    match transient {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// One call of a group of `(op, input)` pairs, returned with it.
async fn call_group<'g>(
    model: &Arc<dyn Embedder>,
    name: &str,
    group: &'g [(usize, usize)],
    texts: Vec<String>,
) -> (
    &'g [(usize, usize)],
    Result<Result<Vec<Vec<f32>>, String>, Error>,
) {
    (group, call(model, name, texts).await)
}

/// The text of input `j` of op `i`.
fn input_text<'a>(ops: &'a [Op], &(i, j): &(usize, usize)) -> &'a str {
    &doc(&ops[i]).expect("has a document").embed[j].text
}

fn doc(op: &Op) -> Option<&Document> {
    match op {
        Op::Upsert { doc, .. } | Op::Merge { doc, .. } => Some(doc),
        _ => None,
    }
}

fn doc_mut(op: &mut Op) -> Option<&mut Document> {
    match op {
        Op::Upsert { doc, .. } | Op::Merge { doc, .. } => Some(doc),
        _ => None,
    }
}

/// One batch's way through the embedders, the protocol written once for the Qdrant destination
/// (`to_qdrant`, and so `run` and `apply`) and for `verify --repair`:
///
/// 1. [`Pass::read`] what the batch's points were embedded from ([`Stored`]), once;
/// 2. [`Pass::compute`] the vectors whose input changed, keeping what each attempt computed
///    (a caller retries a transient failure by calling it again: nothing is paid for twice);
/// 3. [`Pass::finish`] moves the vectors into the documents, records their inputs, and hands
///    back the ops whose text the embedder refused, taken out of the batch.
///
/// Each step is its own call so a caller can retry the read (a Qdrant outage) and the
/// computation (an embedder outage) as the outages they are; [`Pass::run`] does all three once.
pub struct Pass<'e> {
    embedders: &'e Embedders,
    reuse: Reuse,
    stored: std::sync::Mutex<Option<Arc<Stored>>>,
    done: std::sync::Mutex<Results>,
}

/// Which stored vectors a [`Pass`] may reuse when their input did not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Every one (the stream: an update of other columns, a replay, a resync cost nothing).
    All,
    /// Dense vectors only: the sparse ones are computed again (a repair: `verify` compares them
    /// with the row's text, and a drifted one must record the right hash).
    DenseOnly,
}

impl<'e> Pass<'e> {
    pub fn new(embedders: &'e Embedders, reuse: Reuse) -> Self {
        Self {
            embedders,
            reuse,
            stored: std::sync::Mutex::new(None),
            done: std::sync::Mutex::new(Results::default()),
        }
    }

    /// Step 1: reads [`Stored`] for `ops` unless an earlier call did.
    pub async fn read<S: Sink>(&self, sink: &S, ops: &[Op]) -> Result<(), Error> {
        if self.stored.lock().expect("stored lock").is_some() {
            return Ok(());
        }
        let mut found = stored(sink, ops).await?;
        if self.reuse == Reuse::DenseOnly {
            forget_sparse(&mut found);
        }
        *self.stored.lock().expect("stored lock") = Some(Arc::new(found));
        Ok(())
    }

    /// Step 2: computes what is still missing (after [`Pass::read`]).
    pub async fn compute(&self, ops: &[Op]) -> Result<(), Error> {
        let stored = self
            .stored
            .lock()
            .expect("stored lock")
            .clone()
            .expect("Pass::read before Pass::compute");
        self.embedders.compute(ops, &stored, &self.done).await
    }

    /// Step 3: the vectors into `ops`; the refused ops taken out, returned with the reason.
    pub fn finish(self, ops: &mut Vec<Op>) -> Vec<(Op, String)> {
        let computed = self.done.into_inner().expect("computed lock");
        let failed = self.embedders.apply(ops, computed);
        let mut refused: Vec<(Op, String)> = failed
            .into_iter()
            .rev()
            .map(|(i, reason)| (ops.remove(i), reason))
            .collect();
        refused.reverse();
        refused
    }

    /// The three steps once, no retry.
    pub async fn run<S: Sink>(
        self,
        sink: &S,
        ops: &mut Vec<Op>,
    ) -> Result<Vec<(Op, String)>, Error> {
        self.read(sink, ops).await?;
        self.compute(ops).await?;
        Ok(self.finish(ops))
    }
}

/// The documents of `ops` that wait for a vector from text, by embedder (for the
/// `EMBED_WAITING` gauge: up when a batch is handed to the writer, down once its vectors are
/// computed, by the same counts).
pub fn waiting(ops: &[Op]) -> Vec<(Arc<str>, usize)> {
    let mut by: Vec<(Arc<str>, usize)> = Vec::new();
    for d in ops.iter().filter_map(doc) {
        let Some(input) = d.embed.first() else {
            continue;
        };
        match by.iter_mut().find(|(e, _)| *e == input.embedder) {
            Some(entry) => entry.1 += 1,
            None => by.push((input.embedder.clone(), 1)),
        }
    }
    by
}

/// Moves the `EMBED_WAITING` gauge by `counts` (see [`waiting`]) times `sign`.
pub fn count_waiting(counts: &[(Arc<str>, usize)], sign: f64) {
    for (embedder, n) in counts {
        metrics::gauge!(names::EMBED_WAITING, "embedder" => embedder.to_string())
            .increment(sign * *n as f64);
    }
}

/// Does `ops` hold text still to embed?
pub fn pending(ops: &[Op]) -> bool {
    ops.iter()
        .any(|o| doc(o).is_some_and(|d| !d.embed.is_empty()))
}

/// What the points of a batch were embedded from, by (collection, key).
pub type Stored = HashMap<(String, PointKey), (Value, Vectors)>;

/// Reads [`Stored`] for the documents of `ops` with text to embed (one read per collection).
async fn stored<S: Sink>(sink: &S, ops: &[Op]) -> Result<Stored, Error> {
    let mut keys: HashMap<&str, Vec<PointKey>> = HashMap::new();
    for op in ops {
        if let Some(d) = doc(op).filter(|d| !d.embed.is_empty()) {
            keys.entry(op.collection()).or_default().push(d.key.clone());
        }
    }
    let mut out = Stored::new();
    for (collection, keys) in keys {
        for (key, found) in sink.embedded(collection, &keys).await? {
            out.insert((collection.to_owned(), key), found);
        }
    }
    Ok(out)
}

/// Leaves the sparse vectors out of `stored`, so they are computed again rather than reused (a
/// repair: `verify` compares them with the row's text, and a drifted one records the right hash).
fn forget_sparse(stored: &mut Stored) {
    for (_, vs) in stored.values_mut() {
        if let Vectors::Named(list) = vs {
            list.retain(|(_, v)| matches!(v, Vector::Dense(_)));
        }
    }
}

/// One embedder call, counted. `Err`: transient (retry the computation); `Ok(Err)`: the inputs
/// were refused.
async fn call(
    model: &Arc<dyn Embedder>,
    name: &str,
    texts: Vec<String>,
) -> Result<Result<Vec<Vec<f32>>, String>, Error> {
    let n = texts.len();
    let started = Instant::now();
    let out = match model.clone().embed_batch(texts).await {
        Ok(out) => out,
        Err(EmbedError::Definite(reason)) => return Ok(Err(reason)),
        Err(EmbedError::Transient {
            reason,
            retry_after,
        }) => {
            metrics::counter!(names::EMBED_RETRIES, "embedder" => name.to_owned()).increment(1);
            // The caller's retry waits at least what the service asked (and stops waiting when
            // the connector stops).
            return Err(Error::Embed {
                embedder: name.to_owned(),
                reason,
                retry_after,
            });
        }
    };
    let name = name.to_owned();
    metrics::histogram!(names::EMBED_LATENCY, "embedder" => name.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!(names::EMBED_BATCH, "embedder" => name.clone()).record(n as f64);
    metrics::counter!(names::EMBEDDINGS, "embedder" => name.clone()).increment(n as u64);
    if out.truncated > 0 {
        metrics::counter!(names::EMBED_TRUNCATED, "embedder" => name)
            .increment(out.truncated as u64);
    }
    Ok(Ok(out.vectors))
}

/// Records on the point what the vector was built from: `_pg2qdrant.embedded.<vector>`.
fn record(doc: &mut Document, vector: &str, identity: &str, text: &str) {
    let hash = hash(identity, text);
    let name = record_name(vector);
    if let Some(meta) = &mut doc.meta {
        meta.embedded
            .insert(name.to_owned(), json!({"model": identity, "hash": hash}));
    }
}

#[cfg(test)]
mod calls_tests {
    use super::group_calls;

    #[test]
    fn calls_hold_at_most_batch_size_inputs_and_the_token_budget() {
        let tokens = [3, 4, 2, 9, 1, 1, 1];
        let sizes = |b, t| -> Vec<Vec<usize>> {
            group_calls(&tokens, b, t, |n| *n)
                .into_iter()
                .map(|g| g.to_vec())
                .collect()
        };
        assert_eq!(sizes(3, 0), [vec![3, 4, 2], vec![9, 1, 1], vec![1]]);
        // 9 > 8 alone in its call; the others fill up to 8 tokens.
        assert_eq!(sizes(10, 8), [vec![3, 4], vec![2], vec![9], vec![1, 1, 1]]);
        assert!(group_calls(&[] as &[usize], 4, 8, |n| *n).is_empty());
    }
}
