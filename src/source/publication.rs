//! The publication: created with each table's row filter, or checked against the config
//! (tables covered, filters equal) and extended with the tables added to it.

use super::catalog::{Catalog, CheckLine};
use super::filter::{matches, publication_entry, Filter};
use crate::error::Error;
use crate::event::{quote_ident, TableName};

impl Catalog {
    /// Creates the publication for `tables` (each with its row filter, see `filter`) when
    /// missing (if allowed); otherwise checks that it covers them with the same filters, adding
    /// the missing ones (if allowed).
    pub async fn ensure_publication(
        &self,
        publication: &str,
        tables: &[(TableName, Option<Filter>)],
        create: bool,
    ) -> Result<(), Error> {
        let entries = |list: &[&(TableName, Option<Filter>)]| -> String {
            list.iter()
                .map(|(t, f)| publication_entry(t, f.as_ref()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.publication_tables(publication).await? {
            None if create => {
                let all: Vec<_> = tables.iter().collect();
                let sql = format!("CREATE PUBLICATION {} FOR TABLE {}", quote_ident(publication), entries(&all));
                // One statement (extended protocol): a filter's text cannot add statements.
                self.client().execute(&sql, &[]).await.map_err(Error::pg("create publication"))?;
                tracing::info!(publication, tables = all.len(), "created publication");
                Ok(())
            }
            None => Err(Error::prerequisite(
                format!("source.publication: publication {publication} does not exist"),
                "create it (CREATE PUBLICATION .. FOR TABLE ..) or set source.create_publication = true",
            )),
            Some(present) => {
                let filters = self.publication_filters(publication).await?;
                for (i, (t, want)) in tables.iter().enumerate() {
                    if let Some((_, have)) = filters.iter().find(|(p, _)| p == t) {
                        matches(i, publication, t, have.as_deref(), want.as_ref())?;
                    }
                }
                let missing: Vec<&(TableName, Option<Filter>)> =
                    tables.iter().filter(|(t, _)| !present.contains(t)).collect();
                if missing.is_empty() {
                    Ok(())
                } else if create {
                    // A table added to the config: its changes stream from this commit on, and
                    // its existing rows are copied.
                    let sql = format!("ALTER PUBLICATION {} ADD TABLE {}", quote_ident(publication), entries(&missing));
                    self.client().execute(&sql, &[]).await.map_err(Error::pg("extend publication"))?;
                    tracing::info!(publication, tables = %entries(&missing), "added tables to the publication");
                    Ok(())
                } else {
                    let names: Vec<String> = missing.iter().map(|(t, _)| t.to_string()).collect();
                    Err(Error::prerequisite(
                        format!("source.publication: publication {publication} does not include {}", names.join(", ")),
                        format!("run ALTER PUBLICATION {publication} ADD TABLE {}", entries(&missing)),
                    ))
                }
            }
        }
    }

    /// `check`'s lines for the publication: it exists (or will be created), covers every
    /// table, and filters each as configured.
    pub async fn check_publication(
        &self,
        source: &crate::config::SourceConfig,
        tables: &[crate::config::TableConfig],
    ) -> Vec<CheckLine> {
        let mut lines = Vec::new();
        let mut line =
            |ok: bool, what: String, detail: String| lines.push(CheckLine { ok, what, detail });
        let names: Vec<TableName> = tables.iter().map(|t| TableName::parse(&t.table)).collect();
        let publication = &source.publication;
        match self.publication_tables(publication).await {
            Ok(None) if source.create_publication => line(
                true,
                format!("publication {publication}"),
                "missing; will be created at start".into(),
            ),
            Ok(None) => line(
                false,
                format!("publication {publication}"),
                "missing and source.create_publication = false".into(),
            ),
            Ok(Some(present)) => {
                let missing: Vec<String> = names
                    .iter()
                    .filter(|t| !present.contains(t))
                    .map(|t| t.to_string())
                    .collect();
                if missing.is_empty() {
                    line(
                        true,
                        format!("publication {publication}"),
                        "covers every table".into(),
                    )
                } else {
                    line(
                        false,
                        format!("publication {publication}"),
                        format!("does not include {}", missing.join(", ")),
                    )
                }
            }
            Err(e) => line(false, format!("publication {publication}"), e.to_string()),
        }
        for (ok, what, detail) in self.check_filters(source, tables).await {
            line(ok, what, detail);
        }
        lines
    }
}
