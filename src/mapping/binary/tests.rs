use super::*;
use serde_json::json;

fn numeric_bytes(ndigits: &[i16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend((ndigits.len() as i16).to_be_bytes());
    b.extend(weight.to_be_bytes());
    b.extend(sign.to_be_bytes());
    b.extend(dscale.to_be_bytes());
    for d in ndigits {
        b.extend(d.to_be_bytes());
    }
    b
}

#[test]
fn numerics_print_like_numeric_out() {
    assert_eq!(
        numeric(&numeric_bytes(&[12, 3456], 1, 0, 0)).unwrap(),
        "123456"
    );
    assert_eq!(
        numeric(&numeric_bytes(&[1, 2300], 0, 0x4000, 3)).unwrap(),
        "-1.230"
    );
    assert_eq!(
        numeric(&numeric_bytes(&[1234], -2, 0, 8)).unwrap(),
        "0.00001234"
    );
    assert_eq!(numeric(&numeric_bytes(&[], 0, 0, 2)).unwrap(), "0.00");
    assert_eq!(numeric(&numeric_bytes(&[7], 2, 0, 0)).unwrap(), "700000000");
    assert_eq!(numeric(&numeric_bytes(&[], 0, 0xC000, 0)).unwrap(), "NaN");
    assert!(numeric(&numeric_bytes(&[10_000], 0, 0, 0)).is_err());
}

#[test]
fn dates_and_times_print_like_postgres() {
    assert_eq!(date(0), "2000-01-01");
    assert_eq!(date(-730_119), "0001-01-01");
    assert_eq!(date(-730_120), "0001-12-31 BC");
    assert_eq!(date(i32::MAX), "infinity");
    assert_eq!(
        timestamp(86_400_000_000 + 1_500_000),
        "2000-01-02 00:00:01.5"
    );
    assert_eq!(timestamp(-1), "1999-12-31 23:59:59.999999");
    assert_eq!(time_of_day(37_800_000_000), "10:30:00");
    let mut s = time_of_day(0);
    zone_suffix(&mut s, -19_800);
    assert_eq!(s, "00:00:00+05:30");
}

#[test]
fn intervals_split_like_postgres() {
    let mut b = Vec::new();
    b.extend((-3_723_500_000i64).to_be_bytes());
    b.extend(3i32.to_be_bytes());
    b.extend((-14i32).to_be_bytes());
    assert_eq!(interval(&b).unwrap(), "P-1Y-2M3DT-1H-2M-3.5S");
}

#[test]
fn scalars_and_arrays() {
    let o = Options::default();
    assert_eq!(
        scalar_json(Scalar::Float4, &1.1f32.to_be_bytes(), o).unwrap(),
        json!(1.1)
    );
    assert_eq!(
        scalar_json(Scalar::Float8, &f64::NAN.to_be_bytes(), o).unwrap(),
        json!("NaN")
    );
    assert_eq!(
        scalar_json(Scalar::Jsonb, b"\x01{\"a\":1}", o).unwrap(),
        json!({"a":1})
    );
    let mut arr = Vec::new();
    for v in [1i32, 1, 23, 2, 1] {
        arr.extend(v.to_be_bytes());
    }
    arr.extend(4i32.to_be_bytes());
    arr.extend(7i32.to_be_bytes());
    arr.extend((-1i32).to_be_bytes());
    assert_eq!(
        to_json(Kind::Array(Scalar::Int4), &arr, o).unwrap(),
        json!([7, null])
    );
    assert!(to_json(Kind::Array(Scalar::Int4), &arr[..arr.len() - 1], o).is_err());
}

#[test]
fn pgvector_forms() {
    let mut v = Vec::new();
    v.extend(2u16.to_be_bytes());
    v.extend(0u16.to_be_bytes());
    v.extend(1.5f32.to_be_bytes());
    v.extend((-2f32).to_be_bytes());
    assert_eq!(
        vector(Kind::Scalar(Scalar::Vector), &v, 2).unwrap(),
        vec![1.5, -2.0]
    );
    let mut h = Vec::new();
    h.extend(2u16.to_be_bytes());
    h.extend(0u16.to_be_bytes());
    h.extend(0x3e00u16.to_be_bytes()); // 1.5
    h.extend(0xc000u16.to_be_bytes()); // -2
    assert_eq!(
        vector(Kind::Scalar(Scalar::HalfVec), &h, 2).unwrap(),
        vec![1.5, -2.0]
    );
    let mut s = Vec::new();
    for x in [4i32, 1, 0, 2] {
        s.extend(x.to_be_bytes());
    }
    s.extend(3f32.to_be_bytes());
    assert_eq!(
        vector(Kind::Scalar(Scalar::SparseVec), &s, 4).unwrap(),
        vec![0.0, 0.0, 3.0, 0.0]
    );
    assert_eq!(
        scalar_json(Scalar::SparseVec, &s, Options::default()).unwrap(),
        json!({"dim": 4, "indices": [2], "values": [3.0]})
    );
    assert!(vector(Kind::Scalar(Scalar::Vector), &v, 3)
        .unwrap_err()
        .contains("2 dimensions"));
}
