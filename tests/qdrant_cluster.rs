//! A 3-node Qdrant cluster: a collection of 6 shards with 2 replicas each, one node SIGKILLed
//! under the writer and restarted. With `write_consistency_factor = 1` writes go on through
//! the loss; with 2, every write to a shard whose replica died fails (the live replica applied
//! it) and is retried until Qdrant reports it applied, so the replicas agree once the node is
//! back. Either way every row equals its point on every replica, and no point is left over.

use crate::harness::*;
use crate::recovery::{assert_mirrored_read, load, DIM, LOAD};
use qdrant_client::qdrant::{CollectionClusterInfoRequest, ReadConsistencyType, ReplicaState};
use std::time::Duration;

/// Inserts 2 000 rows from `first` in 80 transactions 50 ms apart, each also updating and
/// deleting earlier rows: a load that lasts a few seconds, so a node can die in the middle.
async fn paced_load(url: String, first: i64) {
    let c = connect(&url).await;
    for t in 0..80i64 {
        let lo = first + t * 25;
        c.batch_execute(&format!(
            "INSERT INTO docs SELECT g, 'row ' || g, g % 1000, array_fill((g % 97)::real, ARRAY[{DIM}]) FROM generate_series({lo}, {hi}) g;
             UPDATE docs SET title = title || ' u', v[1] = {t} WHERE id % 13 = {m13} AND id < {lo};
             DELETE FROM docs WHERE id % 37 = {m37} AND id < {lo};",
            hi = lo + 24,
            m13 = t % 13,
            m37 = t % 37,
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every replica of every shard of `collection` is active, as node `q` sees them.
async fn replicas_active(q: &qdrant_client::Qdrant, collection: &str) -> Option<()> {
    let info = q
        .collection_cluster_info(CollectionClusterInfoRequest {
            collection_name: collection.into(),
        })
        .await
        .ok()?;
    let active = ReplicaState::Active as i32;
    let all = info
        .local_shards
        .iter()
        .map(|s| s.state)
        .chain(info.remote_shards.iter().map(|s| s.state));
    let states: Vec<i32> = all.collect();
    (states.len() == 12 && states.iter().all(|s| *s == active)).then_some(())
}

async fn node_lost_under_the_writer(name: &str, write_consistency_factor: u32) {
    let db = TestDb::new(name, LOAD).await;
    let mut nodes = PrivateQdrant::start_nodes(name, 3).await;
    let collection = format!(
        "collection_config = {{ shard_number = 6, replication_factor = 2, write_consistency_factor = {write_consistency_factor} }}"
    );
    let mut cfg = pg2qdrant::config::parse(&db.config_text(
        &table("docs", name, DIM as u64, &collection),
        &nodes[0].url(),
    ))
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    cfg.metrics.addr = addr.clone();
    let run = db.start(cfg).await;
    db.wait_first_copy_settled().await;
    let q = nodes[0].client();
    load(db.url.clone(), 1, 1_000, 50).await;
    wait_for("every replica active", WAIT, || replicas_active(&q, name)).await;
    assert_mirrored_read(&db, name, &q, Some(ReadConsistencyType::All)).await;
    let third = nodes[2].client();
    let local = third
        .collection_cluster_info(CollectionClusterInfoRequest {
            collection_name: name.into(),
        })
        .await
        .unwrap()
        .local_shards
        .len();
    assert!(local > 0, "the third node holds replicas");
    // The third node (clients talk to the first) dies with its replicas, mid-load.
    let during = tokio::spawn(paced_load(db.url.clone(), 1_001));
    let start = db.confirmed_u64().await;
    wait_for("the load under way", WAIT, || async {
        (db.confirmed_u64().await > start).then_some(())
    })
    .await;
    nodes[2].kill();
    assert!(!during.is_finished(), "the node died mid-load");
    during.await.unwrap();
    let end_of_load = db.insert_lsn_u64().await;
    if write_consistency_factor == 1 {
        // One live replica of each shard is enough: the writer goes on through the loss.
        wait_for("the load acknowledged with a node down", WAIT, || async {
            (db.confirmed_u64().await >= end_of_load).then_some(())
        })
        .await;
    } else {
        // Writes to a shard whose other replica is dead fail (and are retried): the writer says
        // Qdrant is down, and the slot holds.
        let body = wait_readyz(&addr, 503, "readyz 503 while writes fail").await;
        assert!(body.contains("qdrant"), "{body}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            db.confirmed_u64().await < end_of_load,
            "the slot holds while writes cannot reach two replicas"
        );
    }
    nodes[2].restart().await;
    wait_for("every replica active again", WAIT, || {
        replicas_active(&q, name)
    })
    .await;
    assert_mirrored_read(&db, name, &q, Some(ReadConsistencyType::All)).await;
    // Each node reads its own replica of the shards it holds: read through every node, every
    // replica is read once, and a ghost left on either copy shows.
    for node in &nodes {
        assert_mirrored_read(&db, name, &node.client(), None).await;
    }
    if write_consistency_factor == 2 {
        wait_readyz(&addr, 200, "ready again").await;
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_three_sigkilled_under_the_writer_leaves_every_replica_equal() {
    node_lost_under_the_writer("t_qdrant_cluster_w1", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_failed_on_a_dead_replica_are_retried_until_applied_and_the_replicas_agree() {
    node_lost_under_the_writer("t_qdrant_cluster_w2", 2).await;
}
