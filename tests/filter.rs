//! Row filters (`tables[].where`): only the rows the filter selects have points, through the
//! copy, the stream (rows moving in and out) and verify; a filter PostgreSQL would choke on is
//! refused before anything is created.

use crate::harness::*;
use qdrant_client::qdrant::{PointStruct, UpsertPointsBuilder};
use qdrant_client::Payload;

const MSGS: &str = "CREATE TABLE msgs (id bigint PRIMARY KEY, is_indexed boolean NOT NULL, body text, v real[]);
    ALTER TABLE msgs REPLICA IDENTITY FULL;
    INSERT INTO msgs SELECT g, g % 2 = 0, 'existing ' || g, ARRAY[1, 0, g]::real[] FROM generate_series(1, 10) g;";

/// The ids of the collection's points, ascending.
async fn ids(collection: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = all_points(collection)
        .await
        .into_iter()
        .map(|(id, _)| id.parse().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

async fn wait_ids(collection: &str, want: &[u64]) {
    wait_for(&format!("points {want:?}"), WAIT, || async {
        (ids(collection).await == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_rows_in_the_where_filter_have_points_as_rows_move_in_and_out() {
    let db = TestDb::new("t_filter", MSGS).await;
    let cfg = db.config(&table("msgs", "t_filter", 3, "where = \"is_indexed\""));
    let run = db.start(cfg.clone()).await;
    // The copy reads only the rows the filter selects.
    wait_ids("t_filter", &[2, 4, 6, 8, 10]).await;

    db.exec("INSERT INTO msgs VALUES (11, true, 'in', '{1,0,0}'), (12, false, 'out', '{1,0,0}')")
        .await;
    wait_ids("t_filter", &[2, 4, 6, 8, 10, 11]).await;
    // Into the filter: PostgreSQL sends an insert.
    db.exec("UPDATE msgs SET is_indexed = true WHERE id = 12")
        .await;
    wait_ids("t_filter", &[2, 4, 6, 8, 10, 11, 12]).await;
    // Out of it: a delete.
    db.exec("UPDATE msgs SET is_indexed = false WHERE id = 2")
        .await;
    wait_ids("t_filter", &[4, 6, 8, 10, 11, 12]).await;
    // Back in, edited on the way.
    db.exec("UPDATE msgs SET is_indexed = true, body = 'back' WHERE id = 2")
        .await;
    wait_ids("t_filter", &[2, 4, 6, 8, 10, 11, 12]).await;
    assert_eq!(
        point("t_filter", 2u64).await.unwrap().payload["body"],
        "back"
    );
    // Deletes: of a row in the filter, and of one outside it (nothing to do).
    db.exec("DELETE FROM msgs WHERE id IN (4, 3)").await;
    wait_ids("t_filter", &[2, 6, 8, 10, 11, 12]).await;

    // verify compares only the rows the filter selects: in sync, and a point of a row outside
    // it is an orphan.
    let reports = pg2qdrant::verify::run(&cfg, None, false).await.unwrap();
    assert_eq!((reports[0].rows, reports[0].drift()), (6, 0), "{reports:?}");
    // Point 6's payload as point 5 (row 5 exists, outside the filter): written by the
    // connector as far as verify can tell.
    let mut payload = point("t_filter", 6u64).await.unwrap().payload;
    if let Some(key) = payload["_pg2qdrant"].get_mut("key") {
        *key = serde_json::json!({ "id": "5" });
    }
    let payload = Payload::try_from(payload).unwrap();
    qdrant()
        .upsert_points(
            UpsertPointsBuilder::new(
                "t_filter",
                vec![PointStruct::new(5u64, vec![1.0, 0.0, 5.0], payload)],
            )
            .wait(true),
        )
        .await
        .unwrap();
    let reports = pg2qdrant::verify::run(&cfg, None, false).await.unwrap();
    assert_eq!(
        (reports[0].orphaned, reports[0].missing),
        (1, 0),
        "{reports:?}"
    );

    db.exec("TRUNCATE msgs").await;
    wait_ids("t_filter", &[]).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_where_outside_the_replica_identity_or_unknown_to_postgres_is_refused_naming_the_fix() {
    let db = TestDb::new(
        "t_filter_identity",
        "CREATE TABLE msgs (id bigint PRIMARY KEY, is_indexed boolean, v real[]);",
    )
    .await;
    let write = |filter: &str| {
        let text = db.config_text(
            &table("msgs", &db.name, 3, &format!("where = \"{filter}\"")),
            &qdrant_url(),
        );
        let (code, said) = check_cli(&work_dir(&db.name), &text);
        (code, said, text)
    };
    // is_indexed is not in the replica identity (the primary key): PostgreSQL would refuse
    // every UPDATE and DELETE of msgs under such a publication.
    let (code, said, text) = write("is_indexed");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("FAIL tables[0] where"), "{said}");
    assert!(
        said.contains("reads is_indexed of public.msgs, outside its replica identity"),
        "{said}"
    );
    assert!(said.contains("REPLICA IDENTITY FULL"), "{said}");
    let cfg = pg2qdrant::config::parse(&text).unwrap();
    let err = pg2qdrant::run(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("tables[0].where"), "{err}");
    let published: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = $1",
            &[&db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(published, 0, "no publication was made with it");
    // The app's writes still work.
    db.exec("INSERT INTO msgs VALUES (1, true, '{1,0,0}'); UPDATE msgs SET is_indexed = false")
        .await;

    let (code, said, _) = write("no_such_column");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("PostgreSQL refuses \"no_such_column\""),
        "{said}"
    );
    assert!(said.contains("no_such_column"), "{said}");

    db.exec("ALTER TABLE msgs REPLICA IDENTITY FULL").await;
    let (code, said, _) = write("is_indexed");
    assert!(
        said.contains(
            "ok   tables[0] where: rows of public.msgs with (is_indexed); reads is_indexed"
        ),
        "{said}"
    );
    assert_eq!(code, Some(0), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_where_holding_several_statements_is_refused_and_none_of_them_runs() {
    let db = TestDb::new(
        "t_filter_statements",
        "CREATE TABLE msgs (id bigint PRIMARY KEY, body text, v real[]);
         ALTER TABLE msgs REPLICA IDENTITY FULL; CREATE TABLE keep (id int);",
    )
    .await;
    let check = |filter: &str| {
        let text = db.config_text(
            &table("msgs", &db.name, 3, &format!("where = \"{filter}\"")),
            &qdrant_url(),
        );
        check_cli(&work_dir(&db.name), &text)
    };
    let (code, said) = check("true); COMMIT; DROP TABLE keep; --");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("tables[0].where"), "{said}");
    let kept: bool = db
        .client
        .query_one("SELECT to_regclass('keep') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(kept, "the statements after the `;` never ran");
    // A `;` inside a string literal is part of one expression.
    let (code, said) = check("body <> 'a;b'");
    assert_eq!(code, Some(0), "{said}");
}
