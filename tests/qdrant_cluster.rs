//! A 3-node Qdrant cluster: a collection of 6 shards with 2 replicas each, one node SIGKILLed
//! under the writer and restarted. With `write_consistency_factor = 1` writes go on through
//! the loss; with 2, every write to a shard whose replica died fails (the live replica applied
//! it) and is retried until Qdrant reports it applied, so the replicas agree once the node is
//! back. Either way every row equals its point on every replica, and no point is left over.
//! And `/wait`'s 200 on a replicated collection means every replica holds the write.

use crate::harness::*;
use crate::recovery::{assert_mirrored_read, load, DIM, LOAD};
use qdrant_client::qdrant::{
    point_id, read_consistency, vectors_output, CollectionClusterInfoRequest, GetPointsBuilder,
    PointId, ReadConsistencyType, ReplicaState, VectorsOutput,
};
use std::collections::BTreeMap;
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

/// Starts the connector on `db` with `tables`, writing the cluster of `nodes` through the first
/// node, its endpoint on a free port; waits for the first copy to settle and every replica to be
/// active. The running connector and the endpoint's address.
async fn start_on_cluster(
    db: &TestDb,
    name: &str,
    tables: &str,
    nodes: &[PrivateQdrant],
) -> (Running, String) {
    let mut cfg = pg2qdrant::config::parse(&db.config_text(tables, &nodes[0].url())).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    cfg.metrics.addr = addr.clone();
    let run = db.start(cfg).await;
    db.wait_first_copy_settled().await;
    let q = nodes[0].client();
    wait_for("every replica active", WAIT, || replicas_active(&q, name)).await;
    (run, addr)
}

async fn node_lost_under_the_writer(name: &str, write_consistency_factor: u32) {
    let db = TestDb::new(name, LOAD).await;
    let mut nodes = PrivateQdrant::start_nodes(name, 3).await;
    let collection = format!(
        "collection_config = {{ shard_number = 6, replication_factor = 2, write_consistency_factor = {write_consistency_factor} }}"
    );
    let (run, addr) = start_on_cluster(
        &db,
        name,
        &table("docs", name, DIM as u64, &collection),
        &nodes,
    )
    .await;
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

/// The vectors of points `ids` read through `q` with `consistency`, by id (a missed point is
/// absent).
async fn vectors_read(
    q: &qdrant_client::Qdrant,
    collection: &str,
    ids: std::ops::RangeInclusive<u64>,
    consistency: Option<ReadConsistencyType>,
) -> BTreeMap<u64, Vec<f32>> {
    let ids: Vec<_> = ids.map(Into::into).collect();
    let mut get = GetPointsBuilder::new(collection, ids).with_vectors(true);
    if let Some(c) = consistency {
        get = get.read_consistency(read_consistency::Value::Type(c as i32));
    }
    let points = q.get_points(get).await.unwrap().result;
    let id = |p: Option<PointId>| match p?.point_id_options? {
        point_id::PointIdOptions::Num(n) => Some(n),
        point_id::PointIdOptions::Uuid(_) => None,
    };
    let vector = |v: Option<VectorsOutput>| match v?.vectors_options? {
        vectors_output::VectorsOptions::Vector(v) => dense(v),
        _ => None,
    };
    points
        .into_iter()
        .filter_map(|p| Some((id(p.id)?, vector(p.vectors)?)))
        .collect()
}

/// `/wait`'s promise on a replicated collection: Qdrant 1.16 sends a write to every active
/// replica of its shard and answers `wait=true` once each applied it (a replica that failed is
/// deactivated first, and is no longer read), so once `/wait` says 200 the rows are on every
/// replica. Each step inserts 500 rows and updates the step before's in one transaction; right
/// after the 200, every node (its own replica when it holds one) and `consistency = all` (every
/// replica) are read at once, with no retry. Checked to fail with the sink's `wait=false`
/// (points missing or old on a replica right after the 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_answers_once_every_replica_holds_the_write() {
    let name = "t_qdrant_cluster_wait";
    let db = TestDb::new(name, "CREATE TABLE msgs (id bigint PRIMARY KEY, v real[]);").await;
    let nodes = PrivateQdrant::start_nodes(name, 3).await;
    let collection = "collection_config = { shard_number = 6, replication_factor = 2, write_consistency_factor = 1 }";
    let (run, addr) =
        start_on_cluster(&db, name, &table("msgs", name, 3, collection), &nodes).await;
    let clients: Vec<_> = nodes.iter().map(PrivateQdrant::client).collect();
    const STEP: u64 = 500;
    for step in 0..8u64 {
        // A step's rows inserted and the step before's updated, in one transaction.
        let (lo, hi) = (step * STEP + 1, step * STEP + STEP);
        db.exec(&format!(
            "INSERT INTO msgs SELECT g, ARRAY[1, 0, g]::real[] FROM generate_series({lo}, {hi}) g;
             UPDATE msgs SET v = ARRAY[2, 0, id]::real[] WHERE id < {lo} AND id >= {lo} - {STEP}"
        ))
        .await;
        let lsn: String = db
            .client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        let (status, body) = http_get(&addr, &format!("/wait?lsn={lsn}&timeout_ms=60000"))
            .await
            .expect("the endpoint answers");
        assert_eq!(status, 200, "{body}");
        // Right away, every node and both read consistencies at once.
        let reads = clients.iter().enumerate().flat_map(|(node, c)| {
            [None, Some(ReadConsistencyType::All)].map(|consistency| async move {
                let from = lo.saturating_sub(STEP).max(1);
                (
                    node,
                    consistency,
                    vectors_read(c, name, from..=hi, consistency).await,
                )
            })
        });
        for (node, consistency, got) in futures_util::future::join_all(reads).await {
            let from = lo.saturating_sub(STEP).max(1);
            let expected: BTreeMap<u64, Vec<f32>> = (from..=hi)
                .map(|id| (id, vec![if id < lo { 2.0 } else { 1.0 }, 0.0, id as f32]))
                .collect();
            let wrong: Vec<_> = expected
                .iter()
                .filter(|(id, v)| got.get(id) != Some(v))
                .map(|(id, _)| (id, got.get(id)))
                .take(5)
                .collect();
            assert!(
                wrong.is_empty(),
                "step {step} through node {node} ({consistency:?}) right after /wait said 200: {} of {} points missing or old, e.g. {wrong:?}",
                expected.iter().filter(|(id, v)| got.get(id) != Some(v)).count(),
                expected.len()
            );
        }
    }
    run.stop().await;
}
