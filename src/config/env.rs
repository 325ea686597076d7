//! `PG2QDRANT__SECTION__KEY` environment overrides, applied to the file's TOML tree before the
//! tree is read into [`Config`], so no key is spelled a second time here.
//!
//! # How a variable becomes a key
//! The name after the prefix is split at `__` and lower-cased: `PG2QDRANT__QDRANT__BATCH_SIZE`
//! is `qdrant.batch_size`. Two kinds of keys have no fixed name and are addressed by what they
//! hold instead:
//! - `PG2QDRANT__KAFKA__PROPERTIES__SASL_PASSWORD` (or `…__SASL__PASSWORD`) is the librdkafka
//!   property `sasl.password` (`_` and `__` for `.`);
//! - `PG2QDRANT__EMBEDDERS__<NAME>__PATH` is the `path` of the `[[embedders]]` entry named
//!   `<NAME>` (case-insensitive).
//!
//! Any other key under `[[tables]]` or `[[embedders]]` cannot be overridden (an array has no
//! stable names). A missing section is created (`[kafka]` from the environment alone).
//!
//! # Types
//! An environment value is a string. The tree (the file's values too) is read through
//! [`Lenient`], which lets a string stand for a number or a boolean when the field wants one,
//! and an empty string for "none" when the field is optional; so the field's own type decides,
//! `PG2QDRANT__SOURCE__SLOT=123` stays the string it must be, `PG2QDRANT__QDRANT__API_KEY=` means
//! no key and `PG2QDRANT__METRICS__ADDR=` an empty address (no endpoint). Unknown keys are
//! refused by the same `deny_unknown_fields` as the file's. An error at a key a variable set (or
//! an unknown key a variable named) names that variable, with the value left out when the key
//! holds a secret; any other error is the file's, named by its key.

use super::Config;
use crate::error::Error;
use serde::de::{self, IntoDeserializer, Unexpected, Visitor};
use serde::forward_to_deserialize_any;
use toml::{Table, Value};

pub const ENV_PREFIX: &str = "PG2QDRANT__";

/// One step into the tree.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A variable applied to the tree: its name, where it went, what it held.
pub(super) struct Override {
    name: String,
    path: Vec<Step>,
    value: String,
}

/// Reads `tree` (the file's) with the `PG2QDRANT__*` variables among `vars` applied.
pub fn read(
    mut tree: Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, Error> {
    let mut applied = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path = path_of(&tree, &name, rest)?;
        set(&mut tree, &path, &value);
        applied.push(Override { name, path, value });
    }
    serde_path_to_error::deserialize(Lenient(Value::Table(tree))).map_err(|e| {
        let at = e.path().to_string();
        let message = e.into_inner().to_string();
        blame(&applied, &at, &message)
    })
}

/// The tree path a variable names (`rest`: its name after the prefix).
fn path_of(tree: &Table, name: &str, rest: &str) -> Result<Vec<Step>, Error> {
    let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let refuse = |what: &str| Error::config(name.to_owned(), what.to_owned());
    if segments.iter().any(String::is_empty) {
        return Err(refuse("expected PG2QDRANT__SECTION__KEY"));
    }
    let key = |s: &str| Step::Key(s.to_owned());
    match segments.as_slice() {
        [kafka, properties, property @ ..]
            if kafka == "kafka" && properties == "properties" && !property.is_empty() =>
        {
            Ok(vec![
                key("kafka"),
                key("properties"),
                key(&property.join(".").replace('_', ".")),
            ])
        }
        [embedders, entry, field] if embedders == "embedders" => {
            let index = tree
                .get("embedders")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter().position(|e| {
                        e.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.eq_ignore_ascii_case(entry))
                    })
                })
                .ok_or_else(|| refuse("no [[embedders]] entry has that name"))?;
            Ok(vec![key("embedders"), Step::Index(index), key(field)])
        }
        [first, ..] if first == "embedders" || first == "tables" => Err(refuse(
            "[[tables]] cannot be overridden from the environment, and [[embedders]] only as \
             PG2QDRANT__EMBEDDERS__<NAME>__<KEY>",
        )),
        [_] => Err(refuse("expected PG2QDRANT__SECTION__KEY")),
        _ => Ok(segments.iter().map(|s| key(s)).collect()),
    }
}

/// Puts `value` at `path` as a string, creating missing tables.
fn set(table: &mut Table, path: &[Step], value: &str) {
    match path {
        [Step::Key(k)] => {
            table.insert(k.clone(), Value::String(value.to_owned()));
        }
        [Step::Key(k), Step::Index(i), rest @ ..] => {
            let entry = table
                .get_mut(k)
                .and_then(Value::as_array_mut)
                .and_then(|a| a.get_mut(*i))
                .and_then(Value::as_table_mut)
                .expect("path_of found the entry");
            set(entry, rest, value);
        }
        [Step::Key(k), rest @ ..] => {
            let slot = table
                .entry(k.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            if !slot.is_table() {
                *slot = Value::Table(Table::new());
            }
            set(slot.as_table_mut().expect("a table"), rest, value);
        }
        _ => unreachable!("a path is keys, an index only after a key, and ends with a key"),
    }
}

/// The path as `serde_path_to_error` prints it (`embedders[0].path`).
fn dotted(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The error of reading the tree, named after the variable that set the failing key, or that
/// named the unknown key the error reports; else after the key itself (the file's error).
fn blame(applied: &[Override], at: &str, message: &str) -> Error {
    let at = at.trim_start_matches('.');
    // serde: "unknown field `x`, expected one of `a`, `b`", reported at the parent of `x`.
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        .map(|field| {
            if at.is_empty() {
                field.to_owned()
            } else {
                format!("{at}.{field}")
            }
        });
    let culprit = applied.iter().rposition(|a| {
        let p = dotted(&a.path);
        p == at
            || unknown
                .as_ref()
                .is_some_and(|u| p == *u || p.starts_with(&format!("{u}.")))
    });
    match culprit {
        Some(i) => {
            let (a, path) = (&applied[i], dotted(&applied[i].path));
            let secret =
                path.contains("url") || path.contains("key") || super::kafka::is_secret(&path);
            let message = if secret && !a.value.is_empty() {
                message.replace(&a.value, "<redacted>")
            } else {
                message.to_owned()
            };
            Error::config(a.name.clone(), format!("{message} (sets {path})"))
        }
        None => Error::config(at.to_owned(), message.to_owned()),
    }
}

/// A TOML value whose strings also read as numbers and booleans when the field wants one (see
/// the module doc). Everything else reads as the value itself.
struct Lenient(Value);

impl<'de> IntoDeserializer<'de, toml::de::Error> for Lenient {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

fn unexpected<E: de::Error>(s: &str, wanted: &str) -> E {
    E::invalid_value(Unexpected::Str(s), &wanted)
}

/// `deserialize_<int>`: a string parses as the field's own integer type.
macro_rules! lenient_number {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            match self.0 {
                Value::String(s) => match s.trim().parse::<$ty>() {
                    Ok(n) => visitor.$visit(n),
                    Err(_) => Err(unexpected(&s, "a number")),
                },
                other => Lenient(other).deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Lenient {
    type Error = toml::de::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::String(s) => visitor.visit_string(s),
            Value::Integer(i) => visitor.visit_i64(i),
            Value::Float(f) => visitor.visit_f64(f),
            Value::Boolean(b) => visitor.visit_bool(b),
            Value::Datetime(d) => visitor.visit_string(d.to_string()),
            Value::Array(a) => {
                visitor.visit_seq(de::value::SeqDeserializer::new(a.into_iter().map(Lenient)))
            }
            Value::Table(t) => visitor.visit_map(de::value::MapDeserializer::new(
                t.into_iter().map(|(k, v)| (k, Lenient(v))),
            )),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => visitor.visit_bool(true),
                "false" | "no" | "0" => visitor.visit_bool(false),
                _ => Err(unexpected(&s, "true or false")),
            },
            other => Lenient(other).deserialize_any(visitor),
        }
    }

    lenient_number! {
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.0 {
            Value::String(s) if s.is_empty() => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => other.deserialize_enum(name, variants, visitor),
        }
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any i128 u128
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// One variable as `read` records it.
    pub fn applied(name: &str, value: &str) -> Vec<Override> {
        let rest = name.strip_prefix(ENV_PREFIX).expect("prefixed");
        vec![Override {
            name: name.to_owned(),
            path: path_of(&Table::new(), name, rest).expect("a path"),
            value: value.to_owned(),
        }]
    }

    pub fn blame_of(applied: &[Override], at: &str, message: &str) -> Error {
        blame(applied, at, message)
    }
}
