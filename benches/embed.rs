//! Texts/s of the local embedder (all-MiniLM-L6-v2 on ONNX Runtime, CPU), f32 and int8, on two
//! corpora: uniform chat-sized sentences and mixed-length messages; then int8's quality (cosine
//! to f32, top-10 agreement). Run with `scripts/bench_embed.sh`, which also times
//! sentence-transformers on the same texts (`ST=1`). Prints figures only.

use pg2qdrant::embed::graph::Precision;
use pg2qdrant::embed::local::Options;
use pg2qdrant::embed::LocalEmbedder;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The sentences both sides embed: `scripts/bench_embed.sh` writes the same list for Python.
pub fn sentences(n: usize) -> Vec<String> {
    let subjects = [
        "The deploy",
        "My order",
        "The meeting",
        "Our database",
        "The new feature",
        "This invoice",
    ];
    let verbs = [
        "failed again after",
        "was moved to",
        "needs a review before",
        "looks fine since",
        "broke during",
    ];
    let objects = [
        "the weekend",
        "the last migration",
        "Tuesday's release",
        "the outage",
        "lunch",
        "the customer call",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{} {} {} (ticket {i}); can someone take a look?",
                subjects[i % subjects.len()],
                verbs[(i / subjects.len()) % verbs.len()],
                objects[(i / 7) % objects.len()]
            )
        })
        .collect()
}

/// Chat messages of 3 to 300 words, most of them short (word counts drawn as 3 + 297·u³ from a
/// fixed-seed generator): where padding every batch to its longest member wastes most of the work.
pub fn mixed(n: usize) -> Vec<String> {
    let words = [
        "the",
        "deploy",
        "failed",
        "again",
        "after",
        "migration",
        "ticket",
        "customer",
        "invoice",
        "outage",
        "meeting",
        "please",
        "review",
        "database",
        "release",
        "weekend",
        "error",
        "timeout",
        "search",
        "message",
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let len = 3 + (297.0 * u * u * u) as usize;
            (0..len)
                .map(|k| words[(i * 7 + k * 13) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// This process's CPU time so far, seconds (utime + stime of /proc/self/stat, 100 ticks/s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// "X texts/s, Y us CPU/text" embedding `texts` in calls of `batch` (a writer batch), after one
/// warm-up call.
fn rate(m: &LocalEmbedder, texts: &[String], batch: usize) -> String {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    m.embed(&refs[..batch.min(refs.len())]).unwrap(); // warm up
    let (t, cpu) = (Instant::now(), cpu_seconds());
    for chunk in refs.chunks(batch) {
        m.embed(chunk).unwrap();
    }
    let n = texts.len() as f64;
    format!(
        "{:.1} texts/s, {:.0} us CPU/text",
        n / t.elapsed().as_secs_f64(),
        (cpu_seconds() - cpu) / n * 1e6
    )
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The indexes of the 10 documents nearest `q` (vectors are normalised: dot = cosine).
fn top10(q: &[f32], docs: &[Vec<f32>]) -> Vec<usize> {
    let mut by: Vec<(f32, usize)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (dot(q, d), i))
        .collect();
    by.sort_by(|a, b| b.0.total_cmp(&a.0));
    by.into_iter().take(10).map(|(_, i)| i).collect()
}

fn main() {
    let dir = std::env::var("PG2QDRANT_TEST_MODEL")
        .expect("PG2QDRANT_TEST_MODEL: run scripts/bench_embed.sh");
    let threads = env("BENCH_THREADS", 2);
    let n = env("BENCH_SENTENCES", 1024);
    // The connector's defaults: `batch_size` 32 texts and `max_batch_tokens` 2048 per pass,
    // calls of a writer batch (256).
    let (rows, tokens, call) = (
        env("BENCH_PASS_ROWS", 32),
        env("BENCH_PASS_TOKENS", 0),
        env("BENCH_CALL", 256),
    );
    let open = |precision| {
        let options = Options {
            threads,
            precision,
            batch_size: rows,
            max_batch_tokens: tokens,
            field: "bench".into(),
            ..Options::default()
        };
        LocalEmbedder::open(std::path::Path::new(&dir), &options).unwrap()
    };
    // BENCH_TEXTS=file: only the f32 model alone on that file's lines in order (the rows an end
    // to end run copies), for a ratio taken next to that run.
    if let Ok(path) = std::env::var("BENCH_TEXTS") {
        let texts: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let f32 = open(Precision::F32);
        println!("pg2qdrant f32 alone: {}", rate(&f32, &texts, call));
        return;
    }
    let s = sentences(n);
    let mixed = mixed(n / 4);
    if let Ok(path) = std::env::var("BENCH_SENTENCES_OUT") {
        std::fs::write(&path, s.join("\n")).unwrap();
        std::fs::write(format!("{path}.mixed"), mixed.join("\n")).unwrap();
    }
    let words: usize = mixed.iter().map(|t| t.split(' ').count()).sum();
    println!(
        "corpora: uniform {n} sentences of ~20 tokens; mixed {} texts of 3-300 words (mean {:.0}); {threads} threads, passes of <= {rows} texts and <= {} tokens, calls of {call}",
        mixed.len(),
        words as f64 / mixed.len() as f64,
        if tokens == 0 { pg2qdrant::embed::local::PASS_TOKENS } else { tokens },
    );
    let t = Instant::now();
    let f32 = open(Precision::F32);
    println!(
        "model load (read the weights, write the graph, optimise it): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    println!("pg2qdrant f32 uniform: {}", rate(&f32, &s, call));
    println!("pg2qdrant f32 mixed: {}", rate(&f32, &mixed, call));
    if std::env::var("BENCH_INT8").as_deref() == Ok("0") {
        return;
    }
    let int8 = open(Precision::Int8);
    println!("pg2qdrant int8 uniform: {}", rate(&int8, &s, call));
    println!("pg2qdrant int8 mixed: {}", rate(&int8, &mixed, call));
    // Quality of int8: cosine to the f32 vector, and top-10 agreement when the first 64
    // texts of each corpus search both corpora.
    let all: Vec<&str> = s.iter().chain(&mixed).map(String::as_str).collect();
    let (a, b) = (
        f32.embed(&all).unwrap().vectors,
        int8.embed(&all).unwrap().vectors,
    );
    let cos: Vec<f32> = a.iter().zip(&b).map(|(x, y)| dot(x, y)).collect();
    let queries: Vec<usize> = (0..64).chain(n..n + 64.min(mixed.len())).collect();
    let agree: usize = queries
        .iter()
        .map(|&q| {
            let (x, y) = (top10(&a[q], &a), top10(&b[q], &b));
            x.iter().filter(|i| y.contains(i)).count()
        })
        .sum();
    println!(
        "int8 quality: cosine to f32 mean {:.5}, min {:.5} ({} texts); top-10 agreement {:.3} ({} queries over {} documents)",
        cos.iter().sum::<f32>() / cos.len() as f32,
        cos.iter().copied().fold(f32::MAX, f32::min),
        cos.len(),
        agree as f64 / (10 * queries.len()) as f64,
        queries.len(),
        all.len()
    );
}
