//! A BERT sentence encoder written as an ONNX graph straight from the model's safetensors
//! weights: no torch, no export step, no file to keep in sync with the weights.
//!
//! The graph is the one ONNX Runtime's own transformer optimiser would leave behind, written
//! fused from the start, so the runtime spends its time in a few large kernels:
//! - embeddings: `Gather` of the word vectors, plus the position vectors (with the token-type-0
//!   row folded in: every input is one segment), then `LayerNormalization`;
//! - per layer: `Attention` (the query, key and value projections as one GEMM, the padding mask,
//!   softmax) then the output projection and `SkipLayerNormalization` (residual, bias and norm in
//!   one pass), the intermediate projection and `BiasGelu` (exact erf GELU, as BERT's `gelu`),
//!   the output projection and a second `SkipLayerNormalization`;
//! - mean pooling over the attention mask and, when the model lists a Normalize module, L2
//!   normalisation, so the graph's output is the sentence vector itself.
//!
//! With [`Precision::Int8`] every projection is a `DynamicQuantizeMatMul` over weights quantised
//! here per output column (symmetric, scale = max |w| / 127), and attention takes the projected
//! query, key and value through `MultiHeadAttention`; activations are quantised per call by the
//! runtime. Embeddings, norms and attention scores stay f32.

use super::onnx::{self, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto};
use std::collections::HashMap;

/// The numbers of the encoder (from `config.json`).
pub struct Shape {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f32,
}

/// How the projections compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Int8,
}

/// The f32 tensors of a safetensors file, by name.
pub struct Weights {
    /// The file.
    bytes: Vec<u8>,
    /// Each f32 tensor's shape and where its values are in `bytes` (little-endian).
    tensors: HashMap<String, (Vec<usize>, std::ops::Range<usize>)>,
    /// `bert.` when the encoder's names carry it (models saved with a head).
    prefix: &'static str,
}

impl Weights {
    /// Parses a safetensors file (an 8-byte little-endian header length, a JSON header of
    /// `name: {dtype, shape, data_offsets}`, then the data). Non-f32 tensors are skipped (the
    /// encoder's are all f32; `position_ids` is i64 and unused). Values are read where they are
    /// needed: the largest table goes into the graph as bytes, without a copy as floats.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        let n = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or("shorter than a safetensors header")?;
        let header: HashMap<String, serde_json::Value> = bytes
            .get(8..8usize.saturating_add(n))
            .ok_or("header runs past the end of the file")
            .and_then(|h| serde_json::from_slice(h).map_err(|_| "header is not JSON"))?;
        let start = 8 + n;
        let data = &bytes[start..];
        let mut tensors = HashMap::new();
        for (name, t) in header {
            if name == "__metadata__" || t["dtype"] != "F32" {
                continue;
            }
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|d| d.as_u64())
                        .map(|d| d as usize)
                        .collect()
                })
                .ok_or(format!("{name}: no shape"))?;
            let at = |i: usize| t["data_offsets"][i].as_u64().map(|x| x as usize);
            let range = match (at(0), at(1)) {
                (Some(a), Some(b)) if a <= b && b <= data.len() => start + a..start + b,
                _ => return Err(format!("{name}: data offsets outside the file")),
            };
            if range.len() != shape.iter().product::<usize>() * 4 {
                return Err(format!("{name}: {} bytes for shape {shape:?}", range.len()));
            }
            tensors.insert(name, (shape, range));
        }
        let prefix = match tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            true => "bert.",
            false => "",
        };
        Ok(Self {
            bytes,
            tensors,
            prefix,
        })
    }

    /// How many rows the tensor `name` has (a table whose size the config does not give).
    fn rows(&self, name: &str) -> Result<usize, String> {
        let full = format!("{}{name}", self.prefix);
        match self.tensors.get(&full) {
            Some((s, _)) if !s.is_empty() => Ok(s[0]),
            _ => Err(format!("no tensor {full}")),
        }
    }

    /// The values of tensor `name` (under the encoder's prefix), which must have `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        Ok(self
            .raw(name, shape)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    /// The bytes of tensor `name` (f32, little-endian), which must have `shape`.
    fn raw(&self, name: &str, shape: &[usize]) -> Result<&[u8], String> {
        let full = format!("{}{name}", self.prefix);
        match self.tensors.get(&full) {
            Some((s, r)) if s == shape => Ok(&self.bytes[r.clone()]),
            Some((s, _)) => Err(format!("{full} has shape {s:?}, the config says {shape:?}")),
            None => Err(format!("no tensor {full}")),
        }
    }
}

/// `w` ([rows, cols], row-major) transposed.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

struct Builder {
    graph: GraphProto,
    precision: Precision,
    next: usize,
}

impl Builder {
    fn name(&mut self, what: &str) -> String {
        self.next += 1;
        format!("{what}_{}", self.next)
    }

    fn node(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        attributes: Vec<onnx::AttributeProto>,
    ) -> String {
        let out = self.name(op);
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.into(),
            attribute: attributes,
            domain: domain.into(),
        });
        out
    }

    /// A float constant from little-endian bytes as they are.
    fn constant_bytes(&mut self, what: &str, dims: &[usize], bytes: &[u8]) -> String {
        let name = self.name(what);
        let mut t = onnx::tensor::<f32>(&name, dims, &[]);
        t.raw_data = bytes.to_vec();
        self.graph.initializer.push(t);
        name
    }

    fn constant<T: onnx::Raw>(&mut self, what: &str, dims: &[usize], values: &[T]) -> String {
        let name = self.name(what);
        self.graph
            .initializer
            .push(onnx::tensor(&name, dims, values));
        name
    }

    /// `x · wᵀ` for a PyTorch `Linear` weight `w` of [out, inp] (no bias: the consumer adds it).
    fn linear(&mut self, x: &str, w: &[f32], out: usize, inp: usize) -> String {
        let t = transpose(w, out, inp);
        match self.precision {
            Precision::F32 => {
                let w = self.constant("w", &[inp, out], &t);
                self.node("MatMul", "", &[x, &w], vec![])
            }
            Precision::Int8 => {
                let (q, scales) = quantize_columns(&t, inp, out);
                let w = self.constant("wq", &[inp, out], &q);
                let s = self.constant("ws", &[out], &scales);
                self.node(
                    "DynamicQuantizeMatMul",
                    "com.microsoft",
                    &[x, &w, &s],
                    vec![],
                )
            }
        }
    }
}

/// Symmetric int8 per column of `w` ([rows, cols]): the values and each column's scale.
fn quantize_columns(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0f32; cols];
    for r in 0..rows {
        for c in 0..cols {
            scales[c] = scales[c].max(w[r * cols + c].abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[i % cols]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

/// The encoder of `weights` as an ONNX model: inputs `input_ids` (i64) and `attention_mask`
/// (i32, 1 for a token, 0 for padding), both [batch, sequence]; output `embedding`
/// [batch, hidden], mean-pooled and, with `normalize`, of length 1.
pub fn build(
    weights: &Weights,
    shape: &Shape,
    normalize: bool,
    precision: Precision,
) -> Result<Vec<u8>, String> {
    let mut b = Builder {
        graph: GraphProto {
            name: "sentence_encoder".into(),
            input: vec![
                onnx::value("input_ids", DataType::Int64, &["batch", "sequence"]),
                onnx::value("attention_mask", DataType::Int32, &["batch", "sequence"]),
            ],
            output: vec![onnx::value(
                "embedding",
                DataType::Float,
                &["batch", &shape.hidden.to_string()],
            )],
            ..Default::default()
        },
        precision,
        next: 0,
    };
    let (mut x, axes) = embeddings(&mut b, weights, shape)?;
    for l in 0..shape.layers {
        x = layer(&mut b, weights, shape, l, x)?;
    }
    let pooled = pool(&mut b, &x, &axes, normalize);
    b.graph.node.push(NodeProto {
        input: vec![pooled],
        output: vec!["embedding".into()],
        name: "embedding".into(),
        op_type: "Identity".into(),
        ..Default::default()
    });
    Ok(onnx::encode(&ModelProto {
        ir_version: 8,
        producer_name: "pg2qdrant".into(),
        graph: Some(b.graph),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            },
            OperatorSetIdProto {
                domain: "com.microsoft".into(),
                version: 1,
            },
        ],
    }))
}

/// The constants `[1]` and `[2]` (axes the pooling reuses).
struct Axes {
    one: String,
    two: String,
}

/// Word, position and token-type embeddings summed and normalised: the first layer's input.
fn embeddings(b: &mut Builder, weights: &Weights, shape: &Shape) -> Result<(String, Axes), String> {
    let h = shape.hidden;
    let vocab = weights.rows("embeddings.word_embeddings.weight")?;
    let positions = weights.rows("embeddings.position_embeddings.weight")?;
    // The largest table (vocabulary × hidden) goes in as the file's bytes.
    let words = weights.raw("embeddings.word_embeddings.weight", &[vocab, h])?;
    let words = b.constant_bytes("words", &[vocab, h], words);
    let pos = weights.get("embeddings.position_embeddings.weight", &[positions, h])?;
    let types = weights
        .get("embeddings.token_type_embeddings.weight", &[2, h])
        .or_else(|_| weights.get("embeddings.token_type_embeddings.weight", &[1, h]))?;
    let pos: Vec<f32> = pos
        .iter()
        .enumerate()
        .map(|(i, p)| p + types[i % h])
        .collect();
    let pos = b.constant("positions", &[positions, h], &pos);
    let gathered = b.node("Gather", "", &[&words, "input_ids"], vec![]);
    let dims = b.node("Shape", "", &["input_ids"], vec![]);
    let (one, two, zero) = (
        b.constant("one", &[1], &[1i64]),
        b.constant("two", &[1], &[2i64]),
        b.constant("zero", &[1], &[0i64]),
    );
    let seq = b.node("Slice", "", &[&dims, &one, &two], vec![]);
    let pos = b.node("Slice", "", &[&pos, &zero, &seq, &zero], vec![]);
    let summed = b.node("Add", "", &[&gathered, &pos], vec![]);
    let (g, beta) = (
        weights.get("embeddings.LayerNorm.weight", &[h])?,
        weights.get("embeddings.LayerNorm.bias", &[h])?,
    );
    let (g, beta) = (
        b.constant("ln_g", &[h], &g),
        b.constant("ln_b", &[h], &beta),
    );
    let x = b.node(
        "LayerNormalization",
        "",
        &[&summed, &g, &beta],
        vec![onnx::int("axis", -1), onnx::float("epsilon", shape.eps)],
    );
    Ok((x, Axes { one, two }))
}

/// Encoder layer `l` over `x`: self-attention, then the feed-forward block, each with its
/// residual and layer norm.
fn layer(
    b: &mut Builder,
    weights: &Weights,
    shape: &Shape,
    l: usize,
    x: String,
) -> Result<String, String> {
    let (h, ff) = (shape.hidden, shape.intermediate);
    let eps = onnx::float("epsilon", shape.eps);
    let p = |s: &str| format!("encoder.layer.{l}.{s}");
    let w = |s: &str, dims: &[usize]| weights.get(&p(s), dims);
    let attended = attention(b, weights, shape, l, &x)?;
    let out = b.linear(
        &attended,
        &w("attention.output.dense.weight", &[h, h])?,
        h,
        h,
    );
    let bias = b.constant("b", &[h], &w("attention.output.dense.bias", &[h])?);
    let g = b.constant("g", &[h], &w("attention.output.LayerNorm.weight", &[h])?);
    let beta = b.constant("beta", &[h], &w("attention.output.LayerNorm.bias", &[h])?);
    let x1 = b.node(
        "SkipLayerNormalization",
        "com.microsoft",
        &[&out, &x, &g, &beta, &bias],
        vec![eps.clone()],
    );
    let inner = b.linear(&x1, &w("intermediate.dense.weight", &[ff, h])?, ff, h);
    let bias = b.constant("b", &[ff], &w("intermediate.dense.bias", &[ff])?);
    let inner = b.node("BiasGelu", "com.microsoft", &[&inner, &bias], vec![]);
    let out = b.linear(&inner, &w("output.dense.weight", &[h, ff])?, h, ff);
    let bias = b.constant("b", &[h], &w("output.dense.bias", &[h])?);
    let g = b.constant("g", &[h], &w("output.LayerNorm.weight", &[h])?);
    let beta = b.constant("beta", &[h], &w("output.LayerNorm.bias", &[h])?);
    Ok(b.node(
        "SkipLayerNormalization",
        "com.microsoft",
        &[&out, &x1, &g, &beta, &bias],
        vec![eps],
    ))
}

/// Layer `l`'s multi-head self-attention over `x` (before its output projection): one fused
/// `Attention` node in f32; in int8, the query, key and value projection quantised, split, and
/// `MultiHeadAttention`.
fn attention(
    b: &mut Builder,
    weights: &Weights,
    shape: &Shape,
    l: usize,
    x: &str,
) -> Result<String, String> {
    let h = shape.hidden;
    let w = |s: &str, dims: &[usize]| weights.get(&format!("encoder.layer.{l}.{s}"), dims);
    // Query, key and value as one `Linear` of [3h, h].
    let mut qkv = Vec::with_capacity(3 * h * h);
    let mut qkv_b = Vec::with_capacity(3 * h);
    for part in ["query", "key", "value"] {
        qkv.extend(w(&format!("attention.self.{part}.weight"), &[h, h])?);
        qkv_b.extend(w(&format!("attention.self.{part}.bias"), &[h])?);
    }
    let heads = onnx::int("num_heads", shape.heads as i64);
    let qkv_bias = b.constant("qkv_b", &[3 * h], &qkv_b);
    Ok(match b.precision {
        Precision::F32 => {
            // Attention's weight is [h, 3h]: the three transposed projections side by side.
            let wq = b.constant("qkv_w", &[h, 3 * h], &transpose(&qkv, 3 * h, h));
            b.node(
                "Attention",
                "com.microsoft",
                &[x, &wq, &qkv_bias, "attention_mask"],
                vec![heads],
            )
        }
        Precision::Int8 => {
            let projected = b.linear(x, &qkv, 3 * h, h);
            let sizes = b.constant("split", &[3], &[h as i64; 3]);
            let names = [b.name("q"), b.name("k"), b.name("v")];
            let name = b.name("Split");
            b.graph.node.push(NodeProto {
                input: vec![projected, sizes],
                output: names.to_vec(),
                name,
                op_type: "Split".into(),
                attribute: vec![onnx::int("axis", 2)],
                domain: String::new(),
            });
            b.node(
                "MultiHeadAttention",
                "com.microsoft",
                &[&names[0], &names[1], &names[2], &qkv_bias, "attention_mask"],
                vec![heads],
            )
        }
    })
}

/// Mean pooling of `x` over the attention mask, then (with `normalize`) L2 normalisation.
fn pool(b: &mut Builder, x: &str, axes: &Axes, normalize: bool) -> String {
    let (one, two) = (&axes.one, &axes.two);
    let mask = b.node("Cast", "", &["attention_mask"], vec![onnx::int("to", 1)]);
    let mask = b.node("Unsqueeze", "", &[&mask, two], vec![]);
    let kept = b.node("Mul", "", &[x, &mask], vec![]);
    let keep = onnx::int("keepdims", 0);
    let sum = b.node("ReduceSum", "", &[&kept, one], vec![keep.clone()]);
    let count = b.node("ReduceSum", "", &[&mask, one], vec![keep]);
    let tiny = b.constant("tiny", &[1], &[1e-9f32]);
    let count = b.node("Max", "", &[&count, &tiny], vec![]);
    let mut pooled = b.node("Div", "", &[&sum, &count], vec![]);
    if normalize {
        let norm = b.node(
            "ReduceL2",
            "",
            &[&pooled],
            vec![onnx::ints("axes", &[1]), onnx::int("keepdims", 1)],
        );
        let tiny = b.constant("tiny", &[1], &[1e-12f32]);
        let norm = b.node("Max", "", &[&norm, &tiny], vec![]);
        pooled = b.node("Div", "", &[&pooled, &norm], vec![]);
    }
    pooled
}
