//! A partial resync's condition (`pg2qdrant resync --table T --where "<condition>"`): one
//! boolean expression over the table's columns, checked before it reaches a query.
//!
//! # Why it cannot run anything else
//!
//! The condition is pasted into the copy's chunk reads as `... AND (<condition>)`, and those
//! run through the simple query protocol (several statements in one round trip). So it is
//! checked twice before the request is sent:
//!
//! 1. **Its shape, here, without a server** ([`check`]): outside string literals and quoted
//!    identifiers it holds no `;` and no comment, and its parentheses balance without ever
//!    closing one it did not open. Pasted inside `( … )`, such a text cannot end the
//!    parenthesis, the `WHERE` or the statement: whatever it is, it stays one expression.
//!    Dollar quoting is refused (its ends are not found without a full lexer); `'…'` literals
//!    say the same.
//! 2. **Its meaning, by PostgreSQL** ([`Catalog::matching_rows`]): `SELECT count(*) FROM T WHERE
//!    (<filter>) AND (<condition>)` is prepared through the extended protocol (which takes one
//!    statement only) and run. A syntax error, an unknown column or a value that is not a
//!    boolean is refused with PostgreSQL's own words; the count is what the command reports.

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
                .is_some_and(|c| *c == b'$' || c.is_ascii_alphabetic() || *c == b'_')
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
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'$')
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
    /// The rows of `table` matching `filter` (the table's row filter) and `condition`, counted
    /// by PostgreSQL; refuses a condition that is not one boolean expression over its columns,
    /// naming it and why.
    pub async fn matching_rows(
        &self,
        table: &TableName,
        filter: Option<&str>,
        condition: &str,
    ) -> Result<u64, Error> {
        let refused =
            |why: String| Error::config("--where", format!("{condition:?} on {table}: {why}"));
        check(condition).map_err(refused)?;
        let and_filter = filter.map(|f| format!(" AND ({f})")).unwrap_or_default();
        let sql = format!(
            "SELECT count(*) FROM {} WHERE ({condition}){and_filter}",
            table.quoted()
        );
        let counted = async {
            let statement = self.client().prepare(&sql).await?;
            self.client().query_one(&statement, &[]).await
        }
        .await;
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
        ] {
            let err = check(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
