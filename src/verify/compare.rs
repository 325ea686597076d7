//! Does a stored point hold what the mapping makes of its row? Pure.
//!
//! Payloads are compared without the connector's `_pg2qdrant` metadata; numbers by value (an
//! integer and the same float are equal). Vectors are compared as Qdrant stores them: Cosine
//! vectors are normalised on upsert, so the expected one is normalised too; a small relative
//! tolerance absorbs f32 rounding.

use crate::config::{Distance, META_FIELD};
use crate::event::{Vector, Vectors};
use serde_json::Value;

/// What differs, for the report; `None` when the point matches.
pub fn difference(
    expected_payload: &serde_json::Map<String, Value>,
    expected_vectors: Option<&Vectors>,
    stored_payload: &Value,
    stored_vectors: Option<&Vectors>,
    distance_of: impl Fn(&str) -> Distance,
) -> Option<String> {
    let stored = stored_payload.as_object();
    let empty = serde_json::Map::new();
    let stored = stored.unwrap_or(&empty);
    for (k, v) in expected_payload {
        if k == META_FIELD {
            continue;
        }
        match stored.get(k) {
            Some(s) if json_eq(v, s) => {}
            Some(s) => return Some(format!("payload field {k:?} is {s}, the row says {v}")),
            None => return Some(format!("payload field {k:?} is missing")),
        }
    }
    if let Some(extra) = stored
        .keys()
        .find(|k| *k != META_FIELD && !expected_payload.contains_key(*k))
    {
        return Some(format!(
            "payload field {extra:?} is not in the row's mapping"
        ));
    }
    let expected: Vec<(&str, Vector)> = match expected_vectors {
        None => return None,
        Some(Vectors::Default(v)) => vec![("", Vector::Dense(v.clone()))],
        Some(Vectors::Named(list)) => list.iter().map(|(n, v)| (n.as_str(), v.clone())).collect(),
    };
    for (name, want) in expected {
        let got = stored_vectors.and_then(|s| s.get(name));
        let label = if name.is_empty() { "vector" } else { name };
        let Some(got) = got else {
            return Some(format!("{label} is missing"));
        };
        let same = match (&want, &got) {
            (Vector::Dense(want), Vector::Dense(got)) => {
                let want = match distance_of(name) {
                    Distance::Cosine => normalised(want),
                    _ => want.to_vec(),
                };
                vectors_eq(&want, got)
            }
            // Qdrant keeps a sparse vector's values as given, in index order.
            (Vector::Sparse(want), Vector::Sparse(got)) => {
                want.indices == got.indices && vectors_eq(&want.values, &got.values)
            }
            _ => false,
        };
        if !same {
            return Some(format!("{label} differs from the row's"));
        }
    }
    None
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        v.to_vec()
    } else {
        v.iter().map(|x| x / norm).collect()
    }
}

fn vectors_eq(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 * x.abs().max(y.abs()).max(1.0))
}

/// JSON equality with numbers compared by value.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn equal_points_and_each_kind_of_difference() {
        let payload = map(json!({"title": "a", "n": 2, "_pg2qdrant": {"lsn": 1}}));
        let stored = json!({"title": "a", "n": 2.0, "_pg2qdrant": {"lsn": 9}});
        let v = Vectors::Default(vec![3.0, 4.0]);
        let cosine_stored = Vectors::Default(vec![0.6, 0.8]);
        assert_eq!(
            difference(&payload, Some(&v), &stored, Some(&cosine_stored), |_| {
                Distance::Cosine
            }),
            None
        );
        assert!(
            difference(&payload, Some(&v), &stored, Some(&cosine_stored), |_| {
                Distance::Dot
            })
            .unwrap()
            .contains("vector")
        );
        let edited = json!({"title": "b", "n": 2});
        assert!(difference(&payload, None, &edited, None, |_| Distance::Dot)
            .unwrap()
            .contains("\"title\""));
        let extra = json!({"title": "a", "n": 2, "x": 1});
        assert!(difference(&payload, None, &extra, None, |_| Distance::Dot)
            .unwrap()
            .contains("\"x\""));
        assert!(
            difference(&payload, Some(&v), &stored, None, |_| Distance::Dot)
                .unwrap()
                .contains("missing")
        );
    }
}
