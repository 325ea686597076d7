//! The operations of each op kind, fenced or free, sharded or not (pure: no services).

use super::*;
use crate::event::Document;
use qdrant_client::qdrant::condition::ConditionOneOf;
use qdrant_client::qdrant::points_update_operation::PointStructList;
use std::sync::Arc;

/// What the pre-read found: point `key` at commit LSN `lsn`, nothing else.
fn stored_at(key: u64, lsn: u64) -> Stored {
    [(
        PointKey::Num(key),
        Some(Position {
            commit_lsn: lsn,
            seq: 0,
        }),
    )]
    .into_iter()
    .collect()
}

/// Fencing as appliers and repairs write: not the sole writer.
fn shared(stored: &Stored, above: Option<u64>) -> Fencing<'_> {
    Fencing {
        stored,
        above,
        sole_writer: false,
    }
}

fn upsert(id: u64, lsn: u64, seq: u64) -> Op {
    Op::Upsert {
        copied: false,
        collection: Arc::from("c"),
        doc: Document {
            key: PointKey::Num(id),
            payload: Default::default(),
            meta: None,
            vectors: None,
            embed: Vec::new(),
            anchor: None,
            position: Position {
                commit_lsn: lsn,
                seq,
            },
        },
    }
}

/// The operations as qdrant-client's types.
fn plain(updates: Vec<Update>) -> Vec<PointsUpdateOperation> {
    updates.iter().map(Update::to_operation).collect()
}

fn upsert_of(op: &PointsUpdateOperation) -> &PointStructList {
    match &op.operation {
        Some(Operation::Upsert(list)) => list,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_point_the_read_found_absent_keeps_its_own_fence_clause() {
    // Point 1 was absent when the positions were read; if it appears before the write
    // applies (another applier after a rebalance), only its own clause may let this write
    // replace it: a bare `has_id` would regress a newer point.
    let ops = [upsert(1, 10, 0), upsert(2, 10, 1)];
    let refs: Vec<&Op> = ops.iter().collect();
    let stored = stored_at(2, 5);
    let out = plain(operations(&refs, &shared(&stored, None), None));
    let filter = upsert_of(&out[0]).update_filter.clone().unwrap();
    let expected = fence::per_point([
        (
            mapping::point_id(&PointKey::Num(1)),
            Position {
                commit_lsn: 10,
                seq: 0,
            },
        ),
        (
            mapping::point_id(&PointKey::Num(2)),
            Position {
                commit_lsn: 10,
                seq: 1,
            },
        ),
    ]);
    assert_eq!(
        filter, expected,
        "one fence clause per point, absent or not"
    );
    assert!(
        !filter
            .should
            .iter()
            .any(|c| matches!(c.condition_one_of, Some(ConditionOneOf::HasId(_)))),
        "no bare has_id clause: {filter:?}"
    );
}

#[test]
fn the_sole_writer_fences_points_the_read_found_absent_with_one_has_id() {
    let ops = [upsert(1, 10, 0), upsert(2, 10, 1), upsert(3, 10, 2)];
    let refs: Vec<&Op> = ops.iter().collect();
    let stored = stored_at(2, 5);
    let sole = Fencing {
        stored: &stored,
        above: None,
        sole_writer: true,
    };
    let filter = upsert_of(&plain(operations(&refs, &sole, None))[0])
        .update_filter
        .clone()
        .unwrap();
    let kinds: Vec<_> = filter
        .should
        .iter()
        .map(|c| matches!(c.condition_one_of, Some(ConditionOneOf::HasId(_))))
        .collect();
    assert_eq!(
        kinds,
        [false, true],
        "point 2's own clause, then one has_id for the absent 1 and 3: {filter:?}"
    );
}

#[test]
fn points_stored_newer_are_left_out_and_last_op_per_id_wins() {
    let ops = [upsert(1, 10, 0), upsert(1, 10, 3), upsert(2, 10, 1)];
    let refs: Vec<&Op> = ops.iter().collect();
    let stored: Stored = [(
        PointKey::Num(2),
        Some(Position {
            commit_lsn: 20,
            seq: 0,
        }),
    )]
    .into_iter()
    .collect();
    let out = plain(operations(&refs, &shared(&stored, None), None));
    let list = upsert_of(&out[0]);
    assert_eq!(list.points.len(), 1);
    assert_eq!(
        list.points[0].id,
        Some(mapping::point_id(&PointKey::Num(1)))
    );
    let everything_stale = plain(operations(&refs[2..], &shared(&stored, None), None));
    assert!(everything_stale.is_empty());
}

#[test]
fn stream_changes_above_the_newest_stored_position_go_unfenced_copies_never() {
    let mut copied = upsert(3, 30, 0);
    if let Op::Upsert { copied: c, .. } = &mut copied {
        *c = true;
    }
    let ops = [upsert(1, 30, 0), upsert(2, 10, 0), copied];
    let refs: Vec<&Op> = ops.iter().collect();
    let out = plain(operations(&refs, &shared(&Stored::new(), Some(20)), None));
    assert_eq!(out.len(), 2, "{out:?}");
    let free = upsert_of(&out[0]);
    assert!(free.update_filter.is_none());
    assert_eq!(free.points.len(), 1, "only the stream change above 20");
    let fenced = upsert_of(&out[1]);
    assert!(fenced.update_filter.is_some());
    assert_eq!(
        fenced.points.len(),
        2,
        "the replayed change and the copied row"
    );
    // Unknown newest position: everything fenced.
    let out = plain(operations(&refs, &shared(&Stored::new(), None), None));
    assert_eq!(out.len(), 1);
    assert!(upsert_of(&out[0]).update_filter.is_some());
}

#[test]
fn deletes_above_the_newest_stored_position_select_by_id() {
    let del = |id: u64, lsn: u64| Op::Delete {
        collection: Arc::from("c"),
        key: PointKey::Num(id),
        position: Position {
            commit_lsn: lsn,
            seq: 0,
        },
    };
    let ops = [del(1, 30), del(2, 10)];
    let refs: Vec<&Op> = ops.iter().collect();
    let out = plain(operations(&refs, &shared(&Stored::new(), Some(20)), None));
    let selectors: Vec<_> = out
        .iter()
        .map(|o| match &o.operation {
            Some(Operation::DeletePoints(d)) => d.points.clone().unwrap().points_selector_one_of,
            other => panic!("{other:?}"),
        })
        .collect();
    use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
    assert!(matches!(selectors[0], Some(PointsSelectorOneOf::Points(_))));
    assert!(matches!(selectors[1], Some(PointsSelectorOneOf::Filter(_))));
}

fn sharded_upsert(id: u64, lsn: u64, shard: &str) -> Op {
    let mut op = upsert(id, lsn, 0);
    if let Op::Upsert { doc, .. } = &mut op {
        doc.meta = Some(crate::event::Meta {
            shard: Some(shard.to_owned()),
            ..Default::default()
        });
    }
    op
}

fn keys(names: &[&str]) -> Keys {
    Keys(
        names
            .iter()
            .map(|k| qdrant_client::qdrant::ShardKey::from(*k))
            .collect(),
    )
}

fn selected(sel: &Option<ShardKeySelector>) -> Vec<String> {
    use qdrant_client::qdrant::shard_key::Key;
    sel.iter()
        .flat_map(|s| &s.shard_keys)
        .map(|k| match &k.key {
            Some(Key::Keyword(s)) => s.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn sharded_upserts_go_to_their_key_and_leave_every_other_key() {
    let ops = [
        sharded_upsert(1, 30, "a"),
        sharded_upsert(2, 30, "b"),
        sharded_upsert(3, 10, "a"),
    ];
    let refs: Vec<&Op> = ops.iter().collect();
    let out = plain(operations(
        &refs,
        &shared(&Stored::new(), Some(20)),
        Some(&keys(&["a", "b", "c"])),
    ));
    assert_eq!(out.len(), 4, "{out:#?}");
    // Free upserts by key, then the fenced one, then one delete across every key.
    assert_eq!(selected(&upsert_of(&out[0]).shard_key_selector), ["a"]);
    assert_eq!(upsert_of(&out[0]).points.len(), 1);
    assert_eq!(selected(&upsert_of(&out[1]).shard_key_selector), ["b"]);
    assert!(
        upsert_of(&out[2]).update_filter.is_some(),
        "below 20: fenced"
    );
    let Some(Operation::DeletePoints(moved)) = &out[3].operation else {
        panic!("{:?}", out[3]);
    };
    assert_eq!(selected(&moved.shard_key_selector), ["a", "b", "c"]);
    let text = format!("{moved:?}");
    assert_eq!(
        text.matches("must_not: [Condition").count(),
        3,
        "each group or fenced point is kept in its own key: {text}"
    );
}

#[test]
fn sharded_deletes_name_every_key_and_are_skipped_without_any() {
    let del = Op::Delete {
        collection: Arc::from("c"),
        key: PointKey::Num(1),
        position: Position {
            commit_lsn: 30,
            seq: 0,
        },
    };
    let out = plain(operations(
        &[&del],
        &shared(&Stored::new(), Some(20)),
        Some(&keys(&["a", "b"])),
    ));
    let Some(Operation::DeletePoints(d)) = &out[0].operation else {
        panic!("{out:?}");
    };
    assert_eq!(selected(&d.shard_key_selector), ["a", "b"]);
    assert!(plain(operations(
        &[&del],
        &shared(&Stored::new(), Some(20)),
        Some(&keys(&[]))
    ))
    .is_empty());
    let unsharded = plain(operations(&[&del], &shared(&Stored::new(), Some(20)), None));
    let Some(Operation::DeletePoints(d)) = &unsharded[0].operation else {
        panic!("{unsharded:?}");
    };
    assert!(d.shard_key_selector.is_none());
}

#[test]
fn a_merge_moves_the_position_first_then_sets_the_rest_only_at_that_position() {
    let merge = |embedded: &[&str]| {
        let Op::Upsert {
            collection,
            mut doc,
            ..
        } = upsert(1, 30, 0)
        else {
            unreachable!("an upsert")
        };
        doc.payload.insert("n".into(), 2.into());
        let mut meta = crate::mapping::meta(&Arc::from("public.t"), 0);
        for v in embedded {
            let record = serde_json::json!({"model": "m", "hash": "h"});
            meta.embedded.insert((*v).into(), record);
        }
        doc.meta = Some(meta);
        Op::Merge {
            collection,
            doc,
            table: crate::event::TableName::parse("public.t"),
            row: crate::event::Row::default(),
        }
    };
    // (key set under, the fields set, its fence), in the order written. The metadata's fence
    // is `older_than` (a range); the rest's is `at` (the position matched exactly).
    let sets = |op: &Op| -> Vec<(Option<String>, Vec<String>, &str)> {
        let out = plain(operations(&[op], &shared(&Stored::new(), None), None));
        out.into_iter()
            .map(|o| match o.operation {
                Some(Operation::SetPayload(s)) => {
                    let fence = format!("{:?}", s.points_selector.expect("fenced"));
                    assert!(fence.contains("30"), "{fence}");
                    let mut fields: Vec<String> = s.payload.into_keys().collect();
                    fields.sort();
                    let kind = if fence.contains("Range") {
                        "older"
                    } else {
                        "at"
                    };
                    (s.key, fields, kind)
                }
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let meta: Vec<String> = ["commit_lsn", "commit_time", "lsn", "seq", "table"]
        .map(String::from)
        .into();
    let n = || vec!["n".to_owned()];
    assert_eq!(
        sets(&merge(&["a", "b"])),
        [
            (Some("_pg2qdrant".into()), meta.clone(), "older"),
            (
                Some("_pg2qdrant.embedded".into()),
                vec!["a".into(), "b".into()],
                "at"
            ),
            (None, n(), "at"),
        ]
    );
    // Nothing embedded: the records stored are left as they are.
    assert_eq!(
        sets(&merge(&[])),
        [
            (Some("_pg2qdrant".into()), meta, "older"),
            (None, n(), "at")
        ]
    );
}
