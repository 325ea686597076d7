//! A collection rebuilt behind its alias with another model while streaming.

use crate::embedding::{embedder_toml, FakeOpenAi};
use crate::harness::*;
use pg2qdrant::embed::LocalEmbedder;
use qdrant_client::qdrant::ScrollPointsBuilder;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

async fn alias_target(alias: &str) -> Option<String> {
    qdrant()
        .list_aliases()
        .await
        .unwrap()
        .aliases
        .into_iter()
        .find(|a| a.alias_name == alias)
        .map(|a| a.collection_name)
}

/// What a reader saw querying through the alias: queries, empty answers, answers mixing
/// vector sizes, and every vector size seen.
#[derive(Debug, Default)]
struct Seen {
    queries: u64,
    empty: u64,
    mixed: u64,
    sizes: BTreeSet<usize>,
}

/// Queries `alias` (50 points with their vectors) until `stop`, keeping its account in `seen`
/// (the test reads it while the reader runs).
async fn read_until(alias: &'static str, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let q = qdrant();
    while !stop.load(Ordering::SeqCst) {
        let page = q
            .scroll(ScrollPointsBuilder::new(alias).limit(50).with_vectors(true))
            .await
            .expect("the alias always answers");
        let sizes: BTreeSet<usize> = page
            .result
            .iter()
            .filter_map(|p| match p.vectors.clone()?.vectors_options? {
                qdrant_client::qdrant::vectors_output::VectorsOptions::Vector(v) => {
                    dense(v).map(|d| d.len())
                }
                _ => None,
            })
            .collect();
        {
            let mut seen = seen.lock().unwrap();
            seen.queries += 1;
            seen.empty += u64::from(page.result.is_empty());
            seen.mixed += u64::from(sizes.len() > 1);
            seen.sizes.extend(sizes);
        }
        // Paces the reader (not a wait for a condition).
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_with_a_new_model_switches_the_alias_and_readers_never_see_it_empty_or_mixed() {
    let fake = FakeOpenAi::start().await;
    let db = TestDb::new(
        "t_rebuild",
        "CREATE TABLE notes (id bigint PRIMARY KEY, title text, body text, n int);
         INSERT INTO notes SELECT g, 't', 'note number ' || g, g FROM generate_series(1, 300) g;
         -- Stored out of line (md5 text does not compress): an update of n sends it unchanged.
         INSERT INTO notes SELECT 500, 't', string_agg(md5(i::text), ' '), 1 FROM generate_series(1, 300) i;",
    )
    .await;
    let old_embedder = fake.config("svc_rebuild", "", "");
    let table = |embed: &str, size: u64, distance: &str| {
        format!(
            "[[tables]]\ntable = \"notes\"\ncollection = \"t_rebuild\"\ncollection_config = {{ alias = true }}\n\
             vector = {{ embed = \"{embed}\", text = \"{{body}}\", size = {size}, distance = \"{distance}\" }}\n"
        )
    };
    // Model A (the service's 4-d vectors), in a collection behind the alias t_rebuild.
    let a = db.config(&format!("{old_embedder}{}", table("svc_rebuild", 4, "Dot")));
    let run = db.start(a).await;
    wait_count("t_rebuild", 301).await;
    run.stop().await;
    let old = alias_target("t_rebuild")
        .await
        .expect("t_rebuild is an alias");
    assert_ne!(old, "t_rebuild");

    // Model B (minilm, 384-d); model A stays configured, so the old collection stays current.
    let config = work_dir("t_rebuild").join("b.toml");
    std::fs::write(
        &config,
        db.config_text(
            &format!(
                "{old_embedder}{}{}",
                embedder_toml(),
                table("minilm", 384, "Cosine")
            ),
            &qdrant_url(),
        ),
    )
    .unwrap();
    let b = pg2qdrant::config::load(&config).unwrap();
    let err = pg2qdrant::run(b.clone(), tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pg2qdrant rebuild"),
        "refused, naming the way out: {err}"
    );

    cli_ok(&["rebuild", "--table", "notes"], &config);
    // `check` accepts the new settings now: they are the new collection's.
    let checked = String::from_utf8(cli_ok(&["check"], &config).stdout).unwrap();
    assert!(
        checked.contains("rebuild of t_rebuild") && checked.contains("requested"),
        "{checked}"
    );
    let request: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.checkpoint.rebuild_path()).unwrap()).unwrap();
    let target = request["target"].as_str().unwrap().to_owned();
    assert_eq!(request["old"], json!(old));

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reader = tokio::spawn(read_until("t_rebuild", stop.clone(), seen.clone()));
    // A running transaction holds the copy at its first watermark: meanwhile both collections
    // take the stream.
    let blocker = connect(&db.url).await;
    blocker
        .batch_execute("BEGIN; SELECT txid_current();")
        .await
        .unwrap();
    let run = db.start(b).await;
    // Row 500's point is missing in the old collection: its TOAST merge there is written from
    // the row read back, mapped with the old collection's own mapping (model A, 4-d).
    qdrant()
        .delete_points(
            qdrant_client::qdrant::DeletePointsBuilder::new(&old)
                .points(qdrant_client::qdrant::PointsIdsList {
                    ids: vec![500u64.into()],
                })
                .wait(true),
        )
        .await
        .unwrap();
    db.exec(
        "UPDATE notes SET body = 'changed during the rebuild' WHERE id = 1; DELETE FROM notes WHERE id = 2;
         INSERT INTO notes VALUES (1000, 't', 'added during the rebuild', 1); UPDATE notes SET n = 7 WHERE id = 500",
    )
    .await;
    wait_for("the old collection current, with model A", WAIT, || async {
        let p = point(&old, 1u64).await?;
        let current = p.payload["body"] == json!("changed during the rebuild")
            && p.vector == Some(vec![26.0, 1.0, 0.0, 0.5])
            && point(&old, 1000u64).await?.vector.map(|v| v.len()) == Some(4)
            && point(&old, 2u64).await.is_none()
            && point(&old, 500u64).await.is_some_and(|p| {
                p.payload["n"] == json!(7) && p.vector.map(|v| v.len()) == Some(4)
            });
        current.then_some(())
    })
    .await;
    wait_for(
        "the new collection streamed, with model B",
        WAIT,
        || async {
            let p = point(&target, 1000u64).await?;
            (p.vector.map(|v| v.len()) == Some(384)).then_some(())
        },
    )
    .await;
    assert_eq!(
        alias_target("t_rebuild").await.as_ref(),
        Some(&old),
        "not switched while the copy is held"
    );

    blocker.batch_execute("COMMIT").await.unwrap();
    wait_for("the alias switched to the new collection", WAIT, || async {
        (alias_target("t_rebuild").await.as_ref() == Some(&target)).then_some(())
    })
    .await;
    wait_for("the old collection dropped", WAIT, || async {
        (!qdrant().collection_exists(&old).await.unwrap()).then_some(())
    })
    .await;
    // The reader goes on until it has read the new collection through the alias.
    wait_for("the reader saw the new model's vectors", WAIT, || async {
        seen.lock().unwrap().sizes.contains(&384).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    reader.await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!("reader through the alias: {seen:?}");
    assert!(seen.queries > 5, "{seen:?}");
    assert_eq!((seen.empty, seen.mixed), (0, 0), "{seen:?}");
    assert_eq!(seen.sizes, BTreeSet::from([4, 384]), "{seen:?}");

    // Through the alias: every row once, with model B's vectors, changes included.
    assert_eq!(count("t_rebuild").await, 301);
    assert!(point("t_rebuild", 2u64).await.is_none());
    let model = LocalEmbedder::load(std::path::Path::new(&env("PG2QDRANT_TEST_MODEL")), 2).unwrap();
    let p = point("t_rebuild", 1u64).await.unwrap();
    let want = model
        .embed(&["changed during the rebuild"])
        .unwrap()
        .vectors
        .remove(0);
    assert!(cosine(p.vector.as_ref().unwrap(), &want) > 0.9999);
    // Streaming goes on into the new collection; nothing is left of the rebuild.
    db.exec("UPDATE notes SET body = 'after the switch' WHERE id = 3")
        .await;
    wait_for("a change after the switch", WAIT, || async {
        point(&target, 3u64)
            .await
            .filter(|p| p.payload["body"] == json!("after the switch"))
    })
    .await;
    run.stop().await;
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work_dir("t_rebuild").join("checkpoint.snapshot.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["rebuilds"], json!({}), "{state}");
}
