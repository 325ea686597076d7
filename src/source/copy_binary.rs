//! A pure parser of `COPY ... TO STDOUT (FORMAT binary)` output: the 11-byte signature, flags
//! and header extension, then per tuple a field count and length-prefixed fields (-1: NULL),
//! ended by a field count of -1. Values come out as [`Datum::Binary`], the same form a binary
//! pgoutput stream carries, so copied rows map through the same decoders as streamed ones.
//! Random bytes give an error, never a panic (`fuzz/fuzz_targets/values.rs`).

use crate::event::{Column, Datum, Row};
use bytes::Bytes;
use std::sync::Arc;

pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
    if b.len() < n {
        return Err(format!(
            "binary COPY {what}: need {n} bytes, {} left",
            b.len()
        ));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn i32_at(b: &mut &[u8], what: &str) -> Result<i32, String> {
    Ok(i32::from_be_bytes(take(b, 4, what)?.try_into().expect("4")))
}

/// The rows of a binary COPY of `columns` (in that order). Values are slices of `whole`.
pub fn parse(whole: &Bytes, columns: &Arc<[Column]>) -> Result<Vec<Row>, String> {
    let mut b: &[u8] = whole;
    if take(&mut b, SIGNATURE.len(), "signature")? != SIGNATURE {
        return Err("binary COPY: bad signature".to_owned());
    }
    let flags = i32_at(&mut b, "flags")?;
    if flags & (1 << 16) != 0 {
        return Err("binary COPY: OIDs included (unsupported)".to_owned());
    }
    let ext = i32_at(&mut b, "header extension")?;
    take(
        &mut b,
        usize::try_from(ext).map_err(|_| "binary COPY: negative header extension")?,
        "header extension",
    )?;
    let mut rows = Vec::new();
    loop {
        let n = i16::from_be_bytes(take(&mut b, 2, "field count")?.try_into().expect("2"));
        if n == -1 {
            break;
        }
        if n as usize != columns.len() {
            return Err(format!(
                "binary COPY: a tuple has {n} fields, the table has {} columns",
                columns.len()
            ));
        }
        let mut values = Vec::with_capacity(columns.len());
        for _ in 0..n {
            let len = i32_at(&mut b, "field length")?;
            values.push(if len < 0 {
                Datum::Null
            } else {
                Datum::Binary(whole.slice_ref(take(&mut b, len as usize, "field")?))
            });
        }
        rows.push(Row {
            columns: columns.clone(),
            values,
        });
    }
    if !b.is_empty() {
        return Err(format!("binary COPY: {} bytes after the trailer", b.len()));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(n: usize) -> Arc<[Column]> {
        (0..n)
            .map(|i| Column {
                name: format!("c{i}"),
                type_oid: 23,
                type_modifier: -1,
                is_key: false,
            })
            .collect::<Vec<_>>()
            .into()
    }

    fn copy(tuples: &[Vec<Option<&[u8]>>]) -> Bytes {
        let mut b = SIGNATURE.to_vec();
        b.extend(0i32.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        for t in tuples {
            b.extend((t.len() as i16).to_be_bytes());
            for f in t {
                match f {
                    None => b.extend((-1i32).to_be_bytes()),
                    Some(v) => {
                        b.extend((v.len() as i32).to_be_bytes());
                        b.extend(*v);
                    }
                }
            }
        }
        b.extend((-1i16).to_be_bytes());
        b.into()
    }

    #[test]
    fn tuples_become_binary_rows() {
        let one = 1i32.to_be_bytes();
        let b = copy(&[vec![Some(&one), None], vec![Some(&[]), Some(&one)]]);
        let rows = parse(&b, &columns(2)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].values,
            vec![Datum::Binary(Bytes::copy_from_slice(&one)), Datum::Null]
        );
        assert_eq!(rows[1].values[0], Datum::Binary(Bytes::new()));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let one = 1i32.to_be_bytes();
        let b = copy(&[vec![Some(&one), None]]);
        for cut in 0..b.len() {
            assert!(parse(&b.slice(..cut), &columns(2)).is_err(), "cut at {cut}");
        }
        assert!(parse(&b, &columns(3)).is_err(), "field count checked");
    }
}
