//! PostgreSQL text-output values → JSON payload values and vectors. Pure functions.
//!
//! Choices (also in docs/configuration.md, "Mapping rules"):
//! - integers → JSON integers; float4/float8 → numbers (NaN/±Infinity → strings, JSON has none);
//! - numeric → a JSON number: an integer when it has no fraction and fits i64, otherwise the
//!   nearest f64. Qdrant payload numbers are i64 or f64 anyway, and a number (not a string) is what
//!   range filters and numeric payload indexes need. Digits beyond f64 precision are lost; NaN and
//!   ±Infinity become strings;
//! - timestamp → ISO 8601 without offset (`2025-10-13T10:30:00`), timestamptz → RFC 3339 in UTC,
//!   date and time as PostgreSQL prints them;
//! - json/jsonb → nested JSON; arrays → JSON arrays of mapped elements; uuid → string;
//!   bytea → base64; interval → ISO 8601 duration (`P1Y2M3DT4H5M6S`, a component may be
//!   negative; the text form when it is not in IntervalStyle `postgres`); anything else → its
//!   text form;
//! - with `numeric = "string"` a numeric keeps its exact text (money).

use super::types::{Kind, Scalar, Types};
use base64::Engine as _;
use serde_json::{Number, Value};

/// A table's choices for its values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// numeric → the exact text instead of a number.
    pub numeric_string: bool,
}

/// Maps one non-null text value of a built-in type `type_oid` to JSON (default options).
pub fn to_json(type_oid: u32, text: &str) -> Result<Value, String> {
    to_json_with(Types::builtin().kind(type_oid), text, Options::default())
}

/// Maps one non-null text value of kind `kind` to JSON.
pub fn to_json_with(kind: Kind, text: &str, options: Options) -> Result<Value, String> {
    match kind {
        Kind::Scalar(s) => scalar_json(s, text, options),
        Kind::Array(elem) => parse_array(text)?
            .into_iter()
            .map(|item| match item {
                ArrayItem::Null => Ok(Value::Null),
                ArrayItem::Value(s) => scalar_json(elem, &s, options),
                ArrayItem::Nested(_) => Err(MULTI_DIMENSIONAL.to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Kind::Other => Ok(Value::String(text.to_owned())),
    }
}

pub const MULTI_DIMENSIONAL: &str = "multi-dimensional arrays are not supported";

/// One scalar in text form → JSON.
pub fn scalar_json(s: Scalar, text: &str, options: Options) -> Result<Value, String> {
    Ok(match s {
        Scalar::Bool => Value::Bool(text == "t"),
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 | Scalar::Oid => Value::Number(
            text.parse::<i64>()
                .map_err(|_| format!("{text:?} is not an integer"))?
                .into(),
        ),
        // float4 through its f32: PostgreSQL prints 8 digits where fewer would read back the
        // same (Ryu without accepting bounds), so the text's digits and a binary value's
        // shortest form can differ; their f32 cannot.
        Scalar::Float4 => f32_json(
            text.parse::<f32>()
                .map_err(|_| format!("{text:?} is not a number"))?,
        ),
        Scalar::Float8 => float(text)?,
        Scalar::Numeric if options.numeric_string => Value::String(text.to_owned()),
        Scalar::Numeric => numeric(text)?,
        Scalar::Interval => Value::String(iso_interval(text).unwrap_or_else(|| text.to_owned())),
        Scalar::Json | Scalar::Jsonb => {
            serde_json::from_str(text).map_err(|e| format!("invalid json: {e}"))?
        }
        Scalar::Timestamp => Value::String(iso_timestamp(text)),
        Scalar::TimestampTz => Value::String(iso_timestamptz(text)?),
        Scalar::Bytea => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytea(text)?))
        }
        Scalar::Vector | Scalar::HalfVec => {
            Value::Array(dense_elements(text)?.into_iter().map(f32_json).collect())
        }
        Scalar::SparseVec => {
            let (dim, indices, values) = super::sparsevec::parse(text)?;
            sparse_json(dim, &indices, &values)
        }
        Scalar::Text | Scalar::Uuid | Scalar::Date | Scalar::Time | Scalar::TimeTz => {
            Value::String(text.to_owned())
        }
    })
}

/// A pgvector sparse vector as a payload value: `{"dim", "indices" (from 0), "values"}`.
pub fn sparse_json(dim: u32, indices: &[u32], values: &[f32]) -> Value {
    serde_json::json!({
        "dim": dim,
        "indices": indices,
        "values": values.iter().map(|f| f32_json(*f)).collect::<Vec<_>>(),
    })
}

/// An f32 as the JSON number its shortest decimal form reads as (1.1, not 1.100000023841858),
/// the same from text and from binary. Ryu (the `ryu` crate) gives the shortest form with ties
/// to even, as PostgreSQL does; Rust's `Display` rounds ties up (-439238.625).
pub fn f32_json(f: f32) -> Value {
    if f.is_finite() {
        ryu::Buffer::new()
            .format_finite(f)
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number)
    } else {
        Value::String(non_finite(f64::from(f)).to_owned())
    }
}

/// PostgreSQL's spelling of a non-finite float.
pub fn non_finite(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// The elements of a pgvector `vector`/`halfvec` text form (`[1,2.5]`), any length.
fn dense_elements(text: &str) -> Result<Vec<f32>, String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| format!("{text:?} is not a vector [..]"))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f32>()
                .map_err(|_| format!("vector element {p:?} is not a number"))
        })
        .collect()
}

fn float(text: &str) -> Result<Value, String> {
    let f: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    Ok(Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(text.to_owned())))
}

fn numeric(text: &str) -> Result<Value, String> {
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Value::Number(i.into()));
    }
    if let Some((int, frac)) = text.split_once('.') {
        if frac.bytes().all(|b| b == b'0') {
            if let Ok(i) = int.parse::<i64>() {
                return Ok(Value::Number(i.into()));
            }
        }
    }
    float(text)
}

/// PostgreSQL's interval text (IntervalStyle `postgres`: `1 year 2 mons -3 days +04:05:06.5`)
/// → an ISO 8601 duration (`P1Y2M-3DT4H5M6.5S`; zero → `PT0S`). `None` for another form.
pub fn iso_interval(text: &str) -> Option<String> {
    let (mut y, mut mo, mut d) = (0i64, 0i64, 0i64);
    let mut time: Option<(bool, i64, i64, String)> = None;
    let mut tokens = text.split_whitespace();
    while let Some(t) = tokens.next() {
        if t.contains(':') {
            let (neg, rest) = match t.as_bytes().first()? {
                b'-' => (true, &t[1..]),
                b'+' => (false, &t[1..]),
                _ => (false, t),
            };
            let mut parts = rest.split(':');
            let h: i64 = parts.next()?.parse().ok()?;
            let m: i64 = parts.next()?.parse().ok()?;
            let s = parts.next()?;
            if parts.next().is_some()
                || s.is_empty()
                || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            {
                return None;
            }
            time = Some((neg, h, m, s.to_owned()));
            continue;
        }
        let n: i64 = t.parse().ok()?;
        match tokens.next()? {
            "year" | "years" => y = n,
            "mon" | "mons" => mo = n,
            "day" | "days" => d = n,
            _ => return None,
        }
    }
    let time = match &time {
        Some((neg, h, m, s)) => {
            let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
            Some((*neg, *h, *m, whole.parse().ok()?, frac))
        }
        None => None,
    };
    Some(iso_duration(y, mo, d, time))
}

/// An ISO 8601 duration from an interval's parts as PostgreSQL prints them: years, months, days,
/// and the time part (negative, hours, minutes, whole seconds, fraction digits).
pub fn iso_duration(y: i64, mo: i64, d: i64, time: Option<(bool, i64, i64, i64, &str)>) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("P");
    for (v, unit) in [(y, 'Y'), (mo, 'M'), (d, 'D')] {
        if v != 0 {
            let _ = write!(out, "{v}{unit}");
        }
    }
    if let Some((neg, h, m, whole, frac)) = time {
        let sign = if neg { "-" } else { "" };
        let frac = frac.trim_end_matches('0');
        let mut t = String::new();
        if h != 0 {
            let _ = write!(t, "{sign}{h}H");
        }
        if m != 0 {
            let _ = write!(t, "{sign}{m}M");
        }
        if whole != 0 || !frac.is_empty() {
            let dot = if frac.is_empty() { "" } else { "." };
            let _ = write!(t, "{sign}{whole}{dot}{frac}S");
        }
        if !t.is_empty() {
            out.push('T');
            out.push_str(&t);
        }
    }
    if out == "P" {
        out.push_str("T0S");
    }
    out
}

/// `2025-10-13 10:30:00[.123456]` → `2025-10-13T10:30:00[.123456]`.
pub fn iso_timestamp(text: &str) -> String {
    text.replacen(' ', "T", 1)
}

/// `2025-10-13 10:30:00+02` (any session time zone) → RFC 3339 in UTC; `infinity` stays.
fn iso_timestamptz(text: &str) -> Result<String, String> {
    if text == "infinity" || text == "-infinity" {
        return Ok(text.to_owned());
    }
    parse_timestamptz(text).map(|t| rfc3339(&t))
}

/// How a timestamptz is written into the payload (both formats).
pub fn rfc3339(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn parse_timestamptz(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::Datelike as _;
    let bad = |why: &str| format!("{text:?} is not a timestamp with time zone: {why}");
    let (text_ad, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    // The offset: +HH, +HH:MM or +HH:MM:SS (local mean time offsets have seconds).
    let at = text_ad
        .rfind(['+', '-'])
        .filter(|&i| i > 10)
        .ok_or_else(|| bad("no offset"))?;
    let (local, offset) = text_ad.split_at(at);
    let mut secs = 0i64;
    for (i, part) in offset[1..].split(':').enumerate() {
        let v: i64 = part.parse().map_err(|_| bad("offset"))?;
        if !(0..100).contains(&v) {
            return Err(bad("offset"));
        }
        secs += v * [3600, 60, 1].get(i).ok_or_else(|| bad("offset"))?;
    }
    if offset.starts_with('-') {
        secs = -secs;
    }
    let naive = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|e| bad(&e.to_string()))?;
    let naive = if bc {
        // Year N BC is year 1 - N.
        naive
            .with_year(1 - naive.year())
            .ok_or_else(|| bad("out of range"))?
    } else {
        naive
    };
    naive
        .checked_sub_signed(chrono::TimeDelta::seconds(secs))
        .map(|t| t.and_utc())
        .ok_or_else(|| bad("out of range"))
}

/// Unix seconds of a timestamp (without time zone: read as UTC), timestamptz or date text value.
pub fn unix_seconds(kind: Kind, text: &str) -> Result<i64, String> {
    unix_micros(kind, text).map(|m| m.div_euclid(1_000_000))
}

/// Unix microseconds of a timestamp (without time zone: read as UTC), timestamptz or date text
/// value.
pub fn unix_micros(kind: Kind, text: &str) -> Result<i64, String> {
    match kind {
        Kind::Scalar(Scalar::TimestampTz) => parse_timestamptz(text).map(|t| t.timestamp_micros()),
        Kind::Scalar(Scalar::Timestamp | Scalar::Date) => {
            use chrono::Datelike as _;
            let (ad, bc) = match text.strip_suffix(" BC") {
                Some(t) => (t, true),
                None => (text, false),
            };
            let t = if ad.len() == 10 {
                format!("{ad} 00:00:00")
            } else {
                ad.to_owned()
            };
            let naive = chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| format!("{text:?} is not a timestamp: {e}"))?;
            // Year n BC is astronomical year 1 - n.
            let naive = if bc {
                naive
                    .with_year(1 - naive.year())
                    .ok_or_else(|| format!("{text:?} is out of range"))?
            } else {
                naive
            };
            Ok(naive.and_utc().timestamp_micros())
        }
        _ => Err("the column is not a timestamp, timestamptz or date".to_owned()),
    }
}

/// bytea's hex text output as bytes.
pub fn bytea(text: &str) -> Result<Vec<u8>, String> {
    let hex = text
        .strip_prefix("\\x")
        .ok_or("bytea is not in hex output format (set bytea_output = hex)")?;
    if hex.len() % 2 != 0 {
        return Err("bytea hex has an odd length".to_owned());
    }
    // Bytes, not str slices: a multi-byte character must be an error, not a panic (found by the
    // `values` fuzz target).
    let digit = |b: u8| {
        (b as char)
            .to_digit(16)
            .ok_or_else(|| "bytea hex has a non-hex digit".to_owned())
    };
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Ok((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

#[derive(Debug, PartialEq)]
pub enum ArrayItem {
    Null,
    Value(String),
    Nested(Vec<ArrayItem>),
}

/// Parses PostgreSQL's array text form `{a,"b c",NULL,{1,2}}` (an optional `[l:u]=` dimension
/// prefix is skipped).
pub fn parse_array(text: &str) -> Result<Vec<ArrayItem>, String> {
    let text = match text.find("={") {
        Some(i) if text.starts_with('[') => &text[i + 1..],
        _ => text,
    };
    let bytes = text.as_bytes();
    let mut pos = 0;
    let items = parse_array_at(bytes, &mut pos)?;
    if pos != bytes.len() {
        return Err("trailing characters after array".to_owned());
    }
    Ok(items)
}

fn parse_array_at(b: &[u8], pos: &mut usize) -> Result<Vec<ArrayItem>, String> {
    if b.get(*pos) != Some(&b'{') {
        return Err("array does not start with '{'".to_owned());
    }
    *pos += 1;
    let mut items = Vec::new();
    if b.get(*pos) == Some(&b'}') {
        *pos += 1;
        return Ok(items);
    }
    loop {
        match b.get(*pos) {
            None => return Err("unterminated array".to_owned()),
            Some(b'{') => items.push(ArrayItem::Nested(parse_array_at(b, pos)?)),
            Some(b'"') => {
                *pos += 1;
                let mut s = Vec::new();
                loop {
                    match b.get(*pos) {
                        None => return Err("unterminated quoted array element".to_owned()),
                        Some(b'\\') => {
                            s.push(*b.get(*pos + 1).ok_or("dangling escape in array")?);
                            *pos += 2;
                        }
                        Some(b'"') => {
                            *pos += 1;
                            break;
                        }
                        Some(&c) => {
                            s.push(c);
                            *pos += 1;
                        }
                    }
                }
                items.push(ArrayItem::Value(
                    String::from_utf8(s).map_err(|_| "invalid UTF-8 in array")?,
                ));
            }
            Some(_) => {
                let start = *pos;
                while let Some(&c) = b.get(*pos) {
                    if c == b',' || c == b'}' {
                        break;
                    }
                    *pos += 1;
                }
                let raw = std::str::from_utf8(&b[start..*pos])
                    .map_err(|_| "invalid UTF-8 in array")?
                    .trim();
                items.push(if raw.eq_ignore_ascii_case("NULL") {
                    ArrayItem::Null
                } else {
                    ArrayItem::Value(raw.to_owned())
                });
            }
        }
        match b.get(*pos) {
            Some(b',') => *pos += 1,
            Some(b'}') => {
                *pos += 1;
                return Ok(items);
            }
            _ => return Err("expected ',' or '}' in array".to_owned()),
        }
    }
}

/// Parses a vector from real[]/float8[] (`{1,2,3}`), pgvector (`[1,2,3]`) or a jsonb number array
/// (`[1, 2.5, 3]`). Checks the length and that every element is a finite number.
pub fn parse_vector(text: &str, expected_len: usize) -> Result<Vec<f32>, String> {
    let t = text.trim();
    // Fast path: a flat array of plain numbers (what real[]/float8[]/pgvector print), no
    // allocation per element.
    if let Some(inner) = t
        .strip_prefix(['{', '['])
        .and_then(|s| s.strip_suffix(['}', ']']))
    {
        if !inner.contains(['"', '{', '[', 'N', 'n', 'I', 'i']) && !inner.trim().is_empty() {
            let mut out = Vec::with_capacity(expected_len);
            for (i, p) in inner.split(',').enumerate() {
                let p = p.trim();
                let f: f32 = p
                    .parse()
                    .map_err(|_| format!("vector element {i} ({p:?}) is not a number"))?;
                if !f.is_finite() {
                    return Err(format!("vector element {i} is {p} (not finite as f32)"));
                }
                out.push(f);
            }
            if out.len() != expected_len {
                return Err(format!(
                    "vector has {} dimensions, the collection expects {expected_len}",
                    out.len()
                ));
            }
            return Ok(out);
        }
    }
    let parts: Vec<String> = if t.starts_with('{') {
        parse_array(t)?
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                ArrayItem::Value(s) => Ok(s),
                ArrayItem::Null => Err(format!("vector element {i} is NULL")),
                ArrayItem::Nested(_) => Err("vector is a multi-dimensional array".to_owned()),
            })
            .collect::<Result<_, _>>()?
    } else if let Some(inner) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        if inner.trim().is_empty() {
            Vec::new()
        } else {
            inner.split(',').map(|s| s.trim().to_owned()).collect()
        }
    } else {
        return Err("vector is neither an array {..} nor [..]".to_owned());
    };
    if parts.len() != expected_len {
        return Err(format!(
            "vector has {} dimensions, the collection expects {expected_len}",
            parts.len()
        ));
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f: f32 = p
                .parse()
                .map_err(|_| format!("vector element {i} ({p:?}) is not a number"))?;
            if f.is_finite() {
                Ok(f)
            } else {
                Err(format!("vector element {i} is {p} (not finite)"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::oid;
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_map_to_json() {
        assert_eq!(to_json(oid::INT8, "42").unwrap(), json!(42));
        assert_eq!(to_json(oid::BOOL, "t").unwrap(), json!(true));
        assert_eq!(to_json(oid::NUMERIC, "12.50").unwrap(), json!(12.5));
        assert_eq!(to_json(oid::NUMERIC, "7.000").unwrap(), json!(7));
        assert_eq!(to_json(oid::NUMERIC, "NaN").unwrap(), json!("NaN"));
        assert_eq!(to_json(oid::FLOAT8, "Infinity").unwrap(), json!("Infinity"));
        assert_eq!(
            to_json(oid::JSONB, r#"{"a": [1, 2]}"#).unwrap(),
            json!({"a": [1, 2]})
        );
        assert_eq!(to_json(oid::BYTEA, "\\x0001ff").unwrap(), json!("AAH/"));
        assert!(
            to_json(oid::BYTEA, "\\x*\u{140}").is_err(),
            "multi-byte input is an error, not a panic"
        );
        assert_eq!(
            to_json(oid::TIMESTAMP, "2025-10-13 10:30:00").unwrap(),
            json!("2025-10-13T10:30:00")
        );
        assert_eq!(
            to_json(oid::TIMESTAMPTZ, "2025-10-13 12:30:00+02").unwrap(),
            json!("2025-10-13T10:30:00Z")
        );
        assert_eq!(to_json(25, "hi").unwrap(), json!("hi"));
    }

    #[test]
    fn arrays_map_elementwise() {
        assert_eq!(
            to_json(oid::INT4_ARRAY, "{1,NULL,3}").unwrap(),
            json!([1, null, 3])
        );
        assert_eq!(
            to_json(oid::TEXT_ARRAY, r#"{"a b","c\"d",e}"#).unwrap(),
            json!(["a b", "c\"d", "e"])
        );
        assert_eq!(to_json(oid::TEXT_ARRAY, "{}").unwrap(), json!([]));
    }

    #[test]
    fn unix_seconds_of_timestamps() {
        assert_eq!(
            unix_seconds(Kind::Scalar(Scalar::Timestamp), "2023-10-13 10:30:00").unwrap(),
            1_697_193_000
        );
        assert_eq!(
            unix_seconds(Kind::Scalar(Scalar::Timestamp), "2023-10-13 10:30:00.5").unwrap(),
            1_697_193_000
        );
        assert_eq!(
            unix_seconds(Kind::Scalar(Scalar::TimestampTz), "2023-10-13 12:30:00+02").unwrap(),
            1_697_193_000
        );
    }

    #[test]
    fn vectors_in_every_form() {
        assert_eq!(parse_vector("{1,2.5,-3}", 3).unwrap(), vec![1.0, 2.5, -3.0]);
        assert_eq!(parse_vector("[1,2.5,-3]", 3).unwrap(), vec![1.0, 2.5, -3.0]);
        assert_eq!(
            parse_vector("[1, 2.5, -3]", 3).unwrap(),
            vec![1.0, 2.5, -3.0]
        );
        assert!(parse_vector("{1,2}", 3)
            .unwrap_err()
            .contains("2 dimensions"));
        assert!(parse_vector("{1,NaN,3}", 3)
            .unwrap_err()
            .contains("not finite"));
        assert!(parse_vector("{1,NULL,3}", 3).unwrap_err().contains("NULL"));
        assert!(parse_vector("{1,x,3}", 3)
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn intervals_become_iso_8601_durations() {
        for (pg, iso) in [
            ("1 year 2 mons 3 days 04:05:06", "P1Y2M3DT4H5M6S"),
            ("-1 days +02:03:00", "P-1DT2H3M"),
            ("00:00:00", "PT0S"),
            ("-00:00:01.250", "PT-1.25S"),
            ("3 days", "P3D"),
            ("1 year", "P1Y"),
        ] {
            assert_eq!(iso_interval(pg).as_deref(), Some(iso), "{pg}");
        }
        assert_eq!(iso_interval("@ 1 year"), None);
        assert_eq!(
            to_json(oid::INTERVAL, "@ 1 year ago").unwrap(),
            json!("@ 1 year ago"),
            "another IntervalStyle keeps its text"
        );
        assert_eq!(
            to_json(oid::INTERVAL_ARRAY, "{\"1 day\",NULL}").unwrap(),
            json!(["P1D", null])
        );
    }

    #[test]
    fn numeric_as_string_keeps_every_digit() {
        let digits = "12345678901234567890.123456789";
        let opts = Options {
            numeric_string: true,
        };
        assert_eq!(
            to_json_with(Kind::Scalar(Scalar::Numeric), digits, opts).unwrap(),
            json!(digits)
        );
        assert_eq!(
            to_json_with(Kind::Array(Scalar::Numeric), "{1.50,2}", opts).unwrap(),
            json!(["1.50", "2"])
        );
        assert!(to_json(oid::NUMERIC, digits).unwrap().is_number());
    }
}
