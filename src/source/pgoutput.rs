//! A pure decoder for pgoutput protocol version 1 messages.
//!
//! The replication transport hands us the payload of each `XLogData` frame; this module turns
//! those bytes into [`Message`]s and nothing else: no I/O, no allocation before a length is
//! checked against what is left, and an explicit [`DecodeError`] for every malformed input
//! (unknown tag, short buffer, bad UTF-8), so random bytes can never panic it (see
//! `fuzz/fuzz_targets/pgoutput.rs`).
//!
//! ```text
//!  XLogData bytes ──decode()──▶ Message::{Begin, Commit, Origin, Relation, Type,
//!                                         Insert, Update, Delete, Truncate, LogicalMessage}
//! ```
//!
//! Layouts follow "Logical Replication Message Formats" (PostgreSQL 15 docs), protocol v1 (no
//! streaming of in-progress transactions, so no xid fields inside change messages).

pub const TAG_BEGIN: u8 = b'B';
pub const TAG_COMMIT: u8 = b'C';
pub const TAG_ORIGIN: u8 = b'O';
pub const TAG_RELATION: u8 = b'R';
pub const TAG_TYPE: u8 = b'Y';
pub const TAG_INSERT: u8 = b'I';
pub const TAG_UPDATE: u8 = b'U';
pub const TAG_DELETE: u8 = b'D';
pub const TAG_TRUNCATE: u8 = b'T';
pub const TAG_MESSAGE: u8 = b'M';

pub const TUPLE_NEW: u8 = b'N';
pub const TUPLE_KEY: u8 = b'K';
pub const TUPLE_OLD: u8 = b'O';

pub const CELL_NULL: u8 = b'n';
pub const CELL_UNCHANGED_TOAST: u8 = b'u';
pub const CELL_TEXT: u8 = b't';
pub const CELL_BINARY: u8 = b'b';

/// Relation column flag: the column is part of the replica identity key.
pub const COLUMN_FLAG_KEY: u8 = 1;

/// Truncate option bits.
pub const TRUNCATE_CASCADE: u8 = 1;
pub const TRUNCATE_RESTART_IDENTITY: u8 = 2;

pub use crate::error::DecodeError;
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

impl RelationColumn {
    pub fn is_key(&self) -> bool {
        self.flags & COLUMN_FLAG_KEY != 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// One column value of a tuple as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    /// An unchanged TOASTed value: the server did not send it; the sink must keep what it has.
    UnchangedToast,
    Text(String),
    /// The value's bytes, shared with the message they came in (no copy per value).
    Binary(Bytes),
}

pub type Tuple = Vec<Cell>;

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    Begin {
        final_lsn: u64,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    Origin {
        lsn: u64,
        name: String,
    },
    Relation(Relation),
    Type {
        id: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation_id: u32,
        new: Tuple,
    },
    /// `old` is the `K` (key only) or `O` (whole old row) tuple when the server sent one.
    Update {
        relation_id: u32,
        old: Option<(u8, Tuple)>,
        new: Tuple,
    },
    Delete {
        relation_id: u32,
        old: (u8, Tuple),
    },
    Truncate {
        options: u8,
        relation_ids: Vec<u32>,
    },
    LogicalMessage {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Vec<u8>,
    },
}

struct Reader<'a> {
    buf: &'a [u8],
    /// The whole message, which binary values are slices of.
    whole: &'a Bytes,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Short {
                what,
                need: n,
                have: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Unterminated { what })?;
        let s = std::str::from_utf8(&self.buf[..end]).map_err(|_| DecodeError::Utf8 { what })?;
        self.buf = &self.buf[end + 1..];
        Ok(s.to_owned())
    }
    /// A non-negative count whose items need at least `min_item_bytes` each: rejects counts the
    /// remaining buffer cannot possibly hold before anything is allocated.
    fn count(
        &self,
        n: i64,
        min_item_bytes: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        if n < 0 {
            return Err(DecodeError::NegativeCount { what, count: n });
        }
        let n = n as usize;
        let need = n.saturating_mul(min_item_bytes);
        if need > self.buf.len() {
            return Err(DecodeError::Short {
                what,
                need,
                have: self.buf.len(),
            });
        }
        Ok(n)
    }
}

/// Decodes one pgoutput message. Never panics; every byte must be consumed. Binary values are
/// slices of `bytes`, which they keep alive.
pub fn decode(bytes: &Bytes) -> Result<Message, DecodeError> {
    let (&tag, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    let mut r = Reader {
        buf: rest,
        whole: bytes,
    };
    let msg = match tag {
        TAG_BEGIN => Message::Begin {
            final_lsn: r.u64("begin.final_lsn")?,
            commit_time: r.i64("begin.commit_time")?,
            xid: r.u32("begin.xid")?,
        },
        TAG_COMMIT => Message::Commit {
            flags: r.u8("commit.flags")?,
            commit_lsn: r.u64("commit.lsn")?,
            end_lsn: r.u64("commit.end_lsn")?,
            commit_time: r.i64("commit.commit_time")?,
        },
        TAG_ORIGIN => Message::Origin {
            lsn: r.u64("origin.lsn")?,
            name: r.cstr("origin.name")?,
        },
        TAG_RELATION => Message::Relation(relation(&mut r)?),
        TAG_TYPE => Message::Type {
            id: r.u32("type.id")?,
            namespace: r.cstr("type.namespace")?,
            name: r.cstr("type.name")?,
        },
        TAG_INSERT => {
            let relation_id = r.u32("insert.relation_id")?;
            expect(&mut r, TUPLE_NEW, "insert.tuple_kind")?;
            Message::Insert {
                relation_id,
                new: tuple(&mut r)?,
            }
        }
        TAG_UPDATE => update(&mut r)?,
        TAG_DELETE => {
            let relation_id = r.u32("delete.relation_id")?;
            let kind = r.u8("delete.tuple_kind")?;
            if kind != TUPLE_KEY && kind != TUPLE_OLD {
                return Err(DecodeError::Unexpected {
                    what: "delete.tuple_kind",
                    byte: kind,
                });
            }
            Message::Delete {
                relation_id,
                old: (kind, tuple(&mut r)?),
            }
        }
        TAG_TRUNCATE => truncate(&mut r)?,
        TAG_MESSAGE => logical_message(&mut r)?,
        other => return Err(DecodeError::UnknownTag(other)),
    };
    if !r.buf.is_empty() {
        return Err(DecodeError::Trailing(r.buf.len()));
    }
    Ok(msg)
}

/// An UPDATE's body: its relation, the old tuple if one was sent (the key, or the whole old
/// row under `REPLICA IDENTITY FULL`), and the new tuple.
fn update(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let relation_id = r.u32("update.relation_id")?;
    let kind = r.u8("update.tuple_kind")?;
    let (old, new) = match kind {
        TUPLE_KEY | TUPLE_OLD => {
            let old = tuple(r)?;
            expect(r, TUPLE_NEW, "update.new_tuple_kind")?;
            (Some((kind, old)), tuple(r)?)
        }
        TUPLE_NEW => (None, tuple(r)?),
        byte => {
            return Err(DecodeError::Unexpected {
                what: "update.tuple_kind",
                byte,
            })
        }
    };
    Ok(Message::Update {
        relation_id,
        old,
        new,
    })
}

/// A TRUNCATE's body: its options and the relations truncated.
fn truncate(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let n = r.i32("truncate.count")?;
    let options = r.u8("truncate.options")?;
    let n = r.count(n.into(), 4, "truncate.relation_ids")?;
    let mut relation_ids = Vec::with_capacity(n);
    for _ in 0..n {
        relation_ids.push(r.u32("truncate.relation_id")?);
    }
    Ok(Message::Truncate {
        options,
        relation_ids,
    })
}

/// A logical decoding message's body (`pg_logical_emit_message`).
fn logical_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let flags = r.u8("message.flags")?;
    let lsn = r.u64("message.lsn")?;
    let prefix = r.cstr("message.prefix")?;
    let len = r.i32("message.length")?;
    let len = r.count(len.into(), 1, "message.content")?;
    let content = r.take(len, "message.content")?.to_vec();
    Ok(Message::LogicalMessage {
        transactional: flags & 1 != 0,
        lsn,
        prefix,
        content,
    })
}

fn expect(r: &mut Reader<'_>, want: u8, what: &'static str) -> Result<(), DecodeError> {
    match r.u8(what)? {
        b if b == want => Ok(()),
        byte => Err(DecodeError::Unexpected { what, byte }),
    }
}

fn relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let id = r.u32("relation.id")?;
    let namespace = r.cstr("relation.namespace")?;
    let name = r.cstr("relation.name")?;
    let replica_identity = r.u8("relation.replica_identity")?;
    let n = r.i16("relation.column_count")?;
    // flags(1) + name NUL(1) + type oid(4) + typmod(4)
    let n = r.count(n.into(), 10, "relation.columns")?;
    let mut columns = Vec::with_capacity(n);
    for _ in 0..n {
        columns.push(RelationColumn {
            flags: r.u8("relation.column.flags")?,
            name: r.cstr("relation.column.name")?,
            type_oid: r.u32("relation.column.type_oid")?,
            type_modifier: r.i32("relation.column.type_modifier")?,
        });
    }
    Ok(Relation {
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn tuple(r: &mut Reader<'_>) -> Result<Tuple, DecodeError> {
    let n = r.i16("tuple.column_count")?;
    let n = r.count(n.into(), 1, "tuple.columns")?;
    let mut cells = Vec::with_capacity(n);
    for _ in 0..n {
        let cell = match r.u8("tuple.cell_kind")? {
            CELL_NULL => Cell::Null,
            CELL_UNCHANGED_TOAST => Cell::UnchangedToast,
            kind @ (CELL_TEXT | CELL_BINARY) => {
                let len = r.i32("tuple.cell_length")?;
                let len = r.count(len.into(), 1, "tuple.cell")?;
                let raw = r.take(len, "tuple.cell")?;
                if kind == CELL_TEXT {
                    let s = std::str::from_utf8(raw)
                        .map_err(|_| DecodeError::Utf8 { what: "tuple.cell" })?;
                    Cell::Text(s.to_owned())
                } else {
                    Cell::Binary(r.whole.slice_ref(raw))
                }
            }
            byte => {
                return Err(DecodeError::Unexpected {
                    what: "tuple.cell_kind",
                    byte,
                })
            }
        };
        cells.push(cell);
    }
    Ok(cells)
}

mod encode;
pub use encode::encode;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_insert_with_every_cell_kind() {
        let msg = Message::Insert {
            relation_id: 16384,
            new: vec![
                Cell::Text("1".into()),
                Cell::Null,
                Cell::UnchangedToast,
                Cell::Binary(Bytes::from_static(&[1, 2])),
            ],
        };
        assert_eq!(decode(&encode(&msg).into()).unwrap(), msg);
    }

    #[test]
    fn rejects_unknown_tag_and_short_input() {
        assert_eq!(
            decode(&Bytes::from_static(b"Z")),
            Err(DecodeError::UnknownTag(b'Z'))
        );
        assert_eq!(decode(&Bytes::new()), Err(DecodeError::Empty));
        assert!(matches!(
            decode(&Bytes::from_static(b"I\0\0")),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn huge_counts_fail_before_allocating() {
        // Truncate claiming 2^31-1 relations with nothing behind it.
        let bytes = [b'T', 0x7f, 0xff, 0xff, 0xff, 0];
        assert!(matches!(
            decode(&Bytes::copy_from_slice(&bytes)),
            Err(DecodeError::Short { .. })
        ));
        let neg = [b'T', 0xff, 0xff, 0xff, 0xff, 0];
        assert!(matches!(
            decode(&Bytes::copy_from_slice(&neg)),
            Err(DecodeError::NegativeCount { .. })
        ));
    }

    #[test]
    fn update_with_key_tuple_keeps_old_key() {
        let msg = Message::Update {
            relation_id: 7,
            old: Some((TUPLE_KEY, vec![Cell::Text("1".into()), Cell::Null])),
            new: vec![Cell::Text("2".into()), Cell::Text("x".into())],
        };
        assert_eq!(decode(&encode(&msg).into()).unwrap(), msg);
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut b = encode(&Message::Type {
            id: 1,
            namespace: "public".into(),
            name: "vector".into(),
        });
        b.push(0);
        assert_eq!(decode(&b.into()), Err(DecodeError::Trailing(1)));
    }

    fn cell() -> impl Strategy<Value = Cell> {
        prop_oneof![
            Just(Cell::Null),
            Just(Cell::UnchangedToast),
            ".{0,40}".prop_map(Cell::Text),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Cell::Binary(b.into())),
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_ ]{0,20}"
    }

    fn message() -> impl Strategy<Value = Message> {
        let tuple = || proptest::collection::vec(cell(), 0..8);
        prop_oneof![
            (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| {
                Message::Begin {
                    final_lsn,
                    commit_time,
                    xid,
                }
            }),
            (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
                |(flags, commit_lsn, end_lsn, commit_time)| {
                    Message::Commit {
                        flags,
                        commit_lsn,
                        end_lsn,
                        commit_time,
                    }
                }
            ),
            (
                any::<u32>(),
                name(),
                name(),
                any::<u8>(),
                proptest::collection::vec((any::<u8>(), name(), any::<u32>(), any::<i32>()), 0..6)
            )
                .prop_map(|(id, namespace, n, ri, cols)| Message::Relation(Relation {
                    id,
                    namespace,
                    name: n,
                    replica_identity: ri,
                    columns: cols
                        .into_iter()
                        .map(|(flags, name, type_oid, type_modifier)| RelationColumn {
                            flags,
                            name,
                            type_oid,
                            type_modifier
                        })
                        .collect(),
                })),
            (any::<u32>(), tuple())
                .prop_map(|(relation_id, new)| Message::Insert { relation_id, new }),
            (
                any::<u32>(),
                proptest::option::of((prop_oneof![Just(TUPLE_KEY), Just(TUPLE_OLD)], tuple())),
                tuple()
            )
                .prop_map(|(relation_id, old, new)| Message::Update {
                    relation_id,
                    old,
                    new
                }),
            (
                any::<u32>(),
                prop_oneof![Just(TUPLE_KEY), Just(TUPLE_OLD)],
                tuple()
            )
                .prop_map(|(relation_id, k, t)| Message::Delete {
                    relation_id,
                    old: (k, t)
                }),
            (any::<u8>(), proptest::collection::vec(any::<u32>(), 0..5)).prop_map(
                |(options, relation_ids)| Message::Truncate {
                    options,
                    relation_ids
                }
            ),
            (
                any::<bool>(),
                any::<u64>(),
                name(),
                proptest::collection::vec(any::<u8>(), 0..30)
            )
                .prop_map(|(transactional, lsn, prefix, content)| {
                    Message::LogicalMessage {
                        transactional,
                        lsn,
                        prefix,
                        content,
                    }
                }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(msg in message()) {
            prop_assert_eq!(decode(&encode(&msg).into()).unwrap(), msg);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes.into());
        }

        #[test]
        fn every_truncation_of_a_valid_message_is_an_error(msg in message(), cut in 0usize..64) {
            let bytes = encode(&msg);
            if cut < bytes.len() {
                prop_assert!(decode(&Bytes::copy_from_slice(&bytes[..cut])).is_err());
            }
        }
    }
}
