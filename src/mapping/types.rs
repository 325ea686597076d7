//! What each column type is, for decoding its values: built-in types by OID, and the types whose
//! OIDs vary by database (domains, enums, arrays of these, citext, pgvector's `vector`,
//! `halfvec` and `sparsevec`) from `pg_type`, read once at start.
//!
//! A [`Kind`] decides both paths: the text decoder (`value`) and the binary decoder
//! (`binary`). A type we have no binary decoder for is [`Kind::Other`]; its values can only be
//! mapped in text form, which is why the stream format is chosen from the kinds of the watched
//! columns (see [`Types::binary_blocker`]).

use super::oid;
use std::collections::HashMap;

/// A scalar type pg2qdrant decodes in both text and binary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scalar {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    /// text, varchar, bpchar, name, citext, and enums (their label).
    Text,
    Uuid,
    Bytea,
    Json,
    Jsonb,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    /// pgvector `vector`.
    Vector,
    /// pgvector `halfvec`.
    HalfVec,
    /// pgvector `sparsevec`.
    SparseVec,
}

impl Scalar {
    /// A value's binary form can be turned into exactly the text PostgreSQL prints for it, so a
    /// key of this type gets the same point id in both formats. (Floats, JSON and time zone
    /// dependent forms cannot promise that.)
    pub fn key_safe(self) -> bool {
        use Scalar::*;
        matches!(
            self,
            Bool | Int2
                | Int4
                | Int8
                | Oid
                | Numeric
                | Text
                | Uuid
                | Bytea
                | Date
                | Time
                | Timestamp
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Scalar(Scalar),
    /// A one-dimensional array of a scalar (more dimensions are refused per value).
    Array(Scalar),
    /// Anything else: mapped from its text form only.
    Other,
}

/// Built-in scalar types by OID.
fn builtin(type_oid: u32) -> Option<Scalar> {
    use Scalar::*;
    Some(match type_oid {
        oid::BOOL => Bool,
        oid::INT2 => Int2,
        oid::INT4 => Int4,
        oid::INT8 => Int8,
        oid::OID => Oid,
        oid::FLOAT4 => Float4,
        oid::FLOAT8 => Float8,
        oid::NUMERIC => Numeric,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => Text,
        oid::UUID => Uuid,
        oid::BYTEA => Bytea,
        oid::JSON => Json,
        oid::JSONB => Jsonb,
        oid::DATE => Date,
        oid::TIME => Time,
        oid::TIMETZ => TimeTz,
        oid::TIMESTAMP => Timestamp,
        oid::TIMESTAMPTZ => TimestampTz,
        oid::INTERVAL => Interval,
        _ => return None,
    })
}

/// One row of `pg_type` that [`Types::from_catalog`] needs.
#[derive(Debug, Clone)]
pub struct TypeRow {
    pub oid: u32,
    pub name: String,
    /// `typtype`: `d` domain, `e` enum, `b` base, ...
    pub typtype: char,
    /// `typbasetype` (domains).
    pub base: u32,
    /// `typelem` (arrays: the element type; 0 otherwise).
    pub element: u32,
    /// `typcategory` (`A` for arrays).
    pub category: char,
}

/// The SQL that lists the [`TypeRow`]s of a database, columns in field order.
pub const CATALOG_SQL: &str = "SELECT oid, typname::text, typtype::text, typbasetype, typelem, typcategory::text \
     FROM pg_type WHERE typtype IN ('d', 'e') OR typname IN ('vector', 'halfvec', 'sparsevec', 'citext') \
     OR (typcategory = 'A' AND typelem <> 0)";

/// The kinds of a database's types.
#[derive(Debug, Clone, Default)]
pub struct Types {
    /// Types that are not built-in scalars: resolved kinds.
    kinds: HashMap<u32, Kind>,
    /// Names of the types read from the catalog (extensions' types have no fixed oid).
    names: HashMap<u32, String>,
}

impl Types {
    /// Built-in types only (no catalog: unit tests, the bench).
    pub fn builtin() -> Self {
        Self::default()
    }

    /// Resolves domains (to their base, through chains), enums, pgvector and citext by name,
    /// and arrays of any of these.
    pub fn from_catalog(rows: &[TypeRow]) -> Self {
        let by_oid: HashMap<u32, &TypeRow> = rows.iter().map(|r| (r.oid, r)).collect();
        let scalar = |start: u32| -> Option<Scalar> {
            let mut t = start;
            for _ in 0..16 {
                if let Some(s) = builtin(t) {
                    return Some(s);
                }
                let row = by_oid.get(&t)?;
                match (row.typtype, row.name.as_str()) {
                    ('d', _) => t = row.base,
                    ('e', _) | ('b', "citext") => return Some(Scalar::Text),
                    ('b', "vector") => return Some(Scalar::Vector),
                    ('b', "halfvec") => return Some(Scalar::HalfVec),
                    ('b', "sparsevec") => return Some(Scalar::SparseVec),
                    _ => return None,
                }
            }
            None
        };
        let mut kinds = HashMap::new();
        for r in rows {
            let kind = if let Some(s) = scalar(r.oid) {
                Kind::Scalar(s)
            } else {
                // An array, or a domain over an array.
                let mut t = r.oid;
                let mut found = Kind::Other;
                for _ in 0..16 {
                    let Some(row) = by_oid.get(&t) else {
                        if let Some(s) = builtin_array_element(t).and_then(builtin) {
                            found = Kind::Array(s);
                        }
                        break;
                    };
                    if row.typtype == 'd' {
                        t = row.base;
                        continue;
                    }
                    if row.category == 'A' && row.element != 0 {
                        if let Some(s) = scalar(row.element) {
                            found = Kind::Array(s);
                        }
                    }
                    break;
                }
                found
            };
            if kind != Kind::Other {
                kinds.insert(r.oid, kind);
            }
        }
        let names = rows.iter().map(|r| (r.oid, r.name.clone())).collect();
        Self { kinds, names }
    }

    /// The name of a type read from the catalog (domains, enums, arrays, extensions' types).
    pub fn name(&self, type_oid: u32) -> Option<String> {
        self.names.get(&type_oid).cloned()
    }

    /// Whether the catalog calls `type_oid` `name` ([`Types::name`] without the copy).
    pub fn is_named(&self, type_oid: u32, name: &str) -> bool {
        self.names.get(&type_oid).is_some_and(|n| n == name)
    }

    /// The oid of a type read from the catalog, by name (an event from another database names
    /// its extensions' types, whose oids differ between databases).
    pub fn oid(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(o, _)| *o)
            .min()
    }

    pub fn kind(&self, type_oid: u32) -> Kind {
        if let Some(s) = builtin(type_oid) {
            return Kind::Scalar(s);
        }
        if let Some(k) = self.kinds.get(&type_oid) {
            return *k;
        }
        match builtin_array_element(type_oid).and_then(builtin) {
            Some(s) => Kind::Array(s),
            None => Kind::Other,
        }
    }

    /// Why the columns cannot be read in binary: the first column (name, type oid) whose type
    /// has no binary decoder, or a key column whose binary form does not give PostgreSQL's exact
    /// text (its point id would change between formats).
    pub fn binary_blocker<'a>(
        &self,
        columns: impl IntoIterator<Item = (&'a str, u32, bool)>,
    ) -> Option<(&'a str, u32, &'static str)> {
        for (name, type_oid, is_key) in columns {
            match self.kind(type_oid) {
                Kind::Other => return Some((name, type_oid, "has no binary decoder")),
                Kind::Scalar(s) if is_key && s.key_safe() => {}
                Kind::Scalar(_) | Kind::Array(_) if is_key => {
                    return Some((
                        name,
                        type_oid,
                        "is a key column whose point id is derived from its text form",
                    ))
                }
                _ => {}
            }
        }
        None
    }
}

/// Element types of the built-in arrays (known without a catalog).
fn builtin_array_element(type_oid: u32) -> Option<u32> {
    Some(match type_oid {
        1000 => oid::BOOL,
        1001 => oid::BYTEA,
        1005 => oid::INT2,
        1007 => oid::INT4,
        1016 => oid::INT8,
        1028 => oid::OID,
        1021 => oid::FLOAT4,
        1022 => oid::FLOAT8,
        1231 => oid::NUMERIC,
        1009 => oid::TEXT,
        1015 => oid::VARCHAR,
        1014 => oid::BPCHAR,
        1003 => oid::NAME,
        2951 => oid::UUID,
        199 => oid::JSON,
        3807 => oid::JSONB,
        1182 => oid::DATE,
        1183 => oid::TIME,
        1270 => oid::TIMETZ,
        1115 => oid::TIMESTAMP,
        1185 => oid::TIMESTAMPTZ,
        1187 => oid::INTERVAL,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(oid: u32, name: &str, typtype: char, base: u32, element: u32, cat: char) -> TypeRow {
        TypeRow {
            oid,
            name: name.into(),
            typtype,
            base,
            element,
            category: cat,
        }
    }

    #[test]
    fn catalog_types_resolve_to_kinds() {
        let t = Types::from_catalog(&[
            row(90001, "vector", 'b', 0, 0, 'U'),
            row(90002, "_vector", 'b', 0, 90001, 'A'),
            row(90003, "mood", 'e', 0, 0, 'E'),
            row(90004, "_mood", 'b', 0, 90003, 'A'),
            row(90005, "positive", 'd', oid::INT4, 0, 'N'),
            row(90006, "very_positive", 'd', 90005, 0, 'N'),
            row(90007, "tags", 'd', 1009, 0, 'A'),
            row(90008, "citext", 'b', 0, 0, 'S'),
            row(90009, "_point", 'b', 0, 600, 'A'),
        ]);
        assert_eq!(t.kind(90001), Kind::Scalar(Scalar::Vector));
        assert_eq!(t.kind(90002), Kind::Array(Scalar::Vector));
        assert_eq!(t.kind(90003), Kind::Scalar(Scalar::Text));
        assert_eq!(t.kind(90004), Kind::Array(Scalar::Text));
        assert_eq!(t.kind(90006), Kind::Scalar(Scalar::Int4));
        assert_eq!(
            t.kind(90007),
            Kind::Array(Scalar::Text),
            "domain over text[]"
        );
        assert_eq!(t.kind(90008), Kind::Scalar(Scalar::Text));
        assert_eq!(t.kind(90009), Kind::Other, "point[]");
        assert_eq!(t.kind(600), Kind::Other, "point");
        assert_eq!(t.kind(1021), Kind::Array(Scalar::Float4));
    }

    #[test]
    fn binary_blocker_names_the_column() {
        let t = Types::builtin();
        let cols = [("id", oid::INT8, true), ("p", 600, false)];
        assert_eq!(
            t.binary_blocker(cols).map(|b| b.0),
            Some("p"),
            "point has no decoder"
        );
        assert_eq!(
            t.binary_blocker([("at", oid::TIMESTAMPTZ, true)])
                .map(|b| b.0),
            Some("at"),
            "a timestamptz key's text depends on the session time zone"
        );
        assert_eq!(
            t.binary_blocker([("id", oid::INT8, true), ("at", oid::TIMESTAMPTZ, false)]),
            None
        );
    }
}
