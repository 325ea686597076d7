//! Qdrant's custom sharding by a column (`collection_config.sharding`), against a one-node
//! Qdrant cluster (a single node without cluster mode refuses shard keys).

use crate::harness::*;
use qdrant_client::qdrant::shard_key::Key;
use qdrant_client::qdrant::{ListShardKeysRequest, ScrollPointsBuilder, ShardKeySelector};
use qdrant_client::{Payload, Qdrant};
use std::collections::BTreeMap;

const MSGS: &str =
    "CREATE TABLE msgs (id bigint PRIMARY KEY, session_id uuid, content text, v real[]);
    ALTER TABLE msgs ALTER content SET STORAGE EXTERNAL;";

fn session(n: u32) -> String {
    format!("00000000-0000-0000-0000-{n:012}")
}

/// Every point of each shard key: id → [(key it is in, its session_id, its content)]. Scrolled
/// key by key: a scroll across keys shows one point per id, and would hide a duplicate. `None`
/// while a key is not readable yet (on a cluster, a new key's shards are still being placed).
async fn points_by_key(
    q: &Qdrant,
    collection: &str,
) -> Option<BTreeMap<u64, Vec<(String, String, String)>>> {
    let keys = q
        .list_shard_keys(ListShardKeysRequest {
            collection_name: collection.to_owned(),
        })
        .await
        .ok()?;
    let mut out: BTreeMap<u64, Vec<_>> = BTreeMap::new();
    for key in keys.shard_keys.into_iter().filter_map(|d| d.key) {
        let Some(Key::Keyword(name)) = key.key.clone() else {
            panic!("a number shard key: {key:?}")
        };
        let page = q
            .scroll(
                ScrollPointsBuilder::new(collection)
                    .shard_key_selector(ShardKeySelector {
                        shard_keys: vec![key],
                        fallback: None,
                    })
                    .limit(10_000)
                    .with_payload(true)
                    .with_vectors(false),
            )
            .await
            .ok()?;
        for p in page.result {
            let Some(qdrant_client::qdrant::point_id::PointIdOptions::Num(id)) =
                p.id.and_then(|i| i.point_id_options)
            else {
                panic!("numeric ids");
            };
            let payload = serde_json::Value::from(Payload::from(p.payload));
            let text = |f: &str| payload[f].as_str().unwrap_or_default().to_owned();
            out.entry(id)
                .or_default()
                .push((name.clone(), text("session_id"), text("content")));
        }
    }
    Some(out)
}

/// The rows as they should be stored: id → [(shard key = session, session, content)].
async fn rows(db: &TestDb) -> BTreeMap<u64, Vec<(String, String, String)>> {
    db.client
        .query(
            "SELECT id, session_id::text, content FROM msgs WHERE session_id IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let session: String = r.get(1);
            (
                r.get::<_, i64>(0) as u64,
                vec![(session.clone(), session, r.get(2))],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_sharded_by_session_live_in_their_session_key_and_move_with_it() {
    let db = TestDb::new("t_sharding", MSGS).await;
    let q = PrivateQdrant::start_cluster("t_sharding").await;
    sharded_by_session(db, &q, "shard_number = 1").await;
}

/// Seed 004's plan for 10 M messages: custom sharding by session on a 3-node cluster, each
/// session key's shard on two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_3_node_cluster_rows_sharded_by_session_live_in_their_key_on_two_replicas() {
    // The database first: its set-up empties the test's work dir, where the nodes keep their data.
    let db = TestDb::new("t_sharding_3", MSGS).await;
    let nodes = PrivateQdrant::start_nodes("t_sharding_3", 3).await;
    sharded_by_session(
        db,
        &nodes[0],
        "shard_number = 1, replication_factor = 2, write_consistency_factor = 1",
    )
    .await;
}

/// Rows of `msgs` copied and streamed into a collection sharded by `session_id` on `q`, with
/// these `collection_config` settings beside the sharding.
async fn sharded_by_session(db: TestDb, q: &PrivateQdrant, settings: &str) {
    let name = db.name.as_str();
    // Copied rows: sessions 1..=3.
    db.exec(&format!(
        "INSERT INTO msgs SELECT g, ('{{00000000-0000-0000-0000-00000000000' || (g % 3 + 1) || '}}')::uuid, 'copied ' || g, '{{1,0,0}}' FROM generate_series(1, 30) g"
    ))
    .await;
    let text = db.config_text(
        &table(
            "msgs",
            name,
            3,
            &format!("collection_config = {{ {settings}, sharding = {{ key = \"session_id\" }} }}"),
        ),
        &q.url(),
    );
    let cfg = pg2qdrant::config::parse(&text).unwrap();
    let dl = cfg.dead_letter.path.clone();
    let run = db.start(cfg).await;
    let copied = rows(&db).await;
    wait_for("the copied rows in their keys", WAIT, || async {
        (points_by_key(&q.client(), name).await.as_ref() == Some(&copied)).then_some(())
    })
    .await;

    // Streamed: new rows in a session no key exists for yet, moves, edits, deletes, a row whose
    // content is an unchanged TOAST value when it moves, and a row without a session.
    db.exec(&format!(
        "INSERT INTO msgs SELECT g, '{}', 'streamed ' || g, '{{0,1,0}}' FROM generate_series(31, 40) g",
        session(4)
    ))
    .await;
    db.exec("INSERT INTO msgs VALUES (41, '00000000-0000-0000-0000-000000000001', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g), '{0,0,1}')")
        .await;
    db.exec(&format!(
        "UPDATE msgs SET session_id = '{}' WHERE id IN (1, 2, 3, 4, 5)",
        session(4)
    ))
    .await;
    db.exec(&format!(
        "UPDATE msgs SET session_id = '{}' WHERE id = 41",
        session(2)
    ))
    .await;
    db.exec("UPDATE msgs SET content = 'edited' WHERE id IN (6, 32)")
        .await;
    db.exec("DELETE FROM msgs WHERE id IN (7, 8, 33)").await;
    db.exec("INSERT INTO msgs VALUES (99, NULL, 'no session', '{1,1,1}')")
        .await;

    let expected = rows(&db).await;
    assert_eq!(expected.len(), 38);
    let got = wait_for("every row in its session's key, once", WAIT, || async {
        let got = points_by_key(&q.client(), name).await?;
        (got == expected).then_some(got)
    })
    .await;
    let keys: std::collections::BTreeSet<_> = got.values().flatten().map(|p| &p.0).collect();
    assert_eq!(keys.len(), 4, "one key per session: {keys:?}");
    assert_eq!(got[&41][0].0, session(2), "the TOASTed row moved");

    // The row without a session is parked, naming the column.
    let parked = wait_for("the row without a session dead-lettered", WAIT, || async {
        let text = std::fs::read_to_string(&dl).unwrap_or_default();
        (!text.is_empty()).then_some(text)
    })
    .await;
    let record: serde_json::Value = serde_json::from_str(parked.lines().next().unwrap()).unwrap();
    assert_eq!(record["key"], serde_json::json!({"id": "99"}));
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("session_id") && reason.contains("NULL"),
        "{reason}"
    );
    run.stop().await;
}
