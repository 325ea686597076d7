//! `source.format`: binary where every column can be decoded from binary, text where one
//! cannot, chosen at start and again when a column arrives mid-stream.

use crate::harness::*;
use pg2qdrant::config::Format;
use serde_json::json;

const SHAPES: &str = "CREATE TABLE shapes (id bigint PRIMARY KEY, name text, v real[]);";

fn dead_letters(cfg: &pg2qdrant::config::Config) -> String {
    std::fs::read_to_string(&cfg.dead_letter.path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_keeps_a_table_with_a_column_binary_cannot_carry_in_text() {
    let db = TestDb::new(
        "t_fmt_auto_text",
        "CREATE TABLE shapes (id bigint PRIMARY KEY, at point, v real[]);
         INSERT INTO shapes VALUES (1, '(1,2)', '{1,0}');",
    )
    .await;
    let mut cfg = db.config(&table("shapes", "t_fmt_auto_text", 2, ""));
    cfg.source.format = Format::Auto;
    let run = db.start(cfg.clone()).await;
    db.exec("INSERT INTO shapes VALUES (2, '(3,4)', '{0,1}')")
        .await;
    wait_count("t_fmt_auto_text", 2).await;
    for (id, at) in [(1, "(1,2)"), (2, "(3,4)")] {
        let p = point("t_fmt_auto_text", id).await.expect("point");
        assert_eq!(p.payload["at"], json!(at), "copied and streamed in text");
    }
    assert_eq!(dead_letters(&cfg), "");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_binary_cannot_carry_added_mid_stream_switches_the_stream_to_text() {
    let db = TestDb::new("t_fmt_switch", SHAPES).await;
    let mut cfg = db.config(&table("shapes", "t_fmt_switch", 2, ""));
    cfg.source.format = Format::Auto;
    let run = db.start(cfg.clone()).await;
    db.exec("INSERT INTO shapes VALUES (1, 'one', '{1,0}')")
        .await;
    wait_count("t_fmt_switch", 1).await;
    // One transaction: the new column's first row and a change of an older row.
    db.exec(
        "BEGIN; ALTER TABLE shapes ADD COLUMN at point; \
         INSERT INTO shapes VALUES (2, 'two', '{0,1}', '(3,4)'); \
         UPDATE shapes SET name = 'uno', at = '(5,6)' WHERE id = 1; COMMIT",
    )
    .await;
    let p = wait_for("the update after the switch", WAIT, || async {
        point("t_fmt_switch", 1)
            .await
            .filter(|p| p.payload["name"] == json!("uno"))
    })
    .await;
    assert_eq!(p.payload["at"], json!("(5,6)"));
    let p = point("t_fmt_switch", 2).await.expect("row 2");
    assert_eq!(p.payload["at"], json!("(3,4)"));
    assert_eq!(p.vector, Some(vec![0.0, 1.0]));
    assert_eq!(dead_letters(&cfg), "", "nothing was dead-lettered");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_binary_refuses_a_column_binary_cannot_carry_naming_it() {
    let db = TestDb::new(
        "t_fmt_refuse",
        "CREATE TABLE shapes (id bigint PRIMARY KEY, at point, v real[]);",
    )
    .await;
    let mut cfg = db.config(&table("shapes", "t_fmt_refuse", 2, ""));
    cfg.source.format = Format::Binary;
    let err = pg2qdrant::setup::prepare(&cfg)
        .await
        .unwrap_err()
        .to_string();
    for part in [
        "source.format",
        "\"at\"",
        "public.shapes",
        "point",
        "\"auto\"",
    ] {
        assert!(err.contains(part), "{part:?} is named in: {err}");
    }
}
