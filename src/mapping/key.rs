//! Point ids from row keys.
//!
//! - one integer key column with a value ≥ 0 → that u64;
//! - one uuid key column → that UUID;
//! - anything else (text, negative, composite) → UUIDv5 over (schema, table, key values) in
//!   [`NAMESPACE`]. The name hashed is the JSON array `["schema","table","v1",...]` of the text
//!   forms, so no two different keys share a name and the same row always gets the same id.

use super::value::oid;
use crate::event::{PointKey, TableName};

/// Fixed namespace of pg2qdrant's UUIDv5 point ids. Never change it: ids would all move.
pub const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_4a2e_9b3d_5e70_8a41_2c6d_0e9f_b713);

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
    let mut name: Vec<&str> = Vec::with_capacity(parts.len() + 2);
    name.push(&table.schema);
    name.push(&table.name);
    name.extend(parts.iter().map(|(_, t)| *t));
    let name = serde_json::to_string(&name).expect("strings serialize");
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
        // Pinned: a change here would move every stored point.
        assert_eq!(
            point_key(&t, &[(25, "x")]).to_string(),
            "5f0fdf22-418e-540c-a674-47296cb7d49b"
        );
    }
}
