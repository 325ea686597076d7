//! Fixed windows next to content-defined chunks (`chunk.chunking`), on the same documents and the
//! same edits: how well a question finds the chunk holding its answer (hit@1, hit@5, all-MiniLM-L6-v2,
//! exact cosine over every chunk), and how many chunks one edit embeds again and deletes.
//! Run with `BENCH_ONLY=chunking bash scripts/bench.sh`. Prints figures only.
//!
//! The corpus is synthetic and seeded (no download): documents of paragraphs of one-fact
//! sentences ("The blue pump in Oslo was repaired by Ana Silva in 1987."), and per fact a
//! question ("Who repaired the blue pump in Oslo?"). A hit is a retrieved chunk holding the whole
//! fact sentence, so the figure measures what boundaries do to a fact: a window that cuts a
//! sentence in two leaves no chunk holding it. An edit inserts one new sentence at a random place
//! of a document; a chunk is embedded again when its point (windows: the chunk's index; content:
//! its text and place among equal texts, `mapping::key`) does not hold the same text before.

use pg2qdrant::config::{ChunkConfig, Chunking};
use pg2qdrant::embed::LocalEmbedder;
use pg2qdrant::mapping::chunk::Splitter;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADJ: [&str; 8] = [
    "blue", "old", "main", "north", "spare", "large", "quiet", "broken",
];
const THING: [&str; 10] = [
    "pump", "bridge", "server", "boiler", "gate", "crane", "elevator", "turbine", "printer",
    "antenna",
];
const PLACE: [&str; 12] = [
    "Oslo", "Lima", "Porto", "Dakar", "Quito", "Hanoi", "Perth", "Tunis", "Lyon", "Osaka", "Cork",
    "Riga",
];
const PERSON: [&str; 10] = [
    "Ana Silva",
    "Tom Berg",
    "Li Wei",
    "Sara Khan",
    "Omar Haddad",
    "Eva Novak",
    "Raj Patel",
    "Mia Jensen",
    "Juan Ortiz",
    "Kofi Mensah",
];

/// A fixed-seed generator (the corpus is the same in every run).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

/// A fact: its sentence and its question.
struct Fact {
    sentence: String,
    question: String,
}

fn fact(rng: &mut Rng, seen: &mut HashSet<String>) -> Fact {
    loop {
        let (a, t, n, p) = (
            ADJ[rng.below(ADJ.len())],
            THING[rng.below(THING.len())],
            1 + rng.below(99),
            PLACE[rng.below(PLACE.len())],
        );
        // 95 040 combinations: the corpus takes a few thousand.
        if !seen.insert(format!("{a} {t} {n} {p}")) {
            continue;
        }
        let who = PERSON[rng.below(PERSON.len())];
        let year = 1950 + rng.below(70);
        return Fact {
            sentence: format!("The {a} {t} number {n} in {p} was repaired by {who} in {year}."),
            question: format!("Who repaired the {a} {t} number {n} in {p}?"),
        };
    }
}

/// Documents as paragraphs of facts.
fn corpus(docs: usize, rng: &mut Rng, seen: &mut HashSet<String>) -> Vec<Vec<Vec<Fact>>> {
    (0..docs)
        .map(|_| {
            (0..4 + rng.below(5))
                .map(|_| (0..2 + rng.below(5)).map(|_| fact(rng, seen)).collect())
                .collect()
        })
        .collect()
}

fn text(doc: &[Vec<Fact>]) -> String {
    doc.iter()
        .map(|p| {
            p.iter()
                .map(|f| f.sentence.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A chunk's point as the mapping names it (`mapping::chunks`): its index (windows), or its text
/// and how many chunks before it have the same text (content).
fn points(chunks: &[&str], chunking: Chunking) -> Vec<(String, String)> {
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let id = match chunking {
                Chunking::Windows => i.to_string(),
                Chunking::Content => {
                    let same = chunks[..i].iter().filter(|d| *d == c).count();
                    format!("{c}\u{0}{same}")
                }
            };
            (id, (*c).to_owned())
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

fn main() {
    let model_dir = PathBuf::from(
        std::env::var("PG2QDRANT_TEST_MODEL").expect("PG2QDRANT_TEST_MODEL (scripts/bench.sh)"),
    );
    let max_tokens: usize = std::env::var("BENCH_CHUNK_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let docs: usize = std::env::var("BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let model = LocalEmbedder::load(&model_dir, 2).expect("the model");
    let mut rng = Rng(42);
    let mut seen = HashSet::new();
    let corpus = corpus(docs, &mut rng, &mut seen);
    let texts: Vec<String> = corpus.iter().map(|d| text(d)).collect();
    let facts: Vec<&Fact> = corpus.iter().flatten().flatten().collect();
    // Every second fact or so asked (at least 400 questions when the corpus has them).
    let step = (facts.len() / 400).max(1);
    let asked: Vec<&Fact> = facts.iter().step_by(step).copied().collect();
    let questions: Vec<&str> = asked.iter().map(|f| f.question.as_str()).collect();
    let queries = model.embed(&questions).expect("embed questions").vectors;
    // The edits: one new sentence per document, at a random sentence boundary.
    let edited: Vec<String> = corpus
        .iter()
        .map(|doc| {
            let p = rng.below(doc.len());
            let s = rng.below(doc[p].len() + 1);
            let new = fact(&mut rng, &mut seen).sentence;
            let paragraphs: Vec<String> = doc
                .iter()
                .enumerate()
                .map(|(i, para)| {
                    let mut sentences: Vec<&str> =
                        para.iter().map(|f| f.sentence.as_str()).collect();
                    if i == p {
                        sentences.insert(s, &new);
                    }
                    sentences.join(" ")
                })
                .collect();
            paragraphs.join("\n\n")
        })
        .collect();
    println!(
        "chunking: {docs} documents, {} facts, {} questions, max_tokens = {max_tokens}, one sentence inserted per document",
        facts.len(),
        questions.len()
    );
    // Content-defined chunks end at every paragraph, so they come out smaller than windows of the
    // same limit: windows of half the limit are shown too, for chunks of a like size.
    for (name, chunking, limit, overlap) in [
        ("fixed windows", Chunking::Windows, max_tokens, 0),
        (
            "fixed windows, overlap 16",
            Chunking::Windows,
            max_tokens,
            16.min(max_tokens / 2),
        ),
        (
            "fixed windows, half the limit",
            Chunking::Windows,
            max_tokens / 2,
            0,
        ),
        ("content-defined", Chunking::Content, max_tokens, 0),
    ] {
        let splitter = Splitter::load(
            &ChunkConfig {
                max_tokens: limit,
                overlap,
                chunking,
            },
            Some(&model_dir.join("tokenizer.json")),
        )
        .expect("the splitter");
        let chunks: Vec<&str> = texts.iter().flat_map(|t| splitter.split(t)).collect();
        let started = Instant::now();
        let vectors = model.embed(&chunks).expect("embed chunks").vectors;
        let secs = started.elapsed().as_secs_f64();
        let (mut hit1, mut hit5) = (0, 0);
        for (q, f) in queries.iter().zip(&asked) {
            let mut ranked: Vec<(f32, usize)> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (cosine(q, v), i))
                .collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
            let holds = |i: usize| chunks[i].contains(&f.sentence);
            hit1 += usize::from(holds(ranked[0].1));
            hit5 += usize::from(ranked.iter().take(5).any(|(_, i)| holds(*i)));
        }
        let whole = facts
            .iter()
            .filter(|f| chunks.iter().any(|c| c.contains(&f.sentence)))
            .count();
        let (mut again, mut deleted) = (0, 0);
        for (before, after) in texts.iter().zip(&edited) {
            let old: HashSet<(String, String)> = points(&splitter.split(before), chunking)
                .into_iter()
                .collect();
            let new = points(&splitter.split(after), chunking);
            again += new.iter().filter(|p| !old.contains(*p)).count();
            let ids: HashSet<&String> = new.iter().map(|(id, _)| id).collect();
            deleted += old.iter().filter(|(id, _)| !ids.contains(id)).count();
        }
        let tokens: f64 = chunks
            .iter()
            .map(|c| c.split_whitespace().count() as f64)
            .sum::<f64>()
            / chunks.len() as f64;
        println!(
            "{name}: {} chunks ({tokens:.0} words each on average, embedded in {secs:.1} s); facts whole in one chunk {:.3}; hit@1 {:.3}, hit@5 {:.3}; per edit: {:.2} chunks embedded again, {:.2} deleted (of {:.1} per document)",
            chunks.len(),
            whole as f64 / facts.len() as f64,
            hit1 as f64 / asked.len() as f64,
            hit5 as f64 / asked.len() as f64,
            again as f64 / docs as f64,
            deleted as f64 / docs as f64,
            chunks.len() as f64 / docs as f64,
        );
    }
}
