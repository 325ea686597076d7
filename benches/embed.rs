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
    let refs: Vec<&str> = s.iter().map(String::as_str).collect();
    m.embed(&refs[..batch]).unwrap(); // warm up
    let t = Instant::now();
    for chunk in refs.chunks(batch) {
        m.embed(chunk).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "pg2qdrant local embedder (candle, {threads} threads): {:.0} sentences/s ({n} sentences, batch {batch})",
        n as f64 / secs
    );
}
