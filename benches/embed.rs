//! Sentences/s of the local embedder (all-MiniLM-L6-v2, candle, CPU), batch 32, on chat-sized
//! sentences; run with `scripts/bench_embed.sh`, which also times sentence-transformers on the
//! same sentences when a Python with it is given. Prints figures only.

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

/// Sentences/s embedding `texts` in calls of `batch`.
fn rate(m: &LocalEmbedder, texts: &[String], batch: usize) -> f64 {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    m.embed(&refs[..batch.min(refs.len())]).unwrap(); // warm up
    let t = Instant::now();
    for chunk in refs.chunks(batch) {
        m.embed(chunk).unwrap();
    }
    texts.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let dir = std::env::var("PG2QDRANT_TEST_MODEL")
        .expect("PG2QDRANT_TEST_MODEL: run scripts/bench_embed.sh");
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let n: usize = std::env::var("BENCH_SENTENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let batch = 32;
    let m = LocalEmbedder::load(std::path::Path::new(&dir), threads).unwrap();
    let s = sentences(n);
    if let Ok(path) = std::env::var("BENCH_SENTENCES_OUT") {
        std::fs::write(path, s.join("\n")).unwrap();
    }
    println!(
        "pg2qdrant local embedder (candle, {threads} threads): {:.0} sentences/s ({n} sentences, batch {batch})",
        rate(&m, &s, batch)
    );
    // The mixed corpus, in calls of 256 (a writer batch): the embedder orders each call by
    // length into passes of its own.
    let mixed = mixed(n / 4);
    let words: usize = mixed.iter().map(|t| t.split(' ').count()).sum();
    println!(
        "mixed-length corpus (3-300 words, mean {:.0}): {:.1} texts/s ({} texts, calls of 256)",
        words as f64 / mixed.len() as f64,
        rate(&m, &mixed, 256),
        mixed.len()
    );
}
