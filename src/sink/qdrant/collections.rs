//! Collections: create when missing (as configured), and refuse to start against a collection
//! whose vector parameters differ from the config.

use crate::config::META_FIELD;
use crate::config::{Distance, IndexType, TableConfig};
use crate::error::Error;
use qdrant_client::qdrant::payload_index_params::IndexParams;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, Distance as QDistance, FieldType,
    HnswConfigDiffBuilder, KeywordIndexParams, Modifier, OptimizersConfigDiffBuilder,
    PayloadSchemaType, SparseIndexConfigBuilder, SparseVectorParamsBuilder,
    SparseVectorsConfigBuilder, UpdateCollectionBuilder, UuidIndexParams, VectorParamsBuilder,
    VectorsConfigBuilder,
};
use qdrant_client::Qdrant;

fn distance(d: Distance) -> QDistance {
    match d {
        Distance::Cosine => QDistance::Cosine,
        Distance::Euclid => QDistance::Euclid,
        Distance::Dot => QDistance::Dot,
        Distance::Manhattan => QDistance::Manhattan,
    }
}

fn field_type(t: IndexType) -> FieldType {
    match t {
        IndexType::Keyword => FieldType::Keyword,
        IndexType::Integer => FieldType::Integer,
        IndexType::Float => FieldType::Float,
        IndexType::Bool => FieldType::Bool,
        IndexType::Datetime => FieldType::Datetime,
        IndexType::Uuid => FieldType::Uuid,
        IndexType::Text => FieldType::Text,
    }
}

/// A tenant index's parameters (`is_tenant`: keyword or uuid, as validated).
fn tenant_params(kind: IndexType) -> IndexParams {
    match kind {
        IndexType::Uuid => IndexParams::UuidIndexParams(UuidIndexParams {
            is_tenant: Some(true),
            ..Default::default()
        }),
        _ => IndexParams::KeywordIndexParams(KeywordIndexParams {
            is_tenant: Some(true),
            ..Default::default()
        }),
    }
}

/// For `check`: each configured payload index of the table as the collection has it, one
/// phrase each (`session_id: uuid, tenant`; a missing or different one says so: it is created
/// as configured at the connector's next start).
pub async fn indexes(client: &Qdrant, t: &TableConfig) -> Result<Vec<String>, Error> {
    let info = client
        .collection_info(&t.collection)
        .await
        .map_err(Error::qdrant(format!("read collection {}", t.collection)))?;
    let schema = info.result.map(|r| r.payload_schema).unwrap_or_default();
    let mut out = Vec::new();
    for idx in &t.collection_config.payload_indexes {
        let want = format!(
            "{:?}{}",
            idx.kind,
            if idx.is_tenant { ", tenant" } else { "" }
        )
        .to_lowercase();
        let have = schema.get(&idx.field).map(|s| {
            let tenant = match s.params.as_ref().and_then(|p| p.index_params.as_ref()) {
                Some(IndexParams::KeywordIndexParams(k)) => k.is_tenant == Some(true),
                Some(IndexParams::UuidIndexParams(u)) => u.is_tenant == Some(true),
                _ => false,
            };
            let kind = PayloadSchemaType::try_from(s.data_type)
                .map_or("unknown".to_owned(), |k| k.as_str_name().to_lowercase());
            format!("{kind}{}", if tenant { ", tenant" } else { "" })
        });
        out.push(match have {
            Some(h) if h == want => format!("{}: {h}", idx.field),
            Some(h) => format!(
                "{}: {h}, config says {want} (rebuilt at the next start)",
                idx.field
            ),
            None => format!(
                "{}: missing, config says {want} (created at the next start)",
                idx.field
            ),
        });
    }
    Ok(out)
}

/// Compares an existing collection with the config: `Ok(())` or a list of differences.
pub async fn compatible(client: &Qdrant, t: &TableConfig) -> Result<Result<(), String>, Error> {
    let (existing, custom) = vector_params(client, &t.collection).await?;
    let mut problems = Vec::new();
    match (custom, &t.collection_config.sharding) {
        (false, Some(s)) => problems.push(format!(
            "it is sharded by point id, but collection_config.sharding names column {:?} (custom sharding is chosen when a collection is created)",
            s.key
        )),
        (true, None) => problems.push(
            "it uses custom sharding (shard keys), but collection_config sets no sharding: each point needs a shard key"
                .to_owned(),
        ),
        _ => {}
    }
    for crate::config::VectorColumn {
        name,
        size,
        distance: dist,
        ..
    } in t.vector_columns()
    {
        let label = if name.is_empty() {
            "the unnamed vector".to_owned()
        } else {
            format!("vector {name:?}")
        };
        match existing.iter().find(|(n, ..)| *n == name) {
            None => problems.push(format!("{label} is not in the collection")),
            Some((_, have_size, have_dist)) => {
                if *have_size != size {
                    problems.push(format!(
                        "{label} has size {have_size} but the config says {size}"
                    ));
                }
                if *have_dist != dist {
                    problems.push(format!(
                        "{label} uses distance {have_dist:?} but the config says {dist:?}"
                    ));
                }
            }
        }
    }
    let sparse = sparse_params(client, &t.collection).await?;
    for sv in &t.sparse_vectors {
        match sparse.iter().find(|(n, _)| *n == sv.name) {
            None => problems.push(format!(
                "sparse vector {:?} is not in the collection",
                sv.name
            )),
            Some((_, idf)) if *idf != sv.idf() => problems.push(format!(
                "sparse vector {:?} {} Qdrant's IDF modifier but the config says idf = {}",
                sv.name,
                if *idf { "has" } else { "lacks" },
                sv.idf()
            )),
            Some(_) => {}
        }
    }
    Ok(if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    })
}

/// The collection's config as Qdrant reports it.
async fn config(
    client: &Qdrant,
    collection: &str,
) -> Result<Option<qdrant_client::qdrant::CollectionConfig>, Error> {
    let info = client
        .collection_info(collection)
        .await
        .map_err(Error::qdrant(format!("read collection {collection}")))?;
    Ok(info.result.and_then(|r| r.config))
}

/// The collection's sparse vectors: name and whether they take the IDF modifier.
async fn sparse_params(client: &Qdrant, collection: &str) -> Result<Vec<(String, bool)>, Error> {
    Ok(config(client, collection)
        .await?
        .and_then(|c| c.params)
        .and_then(|p| p.sparse_vectors_config)
        .map(|c| {
            c.map
                .into_iter()
                .map(|(n, p)| (n, p.modifier == Some(Modifier::Idf as i32)))
                .collect()
        })
        .unwrap_or_default())
}

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The collection existed (and is compatible), or was created normally.
    Ready,
    /// Created for a bulk load: call `defer_indexing` once the threshold is recorded.
    CreatedForBulk,
}

/// Creates the collection (and its payload indexes) when missing, else checks compatibility.
/// `bulk`: a first copy will fill it, so a new collection may defer indexing.
pub async fn ensure(
    client: &Qdrant,
    index: usize,
    t: &TableConfig,
    bulk: bool,
) -> Result<Ensured, Error> {
    let exists = client
        .collection_exists(&t.collection)
        .await
        .map_err(Error::qdrant(format!(
            "look up collection {}",
            t.collection
        )))?;
    if exists {
        compatible(client, t).await?.map_err(|p| {
            Error::prerequisite(
                format!("tables[{index}].collection: collection {} is incompatible: {p}", t.collection),
                if t.collection_config.alias {
                    "to build it anew with these settings while searches keep using it, run `pg2qdrant rebuild --table` and start again; or fix the vector settings in the config"
                } else {
                    "fix the vector settings in the config, or delete/rename the collection so it is recreated"
                },
            )
        })?;
        ensure_indexes(client, t).await?;
        return Ok(Ensured::Ready);
    }
    let c = &t.collection_config;
    if !c.create {
        return Err(Error::prerequisite(
            format!(
                "tables[{index}].collection: collection {} does not exist",
                t.collection
            ),
            "create it, or set collection_config.create = true",
        ));
    }
    // Behind an alias: the collection gets a name of its own, the alias the configured one.
    let physical = if c.alias {
        new_name(client, &t.collection).await?
    } else {
        t.collection.clone()
    };
    let create = creation(t, &physical);
    match client.create_collection(create).await {
        Ok(_) if c.alias => {
            point_alias(client, &t.collection, &physical).await?;
            tracing::info!(collection = %physical, alias = %t.collection, "created collection behind an alias");
        }
        Ok(_) => tracing::info!(collection = %t.collection, "created collection"),
        // Another instance created it meanwhile: check it like an existing one.
        Err(e) if e.to_string().contains("already exists") => {
            return Box::pin(ensure(client, index, t, false)).await
        }
        Err(e) => return Err(Error::qdrant(format!("create collection {}", t.collection))(e)),
    }
    ensure_indexes(client, t).await?;
    Ok(if bulk {
        Ensured::CreatedForBulk
    } else {
        Ensured::Ready
    })
}

/// The request that creates table `t`'s collection under the name `physical`: its vectors
/// (dense and sparse), HNSW, shards, replicas and sharding method.
fn creation(t: &TableConfig, physical: &str) -> CreateCollectionBuilder {
    let c = &t.collection_config;
    let mut vectors = VectorsConfigBuilder::default();
    for crate::config::VectorColumn {
        name,
        size,
        distance: dist,
        ..
    } in t.vector_columns()
    {
        let params = VectorParamsBuilder::new(size, distance(dist)).on_disk(c.on_disk);
        if name.is_empty() {
            vectors.add_vector_params(params);
        } else {
            vectors.add_named_vector_params(name, params);
        }
    }
    let mut hnsw = HnswConfigDiffBuilder::default();
    if let Some(m) = c.hnsw_m {
        hnsw = hnsw.m(m);
    }
    if let Some(ef) = c.hnsw_ef_construct {
        hnsw = hnsw.ef_construct(ef);
    }
    if let Some(f) = c.full_scan_threshold {
        hnsw = hnsw.full_scan_threshold(f);
    }
    let mut create = CreateCollectionBuilder::new(physical)
        .vectors_config(vectors)
        .hnsw_config(hnsw)
        .on_disk_payload(c.on_disk_payload);
    if !t.sparse_vectors.is_empty() {
        create = create.sparse_vectors_config(sparse_config(t));
    }
    if let Some(n) = c.shard_number {
        create = create.shard_number(n);
    }
    if let Some(n) = c.replication_factor {
        create = create.replication_factor(n);
    }
    if let Some(n) = c.write_consistency_factor {
        create = create.write_consistency_factor(n);
    }
    if c.sharding.is_some() {
        // Shard keys are created as rows need them (`shards`); `shard_number` is per key.
        create = create.sharding_method(qdrant_client::qdrant::ShardingMethod::Custom as i32);
    }
    create
}

/// The table's `sparse_vectors` as Qdrant's sparse vector config (IDF as configured; index on
/// disk with `on_disk`).
fn sparse_config(t: &TableConfig) -> SparseVectorsConfigBuilder {
    let mut out = SparseVectorsConfigBuilder::default();
    for sv in &t.sparse_vectors {
        let mut params = SparseVectorParamsBuilder::default();
        if sv.idf() {
            params = params.modifier(Modifier::Idf as i32);
        }
        if t.collection_config.on_disk {
            params = params.index(SparseIndexConfigBuilder::default().on_disk(true));
        }
        out.add_named_vector_params(&sv.name, params);
    }
    out
}

/// The collection's current `indexing_threshold` (KB), as Qdrant reports it.
pub async fn indexing_threshold(client: &Qdrant, collection: &str) -> Result<u64, Error> {
    Ok(config(client, collection)
        .await?
        .and_then(|c| c.optimizer_config)
        .and_then(|o| o.indexing_threshold)
        .unwrap_or(DEFAULT_INDEXING_THRESHOLD_KB))
}

/// Qdrant's documented default, used when a collection reports none.
pub const DEFAULT_INDEXING_THRESHOLD_KB: u64 = 20_000;

/// Sets the collection's `indexing_threshold` (KB; 0 = no vector index is built).
pub async fn set_indexing_threshold(
    client: &Qdrant,
    collection: &str,
    threshold: u64,
) -> Result<(), Error> {
    client
        .update_collection(UpdateCollectionBuilder::new(collection).optimizers_config(
            OptimizersConfigDiffBuilder::default().indexing_threshold(threshold),
        ))
        .await
        .map(|_| ())
        .map_err(Error::qdrant(format!(
            "set indexing_threshold of {collection}"
        )))
}

/// Creates the configured payload indexes (creating an existing one again is a no-op).
async fn ensure_indexes(client: &Qdrant, t: &TableConfig) -> Result<(), Error> {
    for idx in &t.collection_config.payload_indexes {
        let params = idx.is_tenant.then(|| tenant_params(idx.kind));
        create_index_with(
            client,
            &t.collection,
            &idx.field,
            field_type(idx.kind),
            params,
        )
        .await?;
    }
    Ok(())
}

/// A chunked table's points are selected by row (`_pg2qdrant.key.<column>`) and chunk index on
/// every change: indexes keep that from scanning the collection.
pub async fn ensure_chunk_indexes(
    client: &Qdrant,
    collection: &str,
    key: &[String],
) -> Result<(), Error> {
    let mut fields: Vec<(String, FieldType)> = key
        .iter()
        .map(|k| (format!("{META_FIELD}.key.{k}"), FieldType::Keyword))
        .collect();
    fields.push((format!("{META_FIELD}.table"), FieldType::Keyword));
    fields.push((
        crate::mapping::chunk::FIELDS[0].to_owned(),
        FieldType::Integer,
    ));
    for (field, kind) in fields {
        create_index(client, collection, &field, kind).await?;
    }
    Ok(())
}

/// Creates a payload index on `field` (creating an existing one again is a no-op). A
/// custom-sharded collection without any shard key yet answers "Shard key not specified", yet
/// records the index in its schema, and every shard key created later builds it (Qdrant 1.16,
/// measured): that answer counts as done.
pub async fn create_index(
    client: &Qdrant,
    collection: &str,
    field: &str,
    kind: FieldType,
) -> Result<(), Error> {
    create_index_with(client, collection, field, kind, None).await
}

/// [`create_index`] with the index's parameters (a tenant index). Creating it again with other
/// parameters rebuilds it with those.
async fn create_index_with(
    client: &Qdrant,
    collection: &str,
    field: &str,
    kind: FieldType,
    params: Option<IndexParams>,
) -> Result<(), Error> {
    let mut request = CreateFieldIndexCollectionBuilder::new(collection, field, kind).wait(true);
    if let Some(p) = params {
        request = request.field_index_params(p);
    }
    match client.create_field_index(request).await {
        Err(e) if e.to_string().contains("Shard key not specified") => Ok(()),
        r => r.map(|_| ()).map_err(Error::qdrant(format!(
            "create payload index {field} on {collection}"
        ))),
    }
}

/// The collection `alias` points at, if it is an alias.
pub async fn alias_target(client: &Qdrant, alias: &str) -> Result<Option<String>, Error> {
    let aliases = client
        .list_aliases()
        .await
        .map_err(Error::qdrant("list aliases"))?;
    Ok(aliases
        .aliases
        .into_iter()
        .find(|a| a.alias_name == alias)
        .map(|a| a.collection_name))
}

/// Points `alias` at `collection`, atomically (an existing alias is moved: searches through it
/// see the old collection or the new one, never neither).
pub async fn point_alias(client: &Qdrant, alias: &str, collection: &str) -> Result<(), Error> {
    client
        .create_alias(qdrant_client::qdrant::CreateAliasBuilder::new(
            collection, alias,
        ))
        .await
        .map(|_| ())
        .map_err(Error::qdrant(format!(
            "point alias {alias} at {collection}"
        )))
}

/// A collection name for `alias` that is not taken: `<alias>_<UTC yyyymmddhhmmss>`.
pub async fn new_name(client: &Qdrant, alias: &str) -> Result<String, Error> {
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    for n in 0.. {
        let name = match n {
            0 => format!("{alias}_{stamp}"),
            n => format!("{alias}_{stamp}_{n}"),
        };
        let taken = client
            .collection_exists(&name)
            .await
            .map_err(Error::qdrant(format!("look up collection {name}")))?;
        if !taken {
            return Ok(name);
        }
    }
    unreachable!("some name is free")
}

/// The size and distance of each vector of `collection` (`""`: the unnamed one), and whether
/// it uses custom sharding.
pub async fn vector_params(
    client: &Qdrant,
    collection: &str,
) -> Result<(Vec<(String, u64, Distance)>, bool), Error> {
    use qdrant_client::qdrant::vectors_config::Config;
    let params = config(client, collection).await?.and_then(|c| c.params);
    let custom = params.as_ref().and_then(|p| p.sharding_method)
        == Some(qdrant_client::qdrant::ShardingMethod::Custom as i32);
    let params = params.and_then(|p| p.vectors_config).and_then(|v| v.config);
    let ours = |d: i32| -> Distance {
        [
            Distance::Cosine,
            Distance::Dot,
            Distance::Euclid,
            Distance::Manhattan,
        ]
        .into_iter()
        .find(|x| distance(*x) as i32 == d)
        .unwrap_or(Distance::Dot)
    };
    let vectors = match params {
        Some(Config::Params(p)) => vec![(String::new(), p.size, ours(p.distance))],
        Some(Config::ParamsMap(m)) => m
            .map
            .into_iter()
            .map(|(name, p)| (name, p.size, ours(p.distance)))
            .collect(),
        None => Vec::new(),
    };
    Ok((vectors, custom))
}
