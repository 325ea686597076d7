//! Qdrant's multitenancy index (`payload_indexes = [{ ..., is_tenant = true }]`, seed 004's
//! `session_id`): created as configured, reported by `check`.

use crate::harness::*;
use qdrant_client::qdrant::payload_index_params::IndexParams;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, Distance, FieldType,
    VectorParamsBuilder,
};

/// Whether `field` of `collection` has a tenant index.
async fn tenant(collection: &str, field: &str) -> bool {
    let info = qdrant().collection_info(collection).await.unwrap();
    let schema = info.result.unwrap().payload_schema;
    match schema[field]
        .params
        .as_ref()
        .and_then(|p| p.index_params.as_ref())
    {
        Some(IndexParams::UuidIndexParams(u)) => u.is_tenant == Some(true),
        None => false, // a plain index without parameters
        other => panic!("{field}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_index_becomes_the_configured_tenant_index_at_start_and_check_says_which_it_is() {
    let db = TestDb::new(
        "t_tenant",
        "CREATE TABLE msgs (id bigint PRIMARY KEY, session_id uuid, v real[]);",
    )
    .await;
    // The collection as a hand-built sync left it: a plain index on session_id.
    let q = qdrant();
    q.create_collection(
        CreateCollectionBuilder::new(&db.name)
            .vectors_config(VectorParamsBuilder::new(3, Distance::Dot)),
    )
    .await
    .unwrap();
    q.create_field_index(
        CreateFieldIndexCollectionBuilder::new(&db.name, "session_id", FieldType::Uuid).wait(true),
    )
    .await
    .unwrap();
    assert!(!tenant(&db.name, "session_id").await);

    let tables = table(
        "msgs",
        &db.name,
        3,
        "collection_config = { payload_indexes = [{ field = \"session_id\", type = \"uuid\", is_tenant = true }] }",
    );
    let path = work_dir(&db.name).join("config.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, db.config_text(&tables, &qdrant_url())).unwrap();
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = check();
    assert!(
        said.contains("session_id: uuid, config says uuid, tenant (rebuilt at the next start)"),
        "{said}"
    );

    let run = db.start(db.config(&tables)).await;
    db.exec("INSERT INTO msgs VALUES (1, gen_random_uuid(), '{1,0,0}')")
        .await;
    wait_count(&db.name, 1).await;
    assert!(tenant(&db.name, "session_id").await);
    let said = check();
    assert!(
        said.contains("payload indexes of t_tenant: session_id: uuid, tenant"),
        "{said}"
    );
    run.stop().await;
}
