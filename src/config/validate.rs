//! `Config::validate`: every error names the field path (`tables[2].vector.size`) and what to do.

use super::{Config, IndexType, TableConfig};
use crate::error::Error;
use std::collections::HashSet;

/// Payload key reserved for the connector's own metadata (table, position, commit time).
pub const META_FIELD: &str = "_pg2qdrant";

/// Payload fields a chunk point adds to the row's payload (`mapping::chunk`): reserved.
pub const CHUNK_FIELDS: [&str; 3] = ["chunk_index", "chunk_count", "chunk_text"];

fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Config {
    /// Every section, then every embedder and table; the first error names its field.
    pub fn validate(&self) -> Result<(), Error> {
        self.source.validate()?;
        self.qdrant.validate()?;
        match &self.kafka {
            Some(k) => k.validate()?,
            None if !self.qdrant.direct => {
                return Err(Error::config(
                    "qdrant.direct",
                    "false needs a [kafka] section (changes must go somewhere): add [kafka] or remove direct".to_owned(),
                ))
            }
            None => {}
        }
        if self.checkpoint.path.as_os_str().is_empty() {
            return Err(Error::config(
                "checkpoint.path",
                "must not be empty".to_owned(),
            ));
        }
        if !self.metrics.addr.is_empty()
            && self.metrics.addr.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(Error::config(
                "metrics.addr",
                format!(
                    "{:?} is not host:port (e.g. 127.0.0.1:9187)",
                    self.metrics.addr
                ),
            ));
        }
        if self.tables.is_empty() {
            return Err(Error::config(
                "tables",
                "no [[tables]] entry: name at least one table to mirror".to_owned(),
            ));
        }
        let mut embedders = HashSet::new();
        for (i, e) in self.embedders.iter().enumerate() {
            if e.name.is_empty() || !embedders.insert(e.name.as_str()) {
                return Err(Error::config(
                    format!("embedders[{i}].name"),
                    format!("{:?} is empty or used twice", e.name),
                ));
            }
            e.validate(i)?;
        }
        self.validate_tables(&embedders)
    }

    /// Each table, and what tables must agree on (a shared collection's sharding, no table
    /// listed twice).
    fn validate_tables(&self, embedders: &HashSet<&str>) -> Result<(), Error> {
        let mut seen = HashSet::new();
        for (i, t) in self.tables.iter().enumerate() {
            validate_table(i, t, embedders)?;
            // Every point of a custom-sharded collection needs a shard key: tables sharing a
            // collection shard alike.
            let sharded = t.collection_config.sharding.is_some();
            if let Some((j, _)) = self.tables[..i].iter().enumerate().find(|(_, o)| {
                o.collection == t.collection && o.collection_config.sharding.is_some() != sharded
            }) {
                return Err(Error::config(
                    format!("tables[{i}].collection_config.sharding"),
                    format!(
                        "collection {} is shared with tables[{j}], and only one of them sets sharding: every point of a custom-sharded collection needs a shard key, so set sharding = {{ key = \"<column>\" }} on both or on neither",
                        t.collection
                    ),
                ));
            }
            if !seen.insert(crate::event::TableName::parse(&t.table)) {
                return Err(Error::config(
                    format!("tables[{i}].table"),
                    format!("{} is listed twice", t.table),
                ));
            }
        }
        Ok(())
    }
}

impl super::SourceConfig {
    fn validate(&self) -> Result<(), Error> {
        let s = self;
        let pg: tokio_postgres::Config = s
            .url
            .parse()
            .map_err(|e| Error::config("source.url", format!("not a PostgreSQL URL: {e}; expected postgres://user:password@host:port/database")))?;
        if pg.get_hosts().is_empty() {
            return Err(Error::config("source.url", "names no host".to_owned()));
        }
        if pg.get_user().is_none() {
            return Err(Error::config("source.url", "names no user".to_owned()));
        }
        if let (super::TlsMode::VerifyFull, Some(tokio_postgres::config::Host::Tcp(host))) =
            (s.tls, pg.get_hosts().first())
        {
            if host.parse::<std::net::IpAddr>().is_ok() {
                return Err(Error::config(
                    "source.tls",
                    format!("verify-full needs a host name, and source.url's host is the IP address {host} (the replication stream cannot verify a certificate against an IP address): put a DNS name the server's certificate names in source.url (e.g. localhost, or an /etc/hosts entry for the address), or use tls = \"verify-ca\" (the chain is verified, not the name)"),
                ));
            }
        }
        if !is_simple_name(&s.slot) {
            return Err(Error::config(
                "source.slot",
                format!(
                    "{:?} is not a valid slot name: use 1 to 63 of a-z, 0-9 and _",
                    s.slot
                ),
            ));
        }
        if !is_simple_name(&s.publication) {
            return Err(Error::config(
                "source.publication",
                format!(
                    "{:?} is not a valid publication name: use 1 to 63 of a-z, 0-9 and _",
                    s.publication
                ),
            ));
        }
        if s.status_interval_ms == 0 {
            return Err(Error::config(
                "source.status_interval_ms",
                "must be at least 1".to_owned(),
            ));
        }
        if s.snapshot_workers == Some(0) || s.snapshot_workers.is_some_and(|w| w > 64) {
            return Err(Error::config(
                "source.snapshot_workers",
                "must be 1..=64 (leave it out for one per core, at most 4)".to_owned(),
            ));
        }
        if s.snapshot_chunk_pages == 0 {
            return Err(Error::config(
                "source.snapshot_chunk_pages",
                "must be at least 1 (heap pages of 8 KiB per copy chunk)".to_owned(),
            ));
        }
        Ok(())
    }
}

impl super::QdrantConfig {
    fn validate(&self) -> Result<(), Error> {
        let q = self;
        if !(q.url.starts_with("http://") || q.url.starts_with("https://")) {
            return Err(Error::config(
                "qdrant.url",
                format!(
                    "{:?} must start with http:// or https:// (gRPC port, 6334 by default)",
                    q.url
                ),
            ));
        }
        if q.batch_size == 0 || q.batch_size > 10_000 {
            return Err(Error::config(
                "qdrant.batch_size",
                format!("{} is out of range 1..=10000", q.batch_size),
            ));
        }
        if q.parallel == 0 || q.parallel > 16 {
            return Err(Error::config(
                "qdrant.parallel",
                format!(
                    "{} is out of range 1..=16 (batches written at once)",
                    q.parallel
                ),
            ));
        }
        if q.timeout_ms == 0 {
            return Err(Error::config(
                "qdrant.timeout_ms",
                "must be at least 1".to_owned(),
            ));
        }
        if q.max_backoff_ms < 10 {
            return Err(Error::config(
                "qdrant.max_backoff_ms",
                "must be at least 10".to_owned(),
            ));
        }
        Ok(())
    }
}

impl super::EmbedderConfig {
    /// Entry `i` of `[[embedders]]` (its name was checked with the others').
    fn validate(&self, i: usize) -> Result<(), Error> {
        let e = self;
        if e.name.starts_with("bm25(") {
            return Err(Error::config(
                format!("embedders[{i}].name"),
                format!(
                    "{:?}: names starting with bm25( are the built-in BM25 encoders'",
                    e.name
                ),
            ));
        }
        if e.batch_size == 0 || e.batch_size > 4096 {
            return Err(Error::config(
                format!("embedders[{i}].batch_size"),
                format!("{} is out of range 1..=4096", e.batch_size),
            ));
        }
        if e.kind == crate::config::EmbedderKind::Local && e.path.as_os_str().is_empty() {
            return Err(Error::config(
                format!("embedders[{i}].path"),
                "required for kind = \"local\": the model directory".to_owned(),
            ));
        }
        if e.concurrency == 0 || e.concurrency > 64 {
            return Err(Error::config(
                format!("embedders[{i}].concurrency"),
                format!("{} is out of range 1..=64", e.concurrency),
            ));
        }
        if e.kind != crate::config::EmbedderKind::Local {
            for (field, set) in [
                ("runtime", e.runtime.is_some()),
                ("quantize", e.quantize.is_some()),
            ] {
                if set {
                    return Err(Error::config(
                        format!("embedders[{i}].{field}"),
                        "only for kind = \"local\": remove it".to_owned(),
                    ));
                }
            }
        }
        if e.threads == Some(0) {
            return Err(Error::config(
                format!("embedders[{i}].threads"),
                "must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A vector's source: a column, or `embed` with a `text` template over columns.
fn validate_source(
    field: &dyn Fn(&str) -> String,
    column: &str,
    embed: &Option<String>,
    text: &Option<String>,
    embedders: &HashSet<&str>,
) -> Result<(), Error> {
    match (column.is_empty(), embed) {
        (true, None) => Err(Error::config(
            field("column"),
            "must not be empty (or compute the vector from text: embed = \"<embedder>\", text = \"{column}\")".to_owned(),
        )),
        (false, Some(_)) => Err(Error::config(
            field("embed"),
            "set either column or embed, not both".to_owned(),
        )),
        (false, None) if text.is_some() => Err(Error::config(
            field("text"),
            "only a vector with embed takes a text template".to_owned(),
        )),
        (false, None) => Ok(()),
        (true, Some(e)) => {
            if !embedders.contains(e.as_str()) {
                return Err(Error::config(
                    field("embed"),
                    format!("no [[embedders]] entry is named {e:?}"),
                ));
            }
            let t = text.as_deref().unwrap_or("");
            match crate::config::template::Template::parse(t) {
                Ok(tpl) if !tpl.columns().is_empty() => Ok(()),
                Ok(_) => Err(Error::config(
                    field("text"),
                    "name at least one column in braces, e.g. text = \"{title}\\n{body}\"".to_owned(),
                )),
                Err(e) => Err(Error::config(field("text"), e)),
            }
        }
    }
}

/// Chunked rows are several points of one computed vector: nothing else can be split with them.
fn validate_chunk(
    f: &dyn Fn(&str) -> String,
    t: &TableConfig,
    c: &crate::config::ChunkConfig,
) -> Result<(), Error> {
    if c.max_tokens < 2 || c.max_tokens > 8192 {
        return Err(Error::config(
            f("chunk.max_tokens"),
            format!("{} is out of range 2..=8192", c.max_tokens),
        ));
    }
    if c.chunking == crate::config::Chunking::Content && c.overlap > 0 {
        return Err(Error::config(
            f("chunk.overlap"),
            "chunking = \"content\" cuts at paragraphs and sentences, without overlap: leave overlap out".to_owned(),
        ));
    }
    if c.overlap >= c.max_tokens {
        return Err(Error::config(
            f("chunk.overlap"),
            format!(
                "{} must be below max_tokens ({}): windows would not advance",
                c.overlap, c.max_tokens
            ),
        ));
    }
    let vectors = t.vector_columns();
    if vectors.len() != 1 || t.embedded_vectors().len() != 1 {
        return Err(Error::config(
            f("chunk"),
            "a chunked table needs exactly one vector, computed from text (embed = ..., text = ...): each chunk is a point with its own vector".to_owned(),
        ));
    }
    for field in CHUNK_FIELDS {
        if t.rename.values().any(|v| v == field) || t.unix_seconds.iter().any(|u| u.field == field)
        {
            return Err(Error::config(
                f("chunk"),
                format!("payload field {field:?} is reserved for chunks: rename the field"),
            ));
        }
    }
    Ok(())
}

fn validate_table(i: usize, t: &TableConfig, embedders: &HashSet<&str>) -> Result<(), Error> {
    let f = |name: &str| format!("tables[{i}].{name}");
    if t.table.is_empty() || t.table.split('.').count() > 2 {
        return Err(Error::config(
            f("table"),
            format!("{:?}: expected table or schema.table", t.table),
        ));
    }
    if t.collection.is_empty() {
        return Err(Error::config(
            f("collection"),
            "must not be empty".to_owned(),
        ));
    }
    validate_vectors(i, t, embedders)?;
    if let Some(c) = &t.chunk {
        validate_chunk(&f, t, c)?;
    }
    super::sparse::validate(i, t)?;
    validate_row_shape(i, t)?;
    validate_collection(i, &t.collection_config)
}

/// The table's vectors: one `vector` or named `vectors`, each sized and with one source.
fn validate_vectors(i: usize, t: &TableConfig, embedders: &HashSet<&str>) -> Result<(), Error> {
    let f = |name: &str| format!("tables[{i}].{name}");
    match (&t.vector, t.vectors.is_empty()) {
        (Some(_), false) => {
            return Err(Error::config(
                f("vector"),
                "set either vector or vectors, not both".to_owned(),
            ));
        }
        (None, true) => {
            return Err(Error::config(
                f("vector"),
                "missing: name the vector column (vector = { column, size, distance })".to_owned(),
            ));
        }
        _ => {}
    }
    if let Some(v) = &t.vector {
        if v.size == 0 || v.size > 65_536 {
            return Err(Error::config(
                f("vector.size"),
                format!("{} is out of range 1..=65536", v.size),
            ));
        }
        validate_source(
            &|name| f(&format!("vector.{name}")),
            &v.column,
            &v.embed,
            &v.text,
            embedders,
        )?;
    }
    let mut names = HashSet::new();
    for (j, v) in t.vectors.iter().enumerate() {
        if v.name.is_empty() || !names.insert(&v.name) {
            return Err(Error::config(
                f(&format!("vectors[{j}].name")),
                format!("{:?} is empty or used twice", v.name),
            ));
        }
        if v.size == 0 || v.size > 65_536 {
            return Err(Error::config(
                f(&format!("vectors[{j}].size")),
                format!("{} is out of range 1..=65536", v.size),
            ));
        }
        validate_source(
            &|name| f(&format!("vectors[{j}].{name}")),
            &v.column,
            &v.embed,
            &v.text,
            embedders,
        )?;
    }
    Ok(())
}

/// What the table's rows give: the key, the row filter, the soft-delete column, renamed and
/// converted payload fields.
fn validate_row_shape(i: usize, t: &TableConfig) -> Result<(), Error> {
    let f = |name: &str| format!("tables[{i}].{name}");
    if let Some(k) = &t.key {
        if k.is_empty() || k.iter().any(|c| c.is_empty()) {
            return Err(Error::config(
                f("key"),
                "list at least one column, or leave key out to use the primary key".to_owned(),
            ));
        }
    }
    if let Some(w) = &t.row_filter {
        // PostgreSQL judges the rest (`source::filter`). A `;` that could end the statement the
        // expression is put into is refused here, before any SQL: the copy, verify and the
        // dead-letter replay put it into statements of their own.
        if w.trim().is_empty() || ends_a_statement(w) {
            return Err(Error::config(
                f("where"),
                format!("{w:?} is not one SQL boolean expression over the table's columns (e.g. \"is_indexed\" or \"status <> 'draft'\")"),
            ));
        }
    }
    if t.soft_delete.as_deref() == Some("") {
        return Err(Error::config(
            f("soft_delete"),
            "must name a boolean column".to_owned(),
        ));
    }
    for (col, field) in &t.rename {
        if field.is_empty() || field == META_FIELD {
            return Err(Error::config(
                f(&format!("rename.{col}")),
                format!("{field:?} cannot be used as a payload field name"),
            ));
        }
    }
    for (j, u) in t.unix_seconds.iter().enumerate() {
        if u.column.is_empty() || u.field.is_empty() || u.field == META_FIELD {
            return Err(Error::config(
                f(&format!("unix_seconds[{j}]")),
                "needs a column and a payload field name".to_owned(),
            ));
        }
    }
    Ok(())
}

/// The collection's settings: HNSW, shards and replicas, payload indexes, sharding.
fn validate_collection(i: usize, c: &super::CollectionConfig) -> Result<(), Error> {
    let f = |name: &str| format!("tables[{i}].{name}");
    if c.hnsw_m == Some(0) {
        return Err(Error::config(
            f("collection_config.hnsw_m"),
            "must be at least 1".to_owned(),
        ));
    }
    if c.hnsw_ef_construct == Some(0) {
        return Err(Error::config(
            f("collection_config.hnsw_ef_construct"),
            "must be at least 1".to_owned(),
        ));
    }
    for (name, v) in [
        ("shard_number", c.shard_number),
        ("replication_factor", c.replication_factor),
        ("write_consistency_factor", c.write_consistency_factor),
    ] {
        if v == Some(0) {
            return Err(Error::config(
                f(&format!("collection_config.{name}")),
                "must be at least 1".to_owned(),
            ));
        }
    }
    for (j, idx) in c.payload_indexes.iter().enumerate() {
        if idx.is_tenant && !matches!(idx.kind, IndexType::Keyword | IndexType::Uuid) {
            return Err(Error::config(
                f(&format!("collection_config.payload_indexes[{j}].is_tenant")),
                format!(
                    "field {:?} has type {:?}: Qdrant's tenant index is for keyword and uuid fields only",
                    idx.field, idx.kind
                ),
            ));
        }
    }
    if c.sharding.as_ref().is_some_and(|s| s.key.is_empty()) {
        return Err(Error::config(
            f("collection_config.sharding.key"),
            "is empty: name the column whose value names each row's shard key (e.g. session_id)"
                .to_owned(),
        ));
    }
    if let (Some(w), r) = (
        c.write_consistency_factor,
        c.replication_factor.unwrap_or(1),
    ) {
        if w > r {
            return Err(Error::config(
                f("collection_config.write_consistency_factor"),
                format!("{w} is more than the {r} copies of each shard (replication_factor): no write could ever be confirmed"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn cfg(tables: &str) -> String {
        format!(
            "[source]\nurl = \"postgres://u@127.0.0.1/db\"\nslot = \"s\"\npublication = \"p\"\n{tables}"
        )
    }

    #[test]
    fn shard_settings_out_of_range_name_their_field() {
        let t = |cc: &str| {
            parse(&cfg(&format!(
                "[[tables]]\ntable = \"a\"\ncollection = \"a\"\nvector = {{ column = \"v\", size = 3, distance = \"Cosine\" }}\n\
                 collection_config = {{ {cc} }}\n"
            )))
            .unwrap()
            .validate()
        };
        assert!(t("shard_number = 2, replication_factor = 2, write_consistency_factor = 2, on_disk = true").is_ok());
        let e = t("shard_number = 0").unwrap_err().to_string();
        assert!(
            e.contains("tables[0].collection_config.shard_number"),
            "{e}"
        );
        assert!(t("sharding = { key = \"session_id\" }").is_ok());
        assert!(
            t("payload_indexes = [{ field = \"s\", type = \"uuid\", is_tenant = true }]").is_ok()
        );
        let e = t("payload_indexes = [{ field = \"n\", type = \"integer\", is_tenant = true }]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tables[0].collection_config.payload_indexes[0].is_tenant"),
            "{e}"
        );
        let e = t("sharding = { key = \"\" }").unwrap_err().to_string();
        assert!(
            e.contains("tables[0].collection_config.sharding.key"),
            "{e}"
        );
        let e = parse(&cfg(
            "[[tables]]\ntable = \"a\"\ncollection = \"a\"\nvector = { column = \"v\", size = 3, distance = \"Cosine\" }\n\
             collection_config = { sharding = { column = \"session_id\" } }\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `column`"), "{e}");
        let e = t("write_consistency_factor = 2").unwrap_err().to_string();
        assert!(
            e.contains("tables[0].collection_config.write_consistency_factor")
                && e.contains("replication_factor"),
            "{e}"
        );
    }

    #[test]
    fn content_chunking_with_an_overlap_names_the_field() {
        let t = |chunk: &str| {
            parse(&cfg(&format!(
                "[[embedders]]\nname = \"e\"\npath = \"/models/e\"\n\
                 [[tables]]\ntable = \"a\"\ncollection = \"a\"\n\
                 vector = {{ embed = \"e\", text = \"{{body}}\", size = 3, distance = \"Cosine\" }}\n\
                 chunk = {{ {chunk} }}\n"
            )))
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map_err(|e| e.to_string()))
        };
        assert_eq!(t("max_tokens = 8, chunking = \"content\""), Ok(()));
        let e = t("max_tokens = 8, overlap = 2, chunking = \"content\"").unwrap_err();
        assert!(
            e.contains("tables[0].chunk.overlap") && e.contains("content"),
            "{e}"
        );
        let e = t("max_tokens = 8, chunking = \"sentences\"").unwrap_err();
        assert!(e.contains("chunking") || e.contains("sentences"), "{e}");
    }

    #[test]
    fn vector_size_error_names_the_path() {
        let c = parse(&cfg(
            "[[tables]]\ntable = \"a\"\ncollection = \"a\"\nvector = { column = \"v\", size = 3, distance = \"Cosine\" }\n\
             [[tables]]\ntable = \"b\"\ncollection = \"b\"\nvector = { column = \"v\", size = 0, distance = \"Cosine\" }\n",
        ))
        .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("tables[1].vector.size"), "{err}");
    }

    #[test]
    fn bad_slot_name_is_rejected() {
        let c = parse(&cfg("[[tables]]\ntable = \"a\"\ncollection = \"a\"\nvector = { column = \"v\", size = 3, distance = \"Cosine\" }\n")
            .replace("slot = \"s\"", "slot = \"s; DROP\""))
        .unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("source.slot"));
    }

    #[test]
    fn missing_vector_is_rejected() {
        let c = parse(&cfg("[[tables]]\ntable = \"a\"\ncollection = \"a\"\n")).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tables[0].vector"));
    }
}

/// Whether `expr` holds a `;` that may end a statement: one outside a plain string literal or
/// quoted identifier. Conservative: with a `;` anywhere, dollar quotes, comments and backslash
/// escapes (whose bounds this scan does not follow) are refused too.
fn ends_a_statement(expr: &str) -> bool {
    if !expr.contains(';') {
        return false;
    }
    if expr.contains('$') || expr.contains("--") || expr.contains("/*") || expr.contains('\\') {
        return true;
    }
    let mut quote = None;
    for c in expr.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            // A doubled quote inside a literal closes and opens it again: the same state.
            (Some(q), c) if c == q => quote = None,
            (None, ';') => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod where_tests {
    #[test]
    fn a_semicolon_is_refused_unless_it_is_inside_a_plain_literal() {
        for refused in [
            "true); COMMIT; DROP TABLE x; --",
            "a = 1;",
            "b = $$;$$",
            "c = 'x' -- ;",
            "d = E'\\';'",
        ] {
            assert!(super::ends_a_statement(refused), "{refused}");
        }
        for accepted in [
            "body <> 'a;b'",
            "\"we;ird\" = 1",
            "s = 'it''s; fine'",
            "x > 1",
        ] {
            assert!(!super::ends_a_statement(accepted), "{accepted}");
        }
    }
}
