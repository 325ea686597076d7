//! Row filters (`tables[].where`): the publication's `WHERE`, checked before it is used.
//!
//! # Why the stream, the copy and verify agree
//!
//! PostgreSQL 15 evaluates a publication's row filter on each change: an insert or delete of a
//! row outside it is not sent; an update is sent as an insert when the row moves into the
//! filter, as a delete (of its old key) when it moves out, as an update when it stays in. So
//! the points follow the filter with the ordinary mapping: a row updated out of it loses its
//! point, one updated into it gains one. The copy reads only the rows that match (the same
//! expression in its `SELECT`), its closing sweep removes the points of rows it did not see,
//! and `verify` compares only the rows that match (a point of a row outside is an orphan).
//! TRUNCATE is not filtered, and removes every point of the table.
//!
//! # What is checked, and how
//!
//! The expression is handed to PostgreSQL itself: inside a transaction that is rolled back, a
//! probe publication is created with it. That validates it exactly as the real publication would
//! (only simple expressions over the table's columns, immutable built-in functions), gives the
//! text PostgreSQL stores for it (`pg_publication_tables.rowfilter`), which an existing
//! publication's filter is compared with, and names the columns it reads (from the stored
//! expression tree). PostgreSQL refuses UPDATEs and DELETEs on a table whose publication
//! filter reads columns outside its replica identity, so such a filter is refused before the
//! publication is made: the app's writes would start failing otherwise.

use super::catalog::Catalog;
use crate::config::TableConfig;
use crate::error::Error;
use crate::event::{quote_ident, TableName};

impl Catalog {
    /// Hands `expr` to PostgreSQL as a publication row filter of `table`, inside a transaction
    /// that is rolled back: `Ok(Err(why))` when PostgreSQL refuses it (only simple expressions
    /// over the table's columns, constants and immutable built-in functions pass), else its
    /// stored text and expression tree. The outer error is the connection's.
    pub async fn probe_filter(
        &self,
        table: &TableName,
        expr: &str,
    ) -> Result<Result<(String, String), tokio_postgres::Error>, Error> {
        let client = self.client();
        client
            .batch_execute("BEGIN")
            .await
            .map_err(Error::pg("row filter probe"))?;
        let probed = async {
            // One statement through the extended protocol: PostgreSQL refuses a text holding
            // several ("cannot insert multiple commands into a prepared statement"), so an
            // expression with a `;` can never run statements of its own.
            client
                .execute(
                    &format!(
                        "CREATE PUBLICATION {PROBE} FOR TABLE {} WHERE ({expr})",
                        table.quoted()
                    ),
                    &[],
                )
                .await?;
            let row = client
                .query_one(
                    "SELECT pt.rowfilter, pr.prqual::text FROM pg_publication_tables pt \
                     JOIN pg_publication p ON p.pubname = pt.pubname \
                     JOIN pg_publication_rel pr ON pr.prpubid = p.oid \
                     WHERE pt.pubname = $1",
                    &[&PROBE],
                )
                .await?;
            Ok::<(String, String), tokio_postgres::Error>((row.get(0), row.get(1)))
        }
        .await;
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(Error::pg("row filter probe"))?;
        Ok(probed)
    }
}

/// A table's row filter as PostgreSQL has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The configured expression, as written.
    pub expr: String,
    /// PostgreSQL's text for it (what `pg_publication_tables.rowfilter` shows).
    pub stored: String,
    /// The columns it reads.
    pub columns: Vec<String>,
}

const PROBE: &str = "pg2qdrant_row_filter_probe";

impl Catalog {
    /// Validates `tables[index].where` with PostgreSQL (see the module doc) and checks its
    /// columns against the table's replica identity; `None` without a filter. Errors name the
    /// field, the table and the fix.
    pub async fn row_filter(&self, index: usize, t: &TableConfig) -> Result<Option<Filter>, Error> {
        let Some(expr) = t.row_filter.clone() else {
            return Ok(None);
        };
        let table = TableName::parse(&t.table);
        let field = format!("tables[{index}].where");
        let probed = self.probe_filter(&table, &expr).await?;
        let (stored, tree) = probed.map_err(|e| {
            let why = e
                .as_db_error()
                .map_or(e.to_string(), |d| d.message().to_owned());
            Error::config(
                &field,
                format!("PostgreSQL refuses {expr:?} as the row filter of {table}: {why}"),
            )
        })?;
        let columns = self.filter_columns(&table, &tree).await?;
        let identity = self.identity_columns(&table).await?;
        let outside: Vec<&String> = columns
            .iter()
            .filter(|c| identity.as_ref().is_some_and(|i| !i.contains(c)))
            .collect();
        if !outside.is_empty() {
            let names: Vec<&str> = outside.iter().map(|c| c.as_str()).collect();
            return Err(Error::config(
                field,
                format!(
                    "the filter reads {} of {table}, outside its replica identity: PostgreSQL would refuse every UPDATE and DELETE on {table} once the publication filters by it. Fix: ALTER TABLE {} REPLICA IDENTITY FULL (or make the identity an index covering {})",
                    names.join(", "),
                    table.quoted(),
                    names.join(", ")
                ),
            ));
        }
        Ok(Some(Filter {
            expr,
            stored,
            columns,
        }))
    }

    /// The columns a stored filter expression (`pg_node_tree` text) reads: its `VAR` nodes.
    async fn filter_columns(&self, table: &TableName, tree: &str) -> Result<Vec<String>, Error> {
        let mut attnums: Vec<i16> = tree
            .split(":varattno ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect();
        attnums.sort_unstable();
        attnums.dedup();
        let rows = self
            .client()
            .query(
                "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum = ANY($3) ORDER BY a.attnum",
                &[&table.schema, &table.name, &attnums],
            )
            .await
            .map_err(Error::pg(format!("columns of the row filter of {table}")))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The columns of the table's replica identity (`None`: every column, `REPLICA IDENTITY
    /// FULL`; empty: none).
    async fn identity_columns(&self, table: &TableName) -> Result<Option<Vec<String>>, Error> {
        let rows = self
            .client()
            .query(
                "SELECT c.relreplident::text, a.attname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_index i ON i.indrelid = c.oid \
                   AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END \
                 LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(Error::pg(format!("replica identity of {table}")))?;
        if rows.first().is_some_and(|r| r.get::<_, String>(0) == "f") {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .filter_map(|r| r.get::<_, Option<String>>(1))
                .collect(),
        ))
    }

    /// Each table of `publication` with its stored row filter (None: every row).
    pub async fn publication_filters(
        &self,
        publication: &str,
    ) -> Result<Vec<(TableName, Option<String>)>, Error> {
        let rows = self
            .client()
            .query(
                "SELECT schemaname::text, tablename::text, rowfilter FROM pg_publication_tables WHERE pubname = $1",
                &[&publication],
            )
            .await
            .map_err(Error::pg("row filters of the publication"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    TableName {
                        schema: r.get(0),
                        name: r.get(1),
                    },
                    r.get(2),
                )
            })
            .collect())
    }
}

impl Catalog {
    /// `check`'s lines for the tables with a `where`: valid, within the replica identity, and
    /// the same as the publication's filter when the publication exists.
    pub async fn check_filters(
        &self,
        source: &crate::config::SourceConfig,
        tables: &[crate::config::TableConfig],
    ) -> Vec<(bool, String, String)> {
        let publication = &source.publication;
        let present = self
            .publication_filters(publication)
            .await
            .unwrap_or_default();
        let mut out = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            if t.row_filter.is_none() {
                continue;
            }
            let table = TableName::parse(&t.table);
            let checked = match self.row_filter(i, t).await {
                Ok(Some(f)) => match present.iter().find(|(p, _)| *p == table) {
                    Some((_, have)) => matches(i, publication, &table, have.as_deref(), Some(&f))
                        .map(|()| (f, "the publication filters alike")),
                    None => Ok((f, "added to the publication at start")),
                },
                Ok(None) => continue,
                Err(e) => Err(e),
            };
            out.push(match checked {
                Ok((f, publication)) => (
                    true,
                    format!("tables[{i}] where"),
                    format!(
                        "rows of {table} with ({}); reads {} (in the replica identity); {publication}",
                        f.stored,
                        f.columns.join(", ")
                    ),
                ),
                Err(e) => (false, format!("tables[{i}] where"), e.to_string()),
            });
        }
        out
    }
}

/// `TABLE t WHERE (f)` / `t`: a table's entry in `CREATE`/`ALTER PUBLICATION`.
pub fn publication_entry(table: &TableName, filter: Option<&Filter>) -> String {
    match filter {
        Some(f) => format!("{} WHERE ({})", table.quoted(), f.expr),
        None => table.quoted(),
    }
}

/// Whether the publication's filter of a table (`present`) is the configured one: an error
/// naming the field, both filters and the way out when not.
pub fn matches(
    index: usize,
    publication: &str,
    table: &TableName,
    present: Option<&str>,
    want: Option<&Filter>,
) -> Result<(), Error> {
    if present == want.map(|f| f.stored.as_str()) {
        return Ok(());
    }
    let show = |f: Option<&str>| f.map_or("no filter (every row)".to_owned(), |f| format!("({f})"));
    let set = match want {
        Some(f) => format!(
            "ALTER PUBLICATION {} SET TABLE ... {} ... (listing every table of it)",
            quote_ident(publication),
            publication_entry(table, Some(f))
        ),
        None => format!(
            "ALTER PUBLICATION {} DROP TABLE {t}; ALTER PUBLICATION {} ADD TABLE {t}",
            quote_ident(publication),
            quote_ident(publication),
            t = table.quoted()
        ),
    };
    Err(Error::config(
        format!("tables[{index}].where"),
        format!(
            "publication {publication} filters {table} with {}, the config with {}: make them agree ({set}, or change where), then `pg2qdrant resync --table {table}` so the points follow the new filter",
            show(present),
            show(want.map(|f| f.stored.as_str()))
        ),
    ))
}
