//! PostgreSQL text-output values → JSON payload values and vectors. Pure functions.
//!
//! Choices (also in README "Mapping rules"):
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

use base64::Engine as _;
use serde_json::{Number, Value};

pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    pub const BOOL_ARRAY: u32 = 1000;
    pub const BYTEA_ARRAY: u32 = 1001;
    pub const INT2_ARRAY: u32 = 1005;
    pub const INT4_ARRAY: u32 = 1007;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const VARCHAR_ARRAY: u32 = 1015;
    pub const INT8_ARRAY: u32 = 1016;
    pub const FLOAT4_ARRAY: u32 = 1021;
    pub const FLOAT8_ARRAY: u32 = 1022;
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    pub const NUMERIC_ARRAY: u32 = 1231;
    pub const UUID_ARRAY: u32 = 2951;
    pub const JSONB_ARRAY: u32 = 3807;
    pub const JSON_ARRAY: u32 = 199;
    pub const INTERVAL: u32 = 1186;
    pub const INTERVAL_ARRAY: u32 = 1187;
}

/// A table's choices for its values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// numeric → the exact text instead of a number.
    pub numeric_string: bool,
}

/// The element type of an array type we know, if `type_oid` is one.
fn array_element(type_oid: u32) -> Option<u32> {
    use oid::*;
    Some(match type_oid {
        BOOL_ARRAY => BOOL,
        BYTEA_ARRAY => BYTEA,
        INT2_ARRAY => INT2,
        INT4_ARRAY => INT4,
        INT8_ARRAY => INT8,
        FLOAT4_ARRAY => FLOAT4,
        FLOAT8_ARRAY => FLOAT8,
        TIMESTAMP_ARRAY => TIMESTAMP,
        TIMESTAMPTZ_ARRAY => TIMESTAMPTZ,
        NUMERIC_ARRAY => NUMERIC,
        UUID_ARRAY => UUID,
        JSONB_ARRAY => JSONB,
        JSON_ARRAY => JSON,
        INTERVAL_ARRAY => INTERVAL,
        TEXT_ARRAY | VARCHAR_ARRAY => 25,
        _ => return None,
    })
}

/// Maps one non-null text value of type `type_oid` to JSON (default options).
pub fn to_json(type_oid: u32, text: &str) -> Result<Value, String> {
    to_json_with(type_oid, text, Options::default())
}

/// Maps one non-null text value of type `type_oid` to JSON.
pub fn to_json_with(type_oid: u32, text: &str, options: Options) -> Result<Value, String> {
    use oid::*;
    if let Some(elem) = array_element(type_oid) {
        let items = parse_array(text)?;
        return items
            .into_iter()
            .map(|item| match item {
                ArrayItem::Null => Ok(Value::Null),
                ArrayItem::Value(s) => to_json_with(elem, &s, options),
                ArrayItem::Nested(_) => {
                    Err("multi-dimensional arrays are not supported".to_owned())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    Ok(match type_oid {
        BOOL => Value::Bool(text == "t"),
        INT2 | INT4 | INT8 | OID => Value::Number(
            text.parse::<i64>()
                .map_err(|_| format!("{text:?} is not an integer"))?
                .into(),
        ),
        FLOAT4 | FLOAT8 => float(text)?,
        NUMERIC if options.numeric_string => Value::String(text.to_owned()),
        NUMERIC => numeric(text)?,
        INTERVAL => Value::String(iso_interval(text).unwrap_or_else(|| text.to_owned())),
        JSON | JSONB => serde_json::from_str(text).map_err(|e| format!("invalid json: {e}"))?,
        TIMESTAMP => Value::String(iso_timestamp(text)),
        TIMESTAMPTZ => Value::String(iso_timestamptz(text)?),
        BYTEA => Value::String(base64::engine::general_purpose::STANDARD.encode(bytea(text)?)),
        _ => Value::String(text.to_owned()),
    })
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
    let mut out = String::from("P");
    for (v, unit) in [(y, 'Y'), (mo, 'M'), (d, 'D')] {
        if v != 0 {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    if let Some((neg, h, m, s)) = time {
        let sign = if neg { "-" } else { "" };
        let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
        let whole: i64 = whole.parse().ok()?;
        let frac = frac.trim_end_matches('0');
        let mut t = String::new();
        if h != 0 {
            t.push_str(&format!("{sign}{h}H"));
        }
        if m != 0 {
            t.push_str(&format!("{sign}{m}M"));
        }
        if whole != 0 || !frac.is_empty() {
            let dot = if frac.is_empty() { "" } else { "." };
            t.push_str(&format!("{sign}{whole}{dot}{frac}S"));
        }
        if !t.is_empty() {
            out.push('T');
            out.push_str(&t);
        }
    }
    if out == "P" {
        out.push_str("T0S");
    }
    Some(out)
}

/// `2025-10-13 10:30:00[.123456]` → `2025-10-13T10:30:00[.123456]`.
pub fn iso_timestamp(text: &str) -> String {
    text.replacen(' ', "T", 1)
}

/// `2025-10-13 10:30:00+02` (any session time zone) → RFC 3339 in UTC.
fn iso_timestamptz(text: &str) -> Result<String, String> {
    parse_timestamptz(text).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn parse_timestamptz(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    // PostgreSQL prints offsets as +HH, +HH:MM or +HH:MM:SS; pad +HH to +HH:MM for chrono.
    let fixed = match text.rfind(['+', '-']) {
        Some(i) if i > 10 && text.len() - i == 3 => format!("{text}:00"),
        _ => text.to_owned(),
    };
    chrono::DateTime::parse_from_str(&fixed, "%Y-%m-%d %H:%M:%S%.f%:z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not a timestamp with time zone: {e}"))
}

/// Unix seconds of a timestamp (without time zone: read as UTC) or timestamptz text value.
pub fn unix_seconds(type_oid: u32, text: &str) -> Result<i64, String> {
    match type_oid {
        oid::TIMESTAMPTZ => parse_timestamptz(text).map(|t| t.timestamp()),
        oid::TIMESTAMP | 1082 => {
            let t = if text.len() == 10 {
                format!("{text} 00:00:00")
            } else {
                text.to_owned()
            };
            chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f")
                .map(|t| t.and_utc().timestamp())
                .map_err(|e| format!("{text:?} is not a timestamp: {e}"))
        }
        _ => Err(format!(
            "type oid {type_oid} is not a timestamp, timestamptz or date"
        )),
    }
}

fn bytea(text: &str) -> Result<Vec<u8>, String> {
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
            unix_seconds(oid::TIMESTAMP, "2023-10-13 10:30:00").unwrap(),
            1_697_193_000
        );
        assert_eq!(
            unix_seconds(oid::TIMESTAMP, "2023-10-13 10:30:00.5").unwrap(),
            1_697_193_000
        );
        assert_eq!(
            unix_seconds(oid::TIMESTAMPTZ, "2023-10-13 12:30:00+02").unwrap(),
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
            to_json_with(oid::NUMERIC, digits, opts).unwrap(),
            json!(digits)
        );
        assert_eq!(
            to_json_with(oid::NUMERIC_ARRAY, "{1.50,2}", opts).unwrap(),
            json!(["1.50", "2"])
        );
        assert!(to_json(oid::NUMERIC, digits).unwrap().is_number());
    }
}
