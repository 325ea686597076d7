//! Which form column values travel in (`source.format`), chosen once per connection.
//!
//! Binary saves the walsender its output functions (`float4out` on every element of a vector is
//! most of its CPU on embedding tables) and us the parsing. It is only chosen where it maps to
//! exactly the same payload and point ids as text: every column of every watched table must have
//! a binary decoder (`mapping::types`), and key columns must be of a type whose binary form we
//! can print exactly as PostgreSQL does (ids of composite and text keys hash the text). pgoutput
//! has the `binary` option from PostgreSQL 14 on.
//!
//! A column added later with a type we cannot decode arrives in a Relation message; on a binary
//! stream the assembler then stops with [`Error::TextNeeded`] and, under `auto`, the loop
//! reconnects in text from the durable position (nothing is lost: the slot was not advanced past
//! it). Under `binary` that is an error naming the column and the fix.

use super::catalog::Catalog;
use crate::config::Format;
use crate::error::Error;
use crate::mapping::TableMapping;

/// PostgreSQL's first version whose pgoutput has the `binary` option.
const BINARY_SINCE: u32 = 140_000;

/// The first column of `mapping`'s table that keeps its values in text, with the reason.
pub fn blocker(
    mapping: &TableMapping,
    columns: &[crate::event::Column],
) -> Option<(String, u32, &'static str)> {
    mapping
        .types()
        .binary_blocker(
            columns
                .iter()
                .map(|c| (c.name.as_str(), c.type_oid, mapping.key.contains(&c.name))),
        )
        .map(|(name, oid, why)| (name.to_owned(), oid, why))
}

/// Decides the format for `mappings` under `mode`: `true` for binary.
pub async fn choose<'a>(
    catalog: &Catalog,
    mode: Format,
    mappings: impl IntoIterator<Item = &'a TableMapping>,
) -> Result<bool, Error> {
    if mode == Format::Text {
        return Ok(false);
    }
    let version = catalog.server_version_num().await?;
    if version < BINARY_SINCE {
        if mode == Format::Binary {
            return Err(Error::config(
                "source.format",
                format!("binary needs PostgreSQL 14 or newer (the server is {version}); use \"auto\" or \"text\""),
            ));
        }
        tracing::info!(
            server_version_num = version,
            "values travel as text: pgoutput has no binary option before PostgreSQL 14"
        );
        return Ok(false);
    }
    for m in mappings {
        let layout = catalog.layout(&m.table, &m.key).await?;
        let Some((column, type_oid, why)) = blocker(m, &layout.columns) else {
            continue;
        };
        let type_name = catalog.type_name(type_oid).await?;
        if mode == Format::Binary {
            return Err(Error::config(
                "source.format",
                format!(
                    "binary: column {column:?} of {} (type {type_name}) {why}; use \"auto\" (text for this stream) or \"text\"",
                    m.table
                ),
            ));
        }
        tracing::info!(table = %m.table, column = %column, r#type = %type_name, "values travel as text: column {column:?} of {} (type {type_name}) {why}", m.table);
        return Ok(false);
    }
    Ok(true)
}
