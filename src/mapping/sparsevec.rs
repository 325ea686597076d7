//! pgvector's `sparsevec` text form (`{1:1.5,3:2}/5`, indices from 1) read and written, and a
//! sparse vector made dense. Pure; the binary form is read in `binary`, the payload value is
//! `value::sparse_json`.

use std::fmt::Write as _;

/// pgvector's sparsevec text form `{1:1.5,3:2}/5` (indices from 1) → (dim, indices from 0,
/// values).
pub fn parse(text: &str) -> Result<(u32, Vec<u32>, Vec<f32>), String> {
    let bad = || format!("{text:?} is not a sparse vector {{i:v,...}}/dim");
    let (body, dim) = text.trim().rsplit_once('/').ok_or_else(bad)?;
    let dim: u32 = dim.trim().parse().map_err(|_| bad())?;
    let inner = body
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(bad)?;
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    if !inner.trim().is_empty() {
        for pair in inner.split(',') {
            let (i, v) = pair.split_once(':').ok_or_else(bad)?;
            let i: u32 = i.trim().parse().map_err(|_| bad())?;
            indices.push(i.checked_sub(1).ok_or_else(bad)?);
            values.push(v.trim().parse::<f32>().map_err(|_| bad())?);
        }
    }
    Ok((dim, indices, values))
}

/// pgvector's sparsevec text form of (dim, indices from 0, values): `{1:1.5,3:2}/5`, each value
/// in its shortest form that reads back as the same f32 (`parse` inverts it exactly).
pub fn text(dim: u32, indices: &[u32], values: &[f32]) -> String {
    let mut out = String::with_capacity(8 + indices.len() * 12);
    out.push('{');
    let mut buf = ryu::Buffer::new();
    for (n, (&i, &v)) in indices.iter().zip(values).enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:", u64::from(i) + 1);
        // pgvector refuses non-finite values; Rust's spelling of one still reads back.
        if v.is_finite() {
            out.push_str(buf.format_finite(v));
        } else {
            let _ = write!(out, "{v}");
        }
    }
    let _ = write!(out, "}}/{dim}");
    out
}

/// A sparse vector as a dense one of `expected_len` dimensions.
pub fn densify(
    dim: u32,
    indices: &[u32],
    values: &[f32],
    expected_len: usize,
) -> Result<Vec<f32>, String> {
    if dim as usize != expected_len {
        return Err(format!(
            "vector has {dim} dimensions, the collection expects {expected_len}"
        ));
    }
    let mut out = vec![0.0; expected_len];
    for (&i, &v) in indices.iter().zip(values) {
        let slot = out
            .get_mut(i as usize)
            .ok_or_else(|| format!("sparse vector index {i} is beyond its {dim} dimensions"))?;
        if !v.is_finite() {
            return Err(format!("vector element {i} is not finite"));
        }
        *slot = v;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_reads_back_exactly() {
        let values = [0.1f32, -1.0 / 3.0, 3.0e-30, 1.0e30, 2.0];
        let indices = [0u32, 6, 29_998, 29_999, 4_000_000_000];
        let text = text(30_000, &indices, &values);
        assert_eq!(
            text,
            "{1:0.1,7:-0.33333334,29999:3e-30,30000:1e30,4000000001:2.0}/30000"
        );
        assert_eq!(
            parse(&text),
            Ok((30_000, indices.to_vec(), values.to_vec()))
        );
        assert_eq!(parse("{}/3"), Ok((3, vec![], vec![])));
        assert!(parse("{0:1}/3").is_err(), "indices start at 1");
        assert_eq!(densify(3, &[2], &[5.0], 3), Ok(vec![0.0, 0.0, 5.0]));
        assert!(densify(3, &[2], &[5.0], 4)
            .unwrap_err()
            .contains("3 dimensions"));
    }
}
