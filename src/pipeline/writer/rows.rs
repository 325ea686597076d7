//! The rows a batch touches, for the writer's rule that batches in flight at once never share a
//! row.
//!
//! A row is (collection, [`Op::row_key`]); the set holds a 64-bit digest of each, sorted, so
//! taking a batch's rows costs one pass and one sort of integers, with no key cloned and no hash
//! table built per batch. Two different rows may share a digest. That only makes a batch wait for
//! one it did not have to wait for; it can never let two writes of the same row run at once,
//! because the same row always has the same digest.

use crate::event::{Op, PointKey};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The sorted, distinct digests of the rows one batch touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows(Vec<u64>);

impl Rows {
    /// The rows `ops` touch; `None` when the batch must run alone (a truncate, or a TOAST merge
    /// that may read the source).
    pub fn of(ops: &[Op]) -> Option<Rows> {
        let mut digests = Vec::with_capacity(ops.len());
        // Ops of one batch mostly share their collection's `Arc`: its name is hashed once.
        let mut last: Option<(&Arc<str>, u64)> = None;
        for op in ops {
            let key = match (op, op.row_key()) {
                (Op::Merge { .. }, _) | (_, None) => return None,
                (_, Some(key)) => key,
            };
            let collection = op.collection();
            let named = match last {
                Some((c, h)) if Arc::ptr_eq(c, collection) => h,
                _ => {
                    let mut h = std::hash::DefaultHasher::new();
                    collection.hash(&mut h);
                    let named = h.finish();
                    last = Some((collection, named));
                    named
                }
            };
            digests.push(digest(named, key));
        }
        digests.sort_unstable();
        digests.dedup();
        Some(Rows(digests))
    }

    /// Whether the two share a row (or, rarely, only a digest).
    pub fn overlaps(&self, other: &Rows) -> bool {
        let (mut a, mut b) = (self.0.iter().peekable(), other.0.iter().peekable());
        while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
            match x.cmp(y) {
                std::cmp::Ordering::Less => _ = a.next(),
                std::cmp::Ordering::Greater => _ = b.next(),
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

/// A row's digest: the collection's hash mixed with the key's words (SplitMix64's finaliser).
fn digest(collection: u64, key: &PointKey) -> u64 {
    match key {
        PointKey::Num(n) => mix(mix(collection) ^ n),
        PointKey::Uuid(u) => {
            let (hi, lo) = u.as_u64_pair();
            mix(mix(mix(collection ^ 0x9e37_79b9_7f4a_7c15) ^ hi) ^ lo)
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::{Lsn, Position};
    use crate::pipeline::fixtures::{merge, truncate, upserts};

    fn delete(collection: &str, key: PointKey) -> Op {
        Op::Delete {
            collection: collection.into(),
            key,
            position: Position::new(Lsn(1), 0),
        }
    }

    fn rows(keys: &[u64]) -> Rows {
        Rows::of(&upserts(keys, 1).ops).unwrap()
    }

    #[test]
    fn the_same_row_overlaps_whatever_the_op_and_the_collection_arc() {
        let a = rows(&[1, 2]);
        let b = rows(&[3, 2]);
        assert!(a.overlaps(&b) && b.overlaps(&a));
        // The same name in another allocation, and a delete of the upserted row.
        assert!(a.overlaps(&Rows::of(&[delete("c", PointKey::Num(2))]).unwrap()));
        let u = PointKey::Uuid(uuid::Uuid::from_u128(7));
        let d = Rows::of(&[delete("c", u.clone()), delete("c", u.clone())]).unwrap();
        assert_eq!(d.0.len(), 1, "a row touched twice is one row");
        assert!(d.overlaps(&Rows::of(&[delete("c", u)]).unwrap()));
        // One `Arc` shared by the ops (its hash reused) gives the same digests as one each.
        let shared: Arc<str> = "c".into();
        let ops = [1, 2].map(|k| Op::Delete {
            collection: shared.clone(),
            key: PointKey::Num(k),
            position: Position::new(Lsn(1), 0),
        });
        let apart = [delete("c", PointKey::Num(1)), delete("c", PointKey::Num(2))];
        assert_eq!(Rows::of(&ops), Rows::of(&apart));
        assert_eq!(Rows::of(&ops), Some(a));
        // Two collections in one batch: each op's own name is hashed.
        let two = Rows::of(&[delete("c", PointKey::Num(1)), delete("d", PointKey::Num(1))]);
        let two = two.unwrap();
        assert_eq!(two.0.len(), 2);
        assert!(two.overlaps(&Rows::of(&[delete("d", PointKey::Num(1))]).unwrap()));
        let shared_d: Arc<str> = "d".into();
        let ops = [
            Op::Delete {
                collection: shared.clone(),
                key: PointKey::Num(1),
                position: Position::new(Lsn(1), 0),
            },
            Op::Delete {
                collection: shared_d,
                key: PointKey::Num(1),
                position: Position::new(Lsn(1), 0),
            },
        ];
        assert_eq!(Rows::of(&ops), Some(two));
    }

    #[test]
    fn different_rows_do_not_overlap() {
        let a = rows(&[1, 3, 5]);
        let b = rows(&[2, 4]);
        assert!(!a.overlaps(&b) && !b.overlaps(&a));
        // The same key in another collection is another row.
        assert!(!a.overlaps(&Rows::of(&[delete("d", PointKey::Num(1))]).unwrap()));
        // A number and a UUID with the same bits are different keys.
        let n = Rows::of(&[delete("c", PointKey::Num(9))]).unwrap();
        let u = Rows::of(&[delete("c", PointKey::Uuid(uuid::Uuid::from_u128(9)))]).unwrap();
        assert!(!n.overlaps(&u));
        assert!(!Rows(vec![]).overlaps(&a));
    }

    #[test]
    fn truncates_and_merges_run_alone() {
        let mut ops = upserts(&[1], 1).ops;
        ops.extend(truncate(1).ops);
        assert_eq!(Rows::of(&ops), None);
        let mut ops = merge(1, 1).ops;
        ops.extend(upserts(&[2], 1).ops);
        assert_eq!(Rows::of(&ops), None);
    }
}
