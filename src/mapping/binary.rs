//! PostgreSQL binary (send/recv) values → the same JSON payload values and vectors as their text
//! forms give (`value`). Pure functions, fuzzed with random bytes (`fuzz/fuzz_targets/values.rs`).
//!
//! Where a value maps through a text form anyway (numeric, date, time, timestamp, interval), the
//! binary value is first written as exactly the text PostgreSQL prints (ISO DateStyle,
//! `extra_float_digits = 1`) and then mapped by the text path, so the two cannot disagree; the
//! rest (integers, floats, text, uuid, bytea, json, vectors) is decoded directly, which is where
//! the CPU goes. Floats are read as their shortest decimal form, as PostgreSQL prints them.
//! `tests/` runs every type through both paths against a real server and compares.

use super::types::{Kind, Scalar};
use super::value::{self, f32_json, non_finite, Options, MULTI_DIMENSIONAL};
use base64::Engine as _;
use serde_json::{Number, Value};
use std::fmt::Write as _;

/// PostgreSQL's epoch (2000-01-01) in days and microseconds since the Unix epoch.
const PG_EPOCH_DAYS: i64 = 10_957;
const PG_EPOCH_UNIX_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

fn short(what: &str, need: usize, have: usize) -> String {
    format!("binary {what}: need {need} bytes, have {have}")
}

fn exact<const N: usize>(what: &str, b: &[u8]) -> Result<[u8; N], String> {
    b.try_into().map_err(|_| {
        format!(
            "binary {what}: expected {N} bytes, got {} (the column's type changed?)",
            b.len()
        )
    })
}

/// Reads big-endian integers off the front of a buffer, naming what it reads on a short one.
struct Reader<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(short(self.what, n, self.b.len()));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn done(&self) -> Result<(), String> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "binary {}: {} trailing bytes",
                self.what,
                self.b.len()
            ))
        }
    }
}

/// Maps one non-null binary value of kind `kind` to JSON.
pub fn to_json(kind: Kind, b: &[u8], options: Options) -> Result<Value, String> {
    match kind {
        Kind::Scalar(s) => scalar_json(s, b, options),
        Kind::Array(elem) => {
            let items = Elements::of(b)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(match item? {
                    None => Value::Null,
                    Some(e) => scalar_json(elem, e, options)?,
                });
            }
            Ok(Value::Array(out))
        }
        Kind::Other => Err(
            "this type has no binary decoder (set source.format = \"text\", or \"auto\")"
                .to_owned(),
        ),
    }
}

/// One scalar in binary form → JSON.
pub fn scalar_json(s: Scalar, b: &[u8], options: Options) -> Result<Value, String> {
    Ok(match s {
        Scalar::Bool => Value::Bool(exact::<1>("bool", b)?[0] != 0),
        Scalar::Int2 => Value::from(i16::from_be_bytes(exact("int2", b)?)),
        Scalar::Int4 => Value::from(i32::from_be_bytes(exact("int4", b)?)),
        Scalar::Int8 => Value::from(i64::from_be_bytes(exact("int8", b)?)),
        Scalar::Oid => Value::from(u32::from_be_bytes(exact("oid", b)?)),
        Scalar::Float4 => f32_json(f32::from_be_bytes(exact("float4", b)?)),
        Scalar::Float8 => {
            let f = f64::from_be_bytes(exact("float8", b)?);
            Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(non_finite(f).to_owned()))
        }
        Scalar::Text => Value::String(utf8(b)?.to_owned()),
        Scalar::Uuid => Value::String(uuid::Uuid::from_bytes(exact("uuid", b)?).to_string()),
        Scalar::Bytea => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Scalar::Json => serde_json::from_slice(b).map_err(|e| format!("invalid json: {e}"))?,
        Scalar::Jsonb => {
            serde_json::from_slice(jsonb(b)?).map_err(|e| format!("invalid json: {e}"))?
        }
        Scalar::TimestampTz => Value::String(timestamptz(b)?),
        Scalar::Interval => Value::String(interval(b)?),
        Scalar::Vector | Scalar::HalfVec => {
            Value::Array(dense(s, b)?.into_iter().map(f32_json).collect())
        }
        Scalar::SparseVec => {
            let (dim, indices, values) = sparse(b)?;
            value::sparse_json(dim, &indices, &values)
        }
        Scalar::Numeric | Scalar::Date | Scalar::Time | Scalar::TimeTz | Scalar::Timestamp => {
            value::scalar_json(s, &text_form(s, b)?, options)?
        }
    })
}

/// PostgreSQL's text output of a binary scalar: exact for the types [`Scalar::key_safe`] names
/// (and numeric, date/time types); floats and JSON in an equivalent spelling. Keys, soft-delete
/// flags and dead-letter records use it.
pub fn text_form(s: Scalar, b: &[u8]) -> Result<String, String> {
    Ok(match s {
        Scalar::Bool => if exact::<1>("bool", b)?[0] != 0 {
            "t"
        } else {
            "f"
        }
        .to_owned(),
        Scalar::Int2 => i16::from_be_bytes(exact("int2", b)?).to_string(),
        Scalar::Int4 => i32::from_be_bytes(exact("int4", b)?).to_string(),
        Scalar::Int8 => i64::from_be_bytes(exact("int8", b)?).to_string(),
        Scalar::Oid => u32::from_be_bytes(exact("oid", b)?).to_string(),
        Scalar::Float4 => {
            let f = f32::from_be_bytes(exact("float4", b)?);
            if f.is_finite() {
                ryu::Buffer::new().format_finite(f).to_owned()
            } else {
                non_finite(f64::from(f)).to_owned()
            }
        }
        Scalar::Float8 => float_text(f64::from_be_bytes(exact("float8", b)?)),
        Scalar::Numeric => numeric(b)?,
        Scalar::Text | Scalar::Json => utf8(b)?.to_owned(),
        Scalar::Jsonb => utf8(jsonb(b)?)?.to_owned(),
        Scalar::Uuid => uuid::Uuid::from_bytes(exact("uuid", b)?).to_string(),
        Scalar::Bytea => {
            let mut s = String::with_capacity(2 + 2 * b.len());
            s.push_str("\\x");
            for byte in b {
                let _ = write!(s, "{byte:02x}");
            }
            s
        }
        Scalar::Date => date(i32::from_be_bytes(exact("date", b)?)),
        Scalar::Time => time_of_day(i64::from_be_bytes(exact("time", b)?)),
        Scalar::TimeTz => {
            let mut r = Reader { b, what: "timetz" };
            let micros = i64::from_be_bytes(r.take(8)?.try_into().expect("8"));
            let zone = r.i32()?;
            r.done()?;
            let mut s = time_of_day(micros);
            zone_suffix(&mut s, zone);
            s
        }
        Scalar::Timestamp => timestamp(i64::from_be_bytes(exact("timestamp", b)?)),
        Scalar::TimestampTz => timestamptz(b)?,
        Scalar::Interval => interval(b)?,
        Scalar::Vector | Scalar::HalfVec => {
            let items: Vec<String> = dense(s, b)?.iter().map(|f| f.to_string()).collect();
            format!("[{}]", items.join(","))
        }
        Scalar::SparseVec => {
            let (dim, indices, values) = sparse(b)?;
            let items: Vec<String> = indices
                .iter()
                .zip(&values)
                .map(|(i, v)| format!("{}:{v}", i + 1))
                .collect();
            format!("{{{}}}/{dim}", items.join(","))
        }
    })
}

/// A vector column's binary value: float4/float8/integer/numeric arrays, pgvector `vector`,
/// `halfvec`, `sparsevec` (densified), or a json(b) number array.
pub fn vector(kind: Kind, b: &[u8], expected_len: usize) -> Result<Vec<f32>, String> {
    let out: Vec<f32> = match kind {
        Kind::Scalar(s @ (Scalar::Vector | Scalar::HalfVec)) => dense(s, b)?,
        Kind::Scalar(Scalar::SparseVec) => {
            let (dim, indices, values) = sparse(b)?;
            return super::sparsevec::densify(dim, &indices, &values, expected_len);
        }
        Kind::Scalar(s @ (Scalar::Json | Scalar::Jsonb)) => {
            return value::parse_vector(&text_form(s, b)?, expected_len)
        }
        Kind::Array(elem) => {
            if elem == Scalar::Float4 {
                if let Some(v) = float4_array(b, expected_len) {
                    return finite(v);
                }
            }
            let items = Elements::of(b)?;
            if items.len() != expected_len {
                return Err(format!(
                    "vector has {} dimensions, the collection expects {expected_len}",
                    items.len()
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.enumerate() {
                let e = item?.ok_or_else(|| format!("vector element {i} is NULL"))?;
                out.push(match elem {
                    Scalar::Float4 => f32::from_be_bytes(exact("float4", e)?),
                    Scalar::Float8 => f64::from_be_bytes(exact("float8", e)?) as f32,
                    Scalar::Int2 => f32::from(i16::from_be_bytes(exact("int2", e)?)),
                    Scalar::Int4 => i32::from_be_bytes(exact("int4", e)?) as f32,
                    Scalar::Int8 => i64::from_be_bytes(exact("int8", e)?) as f32,
                    Scalar::Numeric => {
                        let t = numeric(e)?;
                        t.parse()
                            .map_err(|_| format!("vector element {i} ({t:?}) is not a number"))?
                    }
                    _ => return Err("vector is not an array of numbers".to_owned()),
                });
            }
            out
        }
        _ => return Err("the column's type cannot hold a vector".to_owned()),
    };
    if out.len() != expected_len {
        return Err(format!(
            "vector has {} dimensions, the collection expects {expected_len}",
            out.len()
        ));
    }
    finite(out)
}

fn finite(v: Vec<f32>) -> Result<Vec<f32>, String> {
    match v.iter().position(|f| !f.is_finite()) {
        Some(i) => Err(format!(
            "vector element {i} is {} (not finite as f32)",
            v[i]
        )),
        None => Ok(v),
    }
}

/// The common vector column, a `real[]` without NULLs of the expected length, read straight:
/// every element is its length 4 and 4 bytes. `None` for anything else (the general path then
/// reports what is wrong).
fn float4_array(b: &[u8], expected_len: usize) -> Option<Vec<f32>> {
    let header = 20;
    if b.len() != header + 8 * expected_len || expected_len == 0 {
        return None;
    }
    let ndim = i32::from_be_bytes(b[0..4].try_into().ok()?);
    let len = i32::from_be_bytes(b[12..16].try_into().ok()?);
    if ndim != 1 || usize::try_from(len).ok()? != expected_len {
        return None;
    }
    // Two passes with no early exit inside the copy: the length words, then the values,
    // collected into an exact allocation (no capacity check per element).
    let elements = b[header..].chunks_exact(8);
    if !elements.clone().all(|e| e[..4] == [0, 0, 0, 4]) {
        return None;
    }
    Some(
        elements
            .map(|e| f32::from_be_bytes([e[4], e[5], e[6], e[7]]))
            .collect(),
    )
}

/// Unix seconds of a binary timestamp (read as UTC), timestamptz or date.
pub fn unix_seconds(kind: Kind, b: &[u8]) -> Result<i64, String> {
    pg_micros(kind, b).map(|m| m.div_euclid(1_000_000) + PG_EPOCH_UNIX_MICROS / 1_000_000)
}

/// Unix microseconds of a binary timestamp (read as UTC), timestamptz or date; an error for
/// the last few centuries of PostgreSQL's range, which i64 microseconds since 1970 cannot hold.
pub fn unix_micros(kind: Kind, b: &[u8]) -> Result<i64, String> {
    pg_micros(kind, b)?
        .checked_add(PG_EPOCH_UNIX_MICROS)
        .ok_or_else(|| "the timestamp is out of range".to_owned())
}

/// Microseconds since 2000-01-01 of a binary timestamp, timestamptz or date (finite only).
fn pg_micros(kind: Kind, b: &[u8]) -> Result<i64, String> {
    let micros = match kind {
        Kind::Scalar(Scalar::Timestamp | Scalar::TimestampTz) => {
            i64::from_be_bytes(exact("timestamp", b)?)
        }
        Kind::Scalar(Scalar::Date) => {
            let days = i32::from_be_bytes(exact("date", b)?);
            if days == i32::MAX || days == i32::MIN {
                return Err("the date is infinite".to_owned());
            }
            i64::from(days)
                .checked_mul(MICROS_PER_DAY)
                .ok_or("the date is out of range")?
        }
        _ => return Err("the column is not a timestamp, timestamptz or date".to_owned()),
    };
    if micros == i64::MAX || micros == i64::MIN {
        return Err("the timestamp is infinite".to_owned());
    }
    Ok(micros)
}

fn utf8(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "text is not valid UTF-8".to_owned())
}

/// jsonb's binary form: a version byte (1) and the JSON text.
fn jsonb(b: &[u8]) -> Result<&[u8], String> {
    match b.split_first() {
        Some((1, rest)) => Ok(rest),
        Some((v, _)) => Err(format!("jsonb binary version {v} is not supported")),
        None => Err(short("jsonb", 1, 0)),
    }
}

fn float_text(f: f64) -> String {
    if f.is_finite() {
        f.to_string()
    } else {
        non_finite(f).to_owned()
    }
}

/// The elements of a one-dimensional binary array (`None` for NULL), collected.
pub fn array(b: &[u8]) -> Result<Vec<Option<&[u8]>>, String> {
    Elements::of(b)?.collect()
}

/// The elements of a one-dimensional binary array, read in place (`None` for NULL). An empty
/// array has no dimensions; more than one dimension is refused like the text path refuses it.
/// The last item is an error when the array has bytes beyond its elements.
pub struct Elements<'a> {
    r: Reader<'a>,
    left: usize,
}

impl<'a> Elements<'a> {
    pub fn of(b: &'a [u8]) -> Result<Self, String> {
        let (dims, elements) = Self::with_dims(b)?;
        if dims.len() > 1 {
            return Err(MULTI_DIMENSIONAL.to_owned());
        }
        Ok(elements)
    }

    /// An array of any number of dimensions: their sizes (outermost first) and every element
    /// in row-major order.
    pub fn with_dims(b: &'a [u8]) -> Result<(Vec<usize>, Self), String> {
        let mut r = Reader { b, what: "array" };
        let ndim = r.i32()?;
        let _has_null = r.i32()?;
        let _elem = r.take(4)?;
        // PostgreSQL's MAXDIM.
        if !(0..=6).contains(&ndim) {
            return Err(format!("binary array: {ndim} dimensions"));
        }
        let mut dims = Vec::with_capacity(ndim as usize);
        for _ in 0..ndim {
            let len = r.i32()?;
            let _lower = r.i32()?;
            dims.push(usize::try_from(len).map_err(|_| format!("binary array: length {len}"))?);
        }
        let left = match dims.is_empty() {
            true => 0,
            false => dims
                .iter()
                .try_fold(1usize, |a, d| a.checked_mul(*d))
                .ok_or("binary array: too many elements")?,
        };
        // Each element takes at least its 4-byte length.
        if left > r.b.len() / 4 {
            return Err(short("array", left.saturating_mul(4), r.b.len()));
        }
        if left == 0 {
            r.done()?;
        }
        Ok((dims, Self { r, left }))
    }

    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<Option<&'a [u8]>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = (|| {
            let n = self.r.i32()?;
            let item = if n < 0 {
                None
            } else {
                Some(self.r.take(n as usize)?)
            };
            if self.left == 0 {
                self.r.done()?;
            }
            Ok(item)
        })();
        if item.is_err() {
            self.left = 0;
        }
        Some(item)
    }
}

/// pgvector `vector` (int16 dim, int16 unused, float4 × dim) or `halfvec` (float2 × dim).
fn dense(s: Scalar, b: &[u8]) -> Result<Vec<f32>, String> {
    let half = s == Scalar::HalfVec;
    let (what, width) = if half { ("halfvec", 2) } else { ("vector", 4) };
    let mut r = Reader { b, what };
    let dim = r.u16()? as usize;
    let _unused = r.i16()?;
    if r.b.len() != dim * width {
        return Err(format!(
            "binary {what}: {dim} dimensions need {} bytes, have {}",
            dim * width,
            r.b.len()
        ));
    }
    // Length checked above: one pass over exact chunks into an exact allocation.
    Ok(if half {
        r.b.chunks_exact(2)
            .map(|h| half_to_f32(u16::from_be_bytes([h[0], h[1]])))
            .collect()
    } else {
        r.b.chunks_exact(4)
            .map(|f| f32::from_be_bytes([f[0], f[1], f[2], f[3]]))
            .collect()
    })
}

/// pgvector `sparsevec`: int32 dim, int32 nnz, int32 unused, int32 indices × nnz (from 0),
/// float4 values × nnz.
pub fn sparse(b: &[u8]) -> Result<(u32, Vec<u32>, Vec<f32>), String> {
    let mut r = Reader {
        b,
        what: "sparsevec",
    };
    let dim = r.i32()?;
    let nnz = r.i32()?;
    let _unused = r.i32()?;
    let (Ok(dim), Ok(nnz)) = (u32::try_from(dim), usize::try_from(nnz)) else {
        return Err(format!("binary sparsevec: dim {dim}, nnz {nnz}"));
    };
    if r.b.len() != nnz * 8 {
        return Err(short("sparsevec", nnz * 8, r.b.len()));
    }
    let mut indices = Vec::with_capacity(nnz);
    for _ in 0..nnz {
        let i = r.i32()?;
        indices.push(u32::try_from(i).map_err(|_| format!("binary sparsevec: index {i}"))?);
    }
    let mut values = Vec::with_capacity(nnz);
    for _ in 0..nnz {
        values.push(r.f32()?);
    }
    Ok((dim, indices, values))
}

/// IEEE 754 half precision → f32 (exact).
fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// numeric's binary form (int16 ndigits, weight, sign, dscale; base-10000 digits) → its text
/// (`numeric_out`: every digit of the display scale, no exponent).
pub fn numeric(b: &[u8]) -> Result<String, String> {
    let mut r = Reader { b, what: "numeric" };
    let ndigits = r.i16()?;
    let weight = i32::from(r.i16()?);
    let sign = r.u16()?;
    let dscale = r.u16()?;
    let ndigits = usize::try_from(ndigits).map_err(|_| "binary numeric: negative length")?;
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        let d = r.i16()?;
        if !(0..10_000).contains(&d) {
            return Err(format!("binary numeric: digit {d} out of range"));
        }
        digits.push(d);
    }
    r.done()?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        s => return Err(format!("binary numeric: sign 0x{s:04x}")),
    }
    if dscale > 0x3fff || weight.abs() > 0x7fff {
        return Err("binary numeric: scale or weight out of range".to_owned());
    }
    // Group `i` of the digits has weight `weight - i` (powers of 10000).
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(s, "{}", digit(i));
            } else {
                let _ = write!(s, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        s.push('.');
        let start = s.len();
        let mut i = weight + 1;
        while s.len() - start < usize::from(dscale) {
            let _ = write!(s, "{:04}", digit(i));
            i += 1;
        }
        s.truncate(start + usize::from(dscale));
    }
    Ok(s)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (year 0 = 1 BC).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD` and whether it is BC (PostgreSQL prints year 1 - y with ` BC`).
fn ymd(days_since_2000: i64) -> (String, bool) {
    let (y, m, d) = civil(days_since_2000 + PG_EPOCH_DAYS);
    let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    (format!("{year:04}-{m:02}-{d:02}"), bc)
}

fn date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".to_owned(),
        i32::MIN => "-infinity".to_owned(),
        d => {
            let (mut s, bc) = ymd(i64::from(d));
            if bc {
                s.push_str(" BC");
            }
            s
        }
    }
}

/// `HH:MM:SS[.ffffff]`, trailing zeros of the fraction dropped.
fn time_of_day(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let mut s = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

/// A time zone offset as PostgreSQL prints it: `+HH`, `+HH:MM` or `+HH:MM:SS` (`zone` is in
/// seconds west of UTC).
fn zone_suffix(s: &mut String, zone: i32) {
    let abs = zone.unsigned_abs();
    let (h, m, sec) = (abs / 3600, (abs / 60) % 60, abs % 60);
    s.push(if zone <= 0 { '+' } else { '-' });
    if sec != 0 {
        let _ = write!(s, "{h:02}:{m:02}:{sec:02}");
    } else if m != 0 {
        let _ = write!(s, "{h:02}:{m:02}");
    } else {
        let _ = write!(s, "{h:02}");
    }
}

fn timestamp(micros: i64) -> String {
    match micros {
        i64::MAX => "infinity".to_owned(),
        i64::MIN => "-infinity".to_owned(),
        m => {
            let (mut s, bc) = ymd(m.div_euclid(MICROS_PER_DAY));
            s.push(' ');
            s.push_str(&time_of_day(m.rem_euclid(MICROS_PER_DAY)));
            if bc {
                s.push_str(" BC");
            }
            s
        }
    }
}

/// A timestamptz as written to the payload: RFC 3339 in UTC, like the text path.
fn timestamptz(b: &[u8]) -> Result<String, String> {
    match i64::from_be_bytes(exact("timestamptz", b)?) {
        i64::MAX => Ok("infinity".to_owned()),
        i64::MIN => Ok("-infinity".to_owned()),
        m => m
            .checked_add(PG_EPOCH_UNIX_MICROS)
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| value::rfc3339(&t))
            .ok_or_else(|| "timestamptz out of range".to_owned()),
    }
}

/// An interval (int64 microseconds, int32 days, int32 months) as an ISO 8601 duration, split
/// the way PostgreSQL prints it (years and months from months, toward zero).
fn interval(b: &[u8]) -> Result<String, String> {
    let mut r = Reader {
        b,
        what: "interval",
    };
    let micros = i64::from_be_bytes(r.take(8)?.try_into().expect("8"));
    let days = r.i32()?;
    let months = r.i32()?;
    r.done()?;
    let abs = micros.unsigned_abs();
    let secs = abs / 1_000_000;
    let frac = format!("{:06}", abs % 1_000_000);
    let time = (micros != 0).then_some((
        micros < 0,
        (secs / 3600) as i64,
        ((secs / 60) % 60) as i64,
        (secs % 60) as i64,
        frac.as_str(),
    ));
    Ok(value::iso_duration(
        i64::from(months / 12),
        i64::from(months % 12),
        i64::from(days),
        time,
    ))
}

#[cfg(test)]
mod tests;
