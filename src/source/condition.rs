//! A partial resync's condition (`pg2qdrant resync --table T --where "<condition>"`): one
//! boolean expression over the table's columns, checked before it reaches a query.
//!
//! # Why it cannot run anything else
//!
//! The condition is pasted into the copy's chunk reads as `... AND (<condition>)`, and those
//! run through the simple query protocol (several statements in one round trip). And it reaches
//! the connector through the WAL (`source::control`), where any role that may connect can write
//! (`pg_logical_emit_message` is executable by PUBLIC): the connector cannot trust that a
//! request came from `pg2qdrant resync`. So a condition is checked where it is given and again
//! where it is used (the copy's plan, `snapshot::worker`), three ways:
//!
//! 1. **Its shape, here, without a server** ([`check`]): outside string literals and quoted
//!    identifiers it holds no `;` and no comment, and its parentheses balance without ever
//!    closing one it did not open. Pasted inside `( … )`, such a text cannot end the
//!    parenthesis, the `WHERE` or the statement. Dollar quoting is refused (its ends are not
//!    found without a full lexer); `'…'` literals say the same. A byte of a multibyte character
//!    counts as an identifier character (PostgreSQL's lexer takes them in identifiers).
//! 2. **What it may call, by PostgreSQL** ([`Catalog::allowed_condition`]): it must be what a
//!    publication's row filter may be (a probe publication is created with it in a transaction
//!    that is rolled back, `source::filter`): the table's columns, constants, and immutable
//!    built-in functions and operators. No subquery, no user-defined or volatile function
//!    (`now()`, `pg_sleep`, `dblink` …): nothing a condition runs has an effect.
//! 3. **Its meaning, by PostgreSQL** ([`Catalog::matching_rows`], the command only): `SELECT
//!    count(*) FROM T WHERE (<condition>) AND (<filter>)` is prepared (one statement only) and
//!    run in a read-only transaction with the copy's session settings (the same `DateStyle` …
//!    as the chunk reads); a value that is not a boolean is refused there; the count is what the
//!    command reports.

use super::catalog::Catalog;
use crate::error::Error;
use crate::event::TableName;

/// Checks the condition's shape (see the module doc); the error says what is wrong, in words
/// a user can act on.
pub fn check(condition: &str) -> Result<(), String> {
    if condition.trim().is_empty() {
        return Err("the condition is empty: give one boolean expression, e.g. --where \"customer_id = 42\"".into());
    }
    let b = condition.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            // 'literal' ('' inside), E'…' also takes backslash escapes.
            b'\'' => {
                let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E') && !ident_before(b, i - 1);
                i = closing(b, i, b'\'', escapes).ok_or("a string literal ('…') is not closed")?;
            }
            b'"' => {
                i = closing(b, i, b'"', false)
                    .ok_or("a quoted identifier (\"…\") is not closed")?;
            }
            b'$' if b
                .get(i + 1)
                .is_some_and(|c| *c == b'$' || (ident_byte(*c) && !c.is_ascii_digit()))
                && !ident_before(b, i) =>
            {
                return Err("dollar quoting ($$…$$) is not taken here: write the string as '…' (double a ' inside it)".into());
            }
            b';' => {
                return Err(
                    "a `;` ends a statement: give one boolean expression, without `;`".into(),
                );
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                return Err("a comment (--) is not taken: give the expression alone".into());
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                return Err("a comment (/* */) is not taken: give the expression alone".into());
            }
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1).ok_or(
                    "a `)` closes a parenthesis the condition did not open: give one expression",
                )?;
            }
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return Err(format!("{depth} parenthesis not closed"));
    }
    Ok(())
}

/// Whether the byte before `i` continues an identifier (`name'…'` is not a literal prefix, and
/// `a$b` is an identifier, not a dollar quote).
fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && ident_byte(b[i - 1])
}

/// A byte PostgreSQL's lexer may take inside an identifier (any byte of a multibyte character).
fn ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The index of the quote closing the one at `open` (a doubled quote is one character of the
/// text; with `escapes`, so is a backslash and what follows it).
fn closing(b: &[u8], open: usize, quote: u8, escapes: bool) -> Option<usize> {
    let mut i = open + 1;
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

impl Catalog {
    /// Whether `condition` may select the rows of a copy of `table` (rules 1 and 2 of the module
    /// doc): `Ok(Err(why))` when it may not. The outer error is the connection's.
    pub async fn allowed_condition(
        &self,
        table: &TableName,
        condition: &str,
    ) -> Result<Result<(), String>, Error> {
        if let Err(why) = check(condition) {
            return Ok(Err(why));
        }
        Ok(self.probe_filter(table, condition).await?.map(drop).map_err(|e| {
            let why = e.as_db_error().map_or(e.to_string(), |d| match d.detail() {
                Some(detail) => format!("{}: {detail}", d.message()),
                None => d.message().to_owned(),
            });
            format!(
                "PostgreSQL refuses it: {why} (a condition may use what a publication row filter may: the table's columns, constants, immutable built-in functions and operators; no subquery, no user-defined function, no now(): write a literal, e.g. created_at >= '2026-12-01')"
            )
        }))
    }

    /// The rows of `table` matching `filter` (the table's row filter) and `condition`, counted
    /// by PostgreSQL (rule 3 of the module doc); refuses a condition that is not one boolean
    /// expression over its columns, naming it and why.
    pub async fn matching_rows(
        &self,
        table: &TableName,
        filter: Option<&str>,
        condition: &str,
    ) -> Result<u64, Error> {
        let refused =
            |why: String| Error::config("--where", format!("{condition:?} on {table}: {why}"));
        self.allowed_condition(table, condition)
            .await?
            .map_err(refused)?;
        self.set_copy_session().await?;
        let and_filter = filter.map(|f| format!(" AND ({f})")).unwrap_or_default();
        let sql = format!(
            "SELECT count(*) FROM {} WHERE ({condition}){and_filter}",
            table.quoted()
        );
        let client = self.client();
        client
            .batch_execute("BEGIN READ ONLY")
            .await
            .map_err(Error::pg("count the matching rows"))?;
        let counted = async {
            let statement = client.prepare(&sql).await?;
            client.query_one(&statement, &[]).await
        }
        .await;
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(Error::pg("count the matching rows"))?;
        match counted {
            Ok(row) => Ok(row.get::<_, i64>(0) as u64),
            Err(e) => match e.as_db_error() {
                Some(d) => Err(refused(format!(
                    "PostgreSQL refuses it: {} (give one boolean expression over the table's columns, e.g. --where \"created_at >= '2026-12-01'\")",
                    d.message()
                ))),
                None => Err(Error::pg(format!("counting the rows of {table} matching --where"))(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn takes_one_expression() {
        for ok in [
            "n < 100",
            "title = 'a;b' AND n > 2",
            "title = 'it''s -- not a comment'",
            "\"we;ird\" IS NOT NULL",
            "(a OR b) AND (c)",
            "title = E'x\\'; y'",
            "n IN (SELECT 1)",
            "a$b = 1",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_could_leave_the_parenthesis() {
        for (bad, says) in [
            ("", "empty"),
            ("   ", "empty"),
            ("true; DROP TABLE docs", "`;`"),
            ("true) OR (true", "did not open"),
            ("true) UNION SELECT 1 --", "did not open"),
            ("(true", "not closed"),
            ("true -- and more", "comment"),
            ("true /* x */", "comment"),
            ("title = 'open", "literal"),
            ("\"open", "identifier"),
            ("title = $$x$$", "dollar"),
            ("title = $q$x$q$", "dollar"),
            ("title = 'a' || E'\\'", "literal"),
            // A dollar tag of a multibyte character is a dollar quote too.
            ("x = $é$'$é$) ; SELECT 1 ; SELECT (1 --'", "dollar"),
        ] {
            let err = check(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
