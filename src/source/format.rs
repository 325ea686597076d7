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

/// Decides the format for `mappings` under `mode` and logs why text was chosen: `true` for
/// binary.
pub async fn choose<'a>(
    catalog: &Catalog,
    mode: Format,
    mappings: impl IntoIterator<Item = &'a TableMapping>,
) -> Result<bool, Error> {
    let (binary, why) = decide(catalog, mode, mappings).await?;
    if let Some(why) = why {
        tracing::info!("values travel as text: {why}");
    }
    Ok(binary)
}

/// `(binary, why text)`; an error when `mode` is binary and a column cannot be.
pub async fn decide<'a>(
    catalog: &Catalog,
    mode: Format,
    mappings: impl IntoIterator<Item = &'a TableMapping>,
) -> Result<(bool, Option<String>), Error> {
    if mode == Format::Text {
        return Ok((false, Some("source.format = \"text\"".to_owned())));
    }
    let version = catalog.server_version_num().await?;
    if version < BINARY_SINCE {
        if mode == Format::Binary {
            return Err(Error::config(
                "source.format",
                format!("binary needs PostgreSQL 14 or newer (the server is {version}); use \"auto\" or \"text\""),
            ));
        }
        return Ok((
            false,
            Some(format!(
                "pgoutput has no binary option before PostgreSQL 14 (server_version_num {version})"
            )),
        ));
    }
    for m in mappings {
        let layout = catalog.layout(&m.table, &m.key).await?;
        let Some((column, type_oid, why)) = blocker(m, &layout.columns) else {
            continue;
        };
        let type_name = catalog.type_name(type_oid).await?;
        let what = format!("column {column:?} of {} (type {type_name}) {why}", m.table);
        if mode == Format::Binary {
            return Err(Error::config(
                "source.format",
                format!("binary: {what}; use \"auto\" (text for this stream) or \"text\""),
            ));
        }
        return Ok((false, Some(what)));
    }
    Ok((true, None))
}
