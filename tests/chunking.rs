//! Chunked rows: long text becomes several points, and every change leaves exactly the row's
//! current chunks.

use crate::embedding::{counter, embedder_toml};
use crate::harness::*;
use pg2qdrant::embed::LocalEmbedder;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const DOCS: &str = "CREATE TABLE docs (id bigint PRIMARY KEY, body text, n int);";

/// Words that are one word piece each in all-MiniLM-L6-v2's vocabulary, so a text of `n` of
/// them is `n` tokens and its chunk count is known without the tokenizer.
const WORDS: [&str; 8] = [
    "apple", "house", "river", "green", "table", "music", "water", "light",
];

pub fn words(n: usize, salt: usize) -> String {
    (0..n)
        .map(|i| WORDS[(i + salt) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Chunks of `tokens` tokens in windows of 16 overlapping by 4 (step 12).
fn expected_chunks(tokens: usize) -> usize {
    if tokens <= 16 {
        1
    } else {
        1 + (tokens - 16).div_ceil(12)
    }
}

/// Row `id`'s points: chunk index → (chunk_count, chunk_text, n, vector).
async fn chunks_of(collection: &str, id: &str) -> BTreeMap<u64, (u64, String, Value, Vec<f32>)> {
    all_points(collection)
        .await
        .into_iter()
        .filter(|(_, p)| p.payload["_pg2qdrant"]["key"]["id"] == json!(id))
        .map(|(_, p)| {
            (
                p.payload["chunk_index"].as_u64().expect("chunk_index"),
                (
                    p.payload["chunk_count"].as_u64().expect("chunk_count"),
                    p.payload["chunk_text"].as_str().unwrap_or("").to_owned(),
                    p.payload["n"].clone(),
                    p.vector.clone().expect("a vector"),
                ),
            )
        })
        .collect()
}

/// Waits until row `id` is exactly `want` chunks, indexed 0..want, each counting `want`, and
/// `n` holds `n` on each; returns them.
async fn wait_chunks(
    collection: &str,
    id: &str,
    want: usize,
    n: Value,
) -> BTreeMap<u64, (u64, String, Value, Vec<f32>)> {
    wait_for(&format!("row {id} as {want} chunks"), WAIT, || async {
        let c = chunks_of(collection, id).await;
        let exact = c.len() == want
            && c.keys().copied().eq(0..want as u64)
            && c.values()
                .all(|(count, _, v, _)| *count == want as u64 && *v == n);
        exact.then_some(c)
    })
    .await
}

/// The `[[tables]]` and `[[embedders]]` TOML of docs chunked into `collection` by minilm
/// (named `embedder`: the metrics of every test in this process share one registry).
pub fn chunked(collection: &str, embedder: &str, max_tokens: usize, overlap: usize) -> String {
    format!(
        "[[tables]]\ntable = \"docs\"\ncollection = \"{collection}\"\n\
         vector = {{ embed = \"{embedder}\", text = \"{{body}}\", size = 384, distance = \"Cosine\" }}\n\
         chunk = {{ max_tokens = {max_tokens}, overlap = {overlap} }}\n{}",
        embedder_toml().replace("\"minilm\"", &format!("\"{embedder}\""))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_rows_shrink_grow_delete_and_truncate_leave_exactly_their_chunks() {
    let db = TestDb::new(
        "t_chunks",
        &format!(
            "{DOCS} INSERT INTO docs VALUES (1, '{}', 1), (2, '{}', 1);",
            words(40, 0),
            words(5, 3)
        ),
    )
    .await;
    let port = free_port();
    let mut cfg = db.config(&chunked("t_chunks", "minilm_chunks", 16, 4));
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    let run = db.start(cfg).await;
    let embedded = || counter(port, "pg2qdrant_embeddings_total", "minilm_chunks");

    // Copied rows are chunked: 40 tokens → 3 chunks, 5 → 1.
    let one = wait_chunks("t_chunks", "1", expected_chunks(40), json!(1)).await;
    assert_eq!(expected_chunks(40), 3);
    wait_chunks("t_chunks", "2", 1, json!(1)).await;
    let model = LocalEmbedder::load(std::path::Path::new(&env("PG2QDRANT_TEST_MODEL")), 2).unwrap();
    let first: Vec<&str> = one[&0].1.split(' ').collect();
    assert_eq!(first.len(), 16, "a window of 16 tokens: {first:?}");
    assert_eq!(
        one[&1].1.split(' ').take(4).collect::<Vec<_>>(),
        first[12..],
        "consecutive windows share 4 tokens"
    );
    for (i, (_, text, _, vector)) in &one {
        let want = model.embed(&[text]).unwrap().vectors.remove(0);
        let c = cosine(vector, &want);
        assert!(
            c > 0.9999,
            "chunk {i}: cosine {c} to its own text's embedding"
        );
    }
    let before = embedded().await;
    assert_eq!(before, 4.0, "one embedding per chunk");

    // Another column changes: every chunk gets it, nothing is embedded again.
    db.exec("UPDATE docs SET n = 2 WHERE id = 1").await;
    let kept = wait_chunks("t_chunks", "1", 3, json!(2)).await;
    assert_eq!(
        embedded().await,
        before,
        "unchanged chunk texts are not embedded"
    );
    assert_eq!(kept[&2].3, one[&2].3, "vectors kept");

    // Shrink: 20 tokens → 2 chunks, the third point is gone.
    db.exec(&format!(
        "UPDATE docs SET body = '{}' WHERE id = 1",
        words(20, 1)
    ))
    .await;
    wait_chunks("t_chunks", "1", expected_chunks(20), json!(2)).await;
    // Grow: 5 → 50 tokens, 1 → 4 chunks.
    db.exec(&format!(
        "UPDATE docs SET body = '{}' WHERE id = 2",
        words(50, 2)
    ))
    .await;
    wait_chunks("t_chunks", "2", expected_chunks(50), json!(1)).await;
    assert_eq!(expected_chunks(50), 4);

    // A key change moves every chunk.
    db.exec("UPDATE docs SET id = 3 WHERE id = 2").await;
    wait_chunks("t_chunks", "3", 4, json!(1)).await;
    wait_chunks("t_chunks", "2", 0, json!(1)).await;

    // Delete removes all of a row's chunks, the other row keeps its own.
    db.exec("DELETE FROM docs WHERE id = 1").await;
    wait_chunks("t_chunks", "1", 0, json!(2)).await;
    assert_eq!(chunks_of("t_chunks", "3").await.len(), 4);

    // Truncate removes every chunk.
    db.exec(&format!(
        "INSERT INTO docs VALUES (4, '{}', 4)",
        words(30, 0)
    ))
    .await;
    wait_chunks("t_chunks", "4", expected_chunks(30), json!(4)).await;
    db.exec("TRUNCATE docs").await;
    wait_count("t_chunks", 0).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toast_unchanged_text_of_a_chunked_row_keeps_its_chunks_without_embedding() {
    let db = TestDb::new("t_chunks_toast", DOCS).await;
    let port = free_port();
    let mut cfg = db.config(&chunked("t_chunks_toast", "minilm_toast", 200, 20));
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    // Streamed only: a copy of the (empty) table still running when the row arrives would read
    // it too and embed what the stream had not written yet (correct, but it blurs the count).
    cfg.source.snapshot = pg2qdrant::config::SnapshotMode::Never;
    let run = db.start(cfg).await;
    let embedded = || counter(port, "pg2qdrant_embeddings_total", "minilm_toast");
    // Stored out of line (md5 text does not compress): the update below sends it as unchanged.
    db.exec("INSERT INTO docs SELECT 1, string_agg(md5(i::text), ' '), 1 FROM generate_series(1, 300) i")
        .await;
    let chunks = wait_for("row 1 chunked", WAIT, || async {
        let c = chunks_of("t_chunks_toast", "1").await;
        c.values()
            .next()
            .is_some_and(|(count, ..)| *count as usize == c.len() && c.len() > 1)
            .then_some(c)
    })
    .await;
    let n = chunks.len();
    assert_eq!(embedded().await, n as f64);
    db.exec("UPDATE docs SET n = 2 WHERE id = 1").await;
    let after = wait_chunks("t_chunks_toast", "1", n, json!(2)).await;
    assert_eq!(
        embedded().await,
        n as f64,
        "no embedding for TOAST-unchanged text"
    );
    for (i, c) in &chunks {
        assert_eq!(after[i].1, c.1, "chunk {i} text");
        assert_eq!(after[i].3, c.3, "chunk {i} vector kept");
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_missing_chunk_and_a_chunk_past_the_count_and_repair_fixes_both() {
    let db = TestDb::new(
        "t_chunks_verify",
        &format!(
            "{DOCS} INSERT INTO docs VALUES (1, '{}', 1), (2, '{}', 1);",
            words(40, 0),
            words(20, 5)
        ),
    )
    .await;
    let config = work_dir("t_chunks_verify").join("config.toml");
    std::fs::write(
        &config,
        db.config_text(&chunked("t_chunks_verify", "minilm", 16, 4), &qdrant_url()),
    )
    .unwrap();
    let run = db.start(pg2qdrant::config::load(&config).unwrap()).await;
    let one = wait_chunks("t_chunks_verify", "1", 3, json!(1)).await;
    let two = wait_chunks("t_chunks_verify", "2", 2, json!(1)).await;
    assert_eq!(crate::verify::verify(&config, &[]).0, 0, "in sync");
    // Row 1 loses its chunk 1; row 2 gets a chunk 5 a longer version could have left behind.
    let ids: Vec<(String, u64, u64)> = all_points("t_chunks_verify")
        .await
        .into_iter()
        .map(|(id, p)| {
            let key: u64 = p.payload["_pg2qdrant"]["key"]["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            (id, key, p.payload["chunk_index"].as_u64().unwrap())
        })
        .collect();
    let id_of = |key: u64, index: u64| {
        ids.iter()
            .find(|(_, k, i)| (*k, *i) == (key, index))
            .map(|(id, ..)| id.clone())
            .unwrap()
    };
    let q = qdrant();
    q.delete_points(
        qdrant_client::qdrant::DeletePointsBuilder::new("t_chunks_verify")
            .points(qdrant_client::qdrant::PointsIdsList {
                ids: vec![id_of(1, 1).into()],
            })
            .wait(true),
    )
    .await
    .unwrap();
    let mut ghost = serde_json::Map::new();
    ghost.insert(
        "_pg2qdrant".into(),
        json!({"table": "public.docs", "key": {"id": "2"}, "lsn": 1, "seq": 0}),
    );
    ghost.insert("chunk_index".into(), json!(5));
    q.upsert_points(
        qdrant_client::qdrant::UpsertPointsBuilder::new(
            "t_chunks_verify",
            vec![qdrant_client::qdrant::PointStruct::new(
                "00000000-0000-4000-8000-000000000005".to_owned(),
                two[&0].3.clone(),
                qdrant_client::Payload::from(ghost),
            )],
        )
        .wait(true),
    )
    .await
    .unwrap();
    let (code, report) = crate::verify::verify(&config, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        (report["missing"].clone(), report["orphaned"].clone()),
        (json!(1), json!(1)),
        "{report}"
    );
    let (code, report) = crate::verify::verify(&config, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    let repaired = wait_chunks("t_chunks_verify", "1", 3, json!(1)).await;
    assert_eq!(repaired[&1].1, one[&1].1, "chunk 1 back with its text");
    wait_chunks("t_chunks_verify", "2", 2, json!(1)).await;
    run.stop().await;
}

/// Ten paragraphs of three sentences, each paragraph on its own topic.
const TOPICS: [&str; 10] = [
    "volcanoes",
    "sourdough bread",
    "chess openings",
    "coral reefs",
    "jazz piano",
    "tax returns",
    "marathon training",
    "medieval castles",
    "solar panels",
    "honey bees",
];

fn paragraph(topic: &str) -> String {
    format!(
        "These notes talk about {topic} in some detail. The second remark about {topic} adds a few more facts. Finally {topic} come up once more before the paragraph ends."
    )
}

fn document(paragraphs: &[String]) -> String {
    paragraphs.join("\n\n")
}

/// The same document in two tables, one chunked by fixed windows, one by content, both
/// `max_tokens = 24`: an edit's re-embeddings counted for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_chunks_reembed_only_the_edited_paragraph_and_a_shortened_row_leaves_no_ghost() {
    let db = TestDb::new(
        "t_chunks_content",
        "CREATE TABLE docs (id bigint PRIMARY KEY, body text, n int);
         CREATE TABLE wins (id bigint PRIMARY KEY, body text, n int);",
    )
    .await;
    let port = free_port();
    let content = chunked("t_chunks_content", "minilm_content", 24, 0)
        .replace("overlap = 0 }", "overlap = 0, chunking = \"content\" }");
    let windows = chunked("t_chunks_content_w", "minilm_windows", 24, 0)
        .replace("table = \"docs\"", "table = \"wins\"");
    let mut cfg = db.config(&format!("{content}{windows}"));
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    let run = db.start(cfg).await;
    let model_dir = std::path::PathBuf::from(env("PG2QDRANT_TEST_MODEL"));
    let splitter = |chunking| {
        pg2qdrant::mapping::chunk::Splitter::load(
            &pg2qdrant::config::ChunkConfig {
                max_tokens: 24,
                overlap: 0,
                chunking,
            },
            Some(&model_dir.join("tokenizer.json")),
        )
        .unwrap()
    };
    let by_content = splitter(pg2qdrant::config::Chunking::Content);
    let by_windows = splitter(pg2qdrant::config::Chunking::Windows);
    let mut paragraphs: Vec<String> = TOPICS.iter().map(|t| paragraph(t)).collect();
    let text = document(&paragraphs);
    let set = |body: &str| {
        format!(
            "INSERT INTO docs VALUES (1, $${body}$$, 1) ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body;
             INSERT INTO wins VALUES (1, $${body}$$, 1) ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body;"
        )
    };
    // Waits until the row's points are exactly the chunks of `body`; returns them by text.
    let settled = |collection: &'static str, body: String| {
        let splitter = if collection.ends_with("_w") {
            &by_windows
        } else {
            &by_content
        };
        let want: Vec<String> = splitter
            .split(&body)
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        async move {
            wait_for(
                &format!("{collection}: the chunks of the new text"),
                WAIT,
                || async {
                    let points = all_points(collection).await;
                    let mut texts: Vec<String> = points
                        .iter()
                        .map(|(_, p)| p.payload["chunk_text"].as_str().unwrap_or("").to_owned())
                        .collect();
                    let mut expected = want.clone();
                    texts.sort();
                    expected.sort();
                    (texts == expected
                        && points
                            .iter()
                            .all(|(_, p)| p.payload["chunk_count"] == json!(want.len())))
                    .then_some(points)
                },
            )
            .await
        }
    };
    let embedded = |name: &'static str| counter(port, "pg2qdrant_embeddings_total", name);
    db.exec(&set(&text)).await;
    let first = settled("t_chunks_content", text.clone()).await;
    assert!(
        first.len() >= 20,
        "a document of 20 chunks or more: {}",
        first.len()
    );
    settled("t_chunks_content_w", text.clone()).await;
    let (c0, w0) = (
        embedded("minilm_content").await,
        embedded("minilm_windows").await,
    );
    assert_eq!(c0 as usize, first.len(), "one embedding per chunk");

    // One sentence inserted in the third paragraph.
    paragraphs[2] = paragraphs[2].replacen(
        "The second remark",
        "A sentence inserted here mentions openings once again. The second remark",
        1,
    );
    let edited = document(&paragraphs);
    db.exec(&set(&edited)).await;
    settled("t_chunks_content", edited.clone()).await;
    settled("t_chunks_content_w", edited.clone()).await;
    let content_again = embedded("minilm_content").await - c0;
    let windows_again = embedded("minilm_windows").await - w0;
    println!(
        "one sentence inserted in paragraph 3 of {} chunks: content-defined chunks embedded again {content_again}, fixed windows {windows_again}",
        first.len()
    );
    assert!(
        (1.0..=3.0).contains(&content_again),
        "at most 3 chunks embedded again, got {content_again}"
    );

    // Search still finds every paragraph: its own topic's question ranks one of its chunks first.
    let model = LocalEmbedder::load(&model_dir, 2).unwrap();
    for topic in TOPICS {
        let query = model
            .embed(&[&format!("What do the notes say about {topic}?")])
            .unwrap()
            .vectors
            .remove(0);
        let hits = qdrant()
            .query(
                qdrant_client::qdrant::QueryPointsBuilder::new("t_chunks_content")
                    .query(query)
                    .with_payload(true)
                    .limit(1),
            )
            .await
            .unwrap()
            .result;
        let found = hits[0].payload["chunk_text"].to_string();
        assert!(found.contains(topic), "{topic}: {found}");
    }

    // Shortened to its first five paragraphs: the chunks of the others are deleted, no ghost,
    // and nothing is embedded (every chunk left was there before).
    let before = embedded("minilm_content").await;
    let short = document(&paragraphs[..5]);
    db.exec(&set(&short)).await;
    let left = settled("t_chunks_content", short.clone()).await;
    assert!(
        left.len() < first.len(),
        "{} of {}",
        left.len(),
        first.len()
    );
    assert_eq!(
        embedded("minilm_content").await,
        before,
        "nothing new to embed"
    );
    let config = work_dir("t_chunks_content").join("verify.toml");
    std::fs::write(
        &config,
        db.config_text(&format!("{content}{windows}"), &qdrant_url()),
    )
    .unwrap();
    assert_eq!(
        crate::verify::verify(&config, &["--table", "docs"]).0,
        0,
        "in sync"
    );
    // A chunk an earlier version left behind (older than the row's chunks, an id of its own):
    // verify counts it as an orphan and --repair removes it.
    let ghost = json!({"chunk_text": "ghost", "chunk_index": 0, "chunk_count": 1, "n": 1,
        "_pg2qdrant": {"table": "public.docs", "lsn": 1, "seq": 0, "key": {"id": "1"}}});
    qdrant()
        .upsert_points(
            qdrant_client::qdrant::UpsertPointsBuilder::new(
                "t_chunks_content",
                vec![qdrant_client::qdrant::PointStruct::new(
                    "00000000-0000-5000-8000-000000000001".to_owned(),
                    vec![0.1f32; 384],
                    qdrant_client::Payload::try_from(ghost).unwrap(),
                )],
            )
            .wait(true),
        )
        .await
        .unwrap();
    let (code, report) = crate::verify::verify(&config, &["--table", "docs"]);
    assert_eq!(
        (code, report["orphaned"].as_u64()),
        (1, Some(1)),
        "{report}"
    );
    crate::verify::verify(&config, &["--table", "docs", "--repair"]);
    assert_eq!(
        crate::verify::verify(&config, &["--table", "docs"]).0,
        0,
        "repaired"
    );
    assert_eq!(count("t_chunks_content").await, left.len() as u64);
    // Copied chunks take consecutive positions: verify still finds nothing left over.
    cli_ok(&["resync", "--table", "docs"], &config);
    let state = work_dir("t_chunks_content").join("checkpoint.snapshot.json");
    wait_for("the resync", WAIT, || async {
        let s: Value = serde_json::from_slice(&std::fs::read(&state).ok()?).ok()?;
        let c = &s["tables"]["public.docs"];
        (c["reason"] == "resync" && c["status"] == "done").then_some(())
    })
    .await;
    let (code, report) = crate::verify::verify(&config, &["--table", "docs"]);
    assert_eq!(code, 0, "after a copy: {report}");
    assert_eq!(count("t_chunks_content").await, left.len() as u64);
    run.stop().await;
}
