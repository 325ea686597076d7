//! Point ids from row keys.
//!
//! - one integer key column with a value ≥ 0 → that u64;
//! - one uuid key column → that UUID;
//! - anything else (text, negative, composite) → UUIDv5 over (schema, table, key values) in
//!   [`NAMESPACE`]. The name hashed is the JSON array `["schema","table","v1",...]` of the text
//!   forms, so no two different keys share a name and the same row always gets the same id.

use super::oid;
use crate::event::{PointKey, TableName};

/// Fixed namespace of pg2qdrant's UUIDv5 point ids. Never change it: ids would all move.
pub const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_4a2e_9b3d_5e70_8a41_2c6d_0e9f_b713);

/// Which ids a table's points get, to tell whether two tables in one collection can collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSpace {
    /// The integer key itself.
    Integer,
    /// The uuid key itself.
    Uuid,
    /// UUIDv5 over (schema, table, key): disjoint between tables.
    Uuid5,
}

/// The id space of a table with key columns of these types under `mode`.
pub fn id_space(mode: crate::config::IdMode, key_types: &[u32]) -> IdSpace {
    match (mode, key_types) {
        (crate::config::IdMode::Uuid5, _) => IdSpace::Uuid5,
        (_, [oid::INT2 | oid::INT4 | oid::INT8 | oid::OID]) => IdSpace::Integer,
        (_, [oid::UUID]) => IdSpace::Uuid,
        _ => IdSpace::Uuid5,
    }
}

/// Two tables whose ids can collide in one collection (both integer, or both uuid), as
/// `(index, index)` into `tables` = `(collection, id space)`.
pub fn collision(tables: &[(&str, IdSpace)]) -> Option<(usize, usize)> {
    for (i, (ci, si)) in tables.iter().enumerate() {
        for (j, (cj, sj)) in tables.iter().enumerate().skip(i + 1) {
            if ci == cj && si == sj && *si != IdSpace::Uuid5 {
                return Some((i, j));
            }
        }
    }
    None
}

/// `parts` are `(type oid, text value)` of the key columns, in key order.
pub fn point_key(table: &TableName, parts: &[(u32, &str)]) -> PointKey {
    if let [(type_oid, text)] = parts {
        match *type_oid {
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => {
                if let Ok(n) = text.parse::<u64>() {
                    return PointKey::Num(n);
                }
            }
            oid::UUID => {
                if let Ok(u) = uuid::Uuid::parse_str(text) {
                    return PointKey::Uuid(u);
                }
            }
            _ => {}
        }
    }
    uuid5(table, parts)
}

/// The id [`point_key`] gives one key column of type `type_oid` whose value is `b` in binary
/// form, read without printing and parsing its text; `None` where the id is not the value
/// itself (a negative integer, another type, bytes of the wrong length): then the caller takes
/// the text path.
pub fn binary_point_key(type_oid: u32, b: &[u8]) -> Option<PointKey> {
    let n = match (type_oid, b.len()) {
        (oid::INT2, 2) => i64::from(i16::from_be_bytes([b[0], b[1]])),
        (oid::INT4, 4) => i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        (oid::OID, 4) => i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        (oid::INT8, 8) => i64::from_be_bytes(b.try_into().ok()?),
        (oid::UUID, 16) => return Some(PointKey::Uuid(uuid::Uuid::from_slice(b).ok()?)),
        _ => return None,
    };
    u64::try_from(n).ok().map(PointKey::Num)
}

/// UUIDv5 over `["schema","table",key values as text…]` in [`NAMESPACE`].
pub fn uuid5(table: &TableName, parts: &[(u32, &str)]) -> PointKey {
    let mut name: Vec<&str> = Vec::with_capacity(parts.len() + 2);
    name.push(&table.schema);
    name.push(&table.name);
    name.extend(parts.iter().map(|(_, t)| *t));
    let name = serde_json::to_string(&name).expect("strings serialize");
    PointKey::Uuid(uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()))
}

/// Chunk `index` of a row: UUIDv5 over `[["schema","table",key values…], index]` in
/// [`NAMESPACE`] (a nested array, so never the name of a row id).
pub fn chunk_uuid5(table: &TableName, parts: &[(u32, &str)], index: usize) -> PointKey {
    let mut row: Vec<&str> = Vec::with_capacity(parts.len() + 2);
    row.push(&table.schema);
    row.push(&table.name);
    row.extend(parts.iter().map(|(_, t)| *t));
    let name = serde_json::to_string(&(row, index)).expect("strings serialize");
    PointKey::Uuid(uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()))
}

/// A content-defined chunk of a row (`chunk::content`): UUIDv5 over `[["schema","table",key
/// values…], "content", text, n]`, `n` the chunks of the row before it with the same text. An
/// unchanged chunk keeps its id wherever an edit moves it.
pub fn content_chunk_uuid5(
    table: &TableName,
    parts: &[(u32, &str)],
    text: &str,
    n: usize,
) -> PointKey {
    let mut row: Vec<&str> = Vec::with_capacity(parts.len() + 2);
    row.push(&table.schema);
    row.push(&table.name);
    row.extend(parts.iter().map(|(_, t)| *t));
    let name = serde_json::to_string(&(row, "content", text, n)).expect("strings serialize");
    PointKey::Uuid(uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_uuid_keys_are_used_as_is() {
        let t = TableName::parse("public.t");
        assert_eq!(point_key(&t, &[(oid::INT8, "42")]), PointKey::Num(42));
        let u = "6f1c4a2e-9b3d-5e70-8a41-2c6d0e9fb713";
        assert_eq!(
            point_key(&t, &[(oid::UUID, u)]),
            PointKey::Uuid(u.parse().unwrap())
        );
    }

    #[test]
    fn binary_integer_and_uuid_keys_give_the_ids_of_their_text() {
        use crate::mapping::binary::text_form;
        use crate::mapping::types::Scalar;
        let t = TableName::parse("public.t");
        let cases: Vec<(u32, Scalar, Vec<u8>)> = [0i16, 1, -1, i16::MAX, i16::MIN]
            .iter()
            .map(|n| (oid::INT2, Scalar::Int2, n.to_be_bytes().to_vec()))
            .chain(
                [0i32, 42, -7, i32::MAX, i32::MIN]
                    .iter()
                    .map(|n| (oid::INT4, Scalar::Int4, n.to_be_bytes().to_vec())),
            )
            .chain(
                [0i64, 42, -7, i64::MAX, i64::MIN]
                    .iter()
                    .map(|n| (oid::INT8, Scalar::Int8, n.to_be_bytes().to_vec())),
            )
            .chain(
                [0u32, 42, u32::MAX]
                    .iter()
                    .map(|n| (oid::OID, Scalar::Oid, n.to_be_bytes().to_vec())),
            )
            .chain([(oid::UUID, Scalar::Uuid, NAMESPACE.as_bytes().to_vec())])
            .collect();
        for (type_oid, scalar, b) in cases {
            let text = text_form(scalar, &b).unwrap();
            let by_text = point_key(&t, &[(type_oid, &text)]);
            match binary_point_key(type_oid, &b) {
                Some(k) => assert_eq!(k, by_text, "{text}"),
                // Only a negative integer takes the text path (its id is a UUIDv5).
                None => assert!(text.starts_with('-') && matches!(by_text, PointKey::Uuid(_))),
            }
        }
        assert_eq!(binary_point_key(oid::INT8, &[0; 4]), None, "wrong length");
        assert_eq!(binary_point_key(25, b"42"), None, "text is not read here");
    }

    #[test]
    fn other_keys_get_stable_distinct_uuid5() {
        let t = TableName::parse("public.t");
        let a = point_key(&t, &[(25, "a,b")]);
        assert_eq!(a, point_key(&t, &[(25, "a,b")]));
        assert_ne!(a, point_key(&t, &[(25, "a"), (25, "b")]));
        assert_ne!(a, point_key(&TableName::parse("public.u"), &[(25, "a,b")]));
        assert!(matches!(
            point_key(&t, &[(oid::INT8, "-1")]),
            PointKey::Uuid(_)
        ));
        // Forced UUIDv5 of an integer key: a uuid, different per table.
        assert!(matches!(uuid5(&t, &[(oid::INT8, "42")]), PointKey::Uuid(_)));
        assert_ne!(
            uuid5(&t, &[(oid::INT8, "42")]),
            uuid5(&TableName::parse("public.u"), &[(oid::INT8, "42")])
        );
        // Pinned: a change here would move every stored point.
        assert_eq!(
            point_key(&t, &[(25, "x")]).to_string(),
            "5f0fdf22-418e-540c-a674-47296cb7d49b"
        );
    }

    #[test]
    fn integer_or_uuid_ids_of_two_tables_in_one_collection_collide_uuid5_never() {
        use crate::config::IdMode;
        let int = id_space(IdMode::Auto, &[oid::INT8]);
        let uuid = id_space(IdMode::Auto, &[oid::UUID]);
        let text = id_space(IdMode::Auto, &[25]);
        let forced = id_space(IdMode::Uuid5, &[oid::INT8]);
        assert_eq!(
            (int, uuid, text, forced),
            (
                IdSpace::Integer,
                IdSpace::Uuid,
                IdSpace::Uuid5,
                IdSpace::Uuid5
            )
        );
        assert_eq!(
            collision(&[("c", int), ("d", int), ("c", int)]),
            Some((0, 2))
        );
        assert_eq!(
            collision(&[("c", int), ("c", uuid), ("c", text), ("c", text)]),
            None
        );
        assert_eq!(collision(&[("c", int), ("c", forced)]), None);
    }
}
