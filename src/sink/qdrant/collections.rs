//! Collections: create when missing (as configured), and refuse to start against a collection
//! whose vector parameters differ from the config.

use crate::config::META_FIELD;
use crate::config::{Distance, IndexType, TableConfig};
use crate::error::Error;
use qdrant_client::qdrant::{
    vectors_config, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    Distance as QDistance, FieldType, HnswConfigDiffBuilder, OptimizersConfigDiffBuilder,
    UpdateCollectionBuilder, VectorParamsBuilder, VectorsConfigBuilder,
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

/// Compares an existing collection with the config: `Ok(())` or a list of differences.
pub async fn compatible(client: &Qdrant, t: &TableConfig) -> Result<Result<(), String>, Error> {
    let info = client
        .collection_info(&t.collection)
        .await
        .map_err(Error::qdrant(format!("read collection {}", t.collection)))?;
    let vectors = info
        .result
        .and_then(|r| r.config)
        .and_then(|c| c.params)
        .and_then(|p| p.vectors_config)
        .and_then(|v| v.config);
    let mut problems = Vec::new();
    for (name, _, size, dist) in t.vector_columns() {
        let params = match (&vectors, name.is_empty()) {
            (Some(vectors_config::Config::Params(p)), true) => Some(*p),
            (Some(vectors_config::Config::ParamsMap(m)), false) => m.map.get(&name).cloned(),
            _ => None,
        };
        let label = if name.is_empty() {
            "the unnamed vector".to_owned()
        } else {
            format!("vector {name:?}")
        };
        match params {
            None => problems.push(format!("{label} is not in the collection")),
            Some(p) => {
                if p.size != size {
                    problems.push(format!(
                        "{label} has size {} but the config says {size}",
                        p.size
                    ));
                }
                if p.distance != distance(dist) as i32 {
                    problems.push(format!(
                        "{label} uses distance {:?} but the config says {dist:?}",
                        QDistance::try_from(p.distance).unwrap_or(QDistance::UnknownDistance)
                    ));
                }
            }
        }
    }
    Ok(if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    })
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
                "fix the vector settings in the config, or delete/rename the collection so it is recreated",
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
    let mut vectors = VectorsConfigBuilder::default();
    for (name, _, size, dist) in t.vector_columns() {
        let params = VectorParamsBuilder::new(size, distance(dist));
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
    let create = CreateCollectionBuilder::new(&t.collection)
        .vectors_config(vectors)
        .hnsw_config(hnsw)
        .on_disk_payload(c.on_disk_payload);
    match client.create_collection(create).await {
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

/// The collection's current `indexing_threshold` (KB), as Qdrant reports it.
pub async fn indexing_threshold(client: &Qdrant, collection: &str) -> Result<u64, Error> {
    let info = client
        .collection_info(collection)
        .await
        .map_err(Error::qdrant(format!("read collection {collection}")))?;
    Ok(info
        .result
        .and_then(|r| r.config)
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
        client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(
                    &t.collection,
                    &idx.field,
                    field_type(idx.kind),
                )
                .wait(true),
            )
            .await
            .map_err(Error::qdrant(format!(
                "create payload index {} on {}",
                idx.field, t.collection
            )))?;
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
        client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(collection, &field, kind).wait(true),
            )
            .await
            .map_err(Error::qdrant(format!(
                "create payload index {field} on {collection}"
            )))?;
    }
    Ok(())
}
