//! pgoutput messages back into bytes: the inverse of [`super::decode`], for tests (round trips,
//! fixtures) and the fuzz corpus.

use super::*;

/// Encodes a message back into pgoutput bytes. Used by tests (round trips, fixtures) and the fuzz
/// corpus; the connector itself only decodes.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    match msg {
        Message::Begin {
            final_lsn,
            commit_time,
            xid,
        } => {
            out.push(TAG_BEGIN);
            out.extend_from_slice(&final_lsn.to_be_bytes());
            out.extend_from_slice(&commit_time.to_be_bytes());
            out.extend_from_slice(&xid.to_be_bytes());
        }
        Message::Commit {
            flags,
            commit_lsn,
            end_lsn,
            commit_time,
        } => {
            out.push(TAG_COMMIT);
            out.push(*flags);
            out.extend_from_slice(&commit_lsn.to_be_bytes());
            out.extend_from_slice(&end_lsn.to_be_bytes());
            out.extend_from_slice(&commit_time.to_be_bytes());
        }
        Message::Origin { lsn, name } => {
            out.push(TAG_ORIGIN);
            out.extend_from_slice(&lsn.to_be_bytes());
            put_cstr(&mut out, name);
        }
        Message::Relation(rel) => put_relation(&mut out, rel),
        Message::Type {
            id,
            namespace,
            name,
        } => {
            out.push(TAG_TYPE);
            out.extend_from_slice(&id.to_be_bytes());
            put_cstr(&mut out, namespace);
            put_cstr(&mut out, name);
        }
        Message::Insert { relation_id, new } => {
            out.push(TAG_INSERT);
            out.extend_from_slice(&relation_id.to_be_bytes());
            out.push(TUPLE_NEW);
            put_tuple(&mut out, new);
        }
        Message::Update {
            relation_id,
            old,
            new,
        } => put_update(&mut out, *relation_id, old.as_ref(), new),
        Message::Delete { relation_id, old } => {
            out.push(TAG_DELETE);
            out.extend_from_slice(&relation_id.to_be_bytes());
            out.push(old.0);
            put_tuple(&mut out, &old.1);
        }
        Message::Truncate {
            options,
            relation_ids,
        } => {
            out.push(TAG_TRUNCATE);
            out.extend_from_slice(&(relation_ids.len() as i32).to_be_bytes());
            out.push(*options);
            for id in relation_ids {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        Message::LogicalMessage {
            transactional,
            lsn,
            prefix,
            content,
        } => put_logical_message(&mut out, *transactional, *lsn, prefix, content),
    }
    out
}

fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_tuple(out: &mut Vec<u8>, t: &Tuple) {
    out.extend_from_slice(&(t.len() as i16).to_be_bytes());
    for c in t {
        match c {
            Cell::Null => out.push(CELL_NULL),
            Cell::UnchangedToast => out.push(CELL_UNCHANGED_TOAST),
            Cell::Text(s) => {
                out.push(CELL_TEXT);
                out.extend_from_slice(&(s.len() as i32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Cell::Binary(b) => {
                out.push(CELL_BINARY);
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

fn put_relation(out: &mut Vec<u8>, rel: &Relation) {
    out.push(TAG_RELATION);
    out.extend_from_slice(&rel.id.to_be_bytes());
    put_cstr(out, &rel.namespace);
    put_cstr(out, &rel.name);
    out.push(rel.replica_identity);
    out.extend_from_slice(&(rel.columns.len() as i16).to_be_bytes());
    for c in &rel.columns {
        out.push(c.flags);
        put_cstr(out, &c.name);
        out.extend_from_slice(&c.type_oid.to_be_bytes());
        out.extend_from_slice(&c.type_modifier.to_be_bytes());
    }
}

fn put_update(out: &mut Vec<u8>, relation_id: u32, old: Option<&(u8, Tuple)>, new: &Tuple) {
    out.push(TAG_UPDATE);
    out.extend_from_slice(&relation_id.to_be_bytes());
    if let Some((kind, t)) = old {
        out.push(*kind);
        put_tuple(out, t);
    }
    out.push(TUPLE_NEW);
    put_tuple(out, new);
}

fn put_logical_message(
    out: &mut Vec<u8>,
    transactional: bool,
    lsn: u64,
    prefix: &str,
    content: &[u8],
) {
    out.push(TAG_MESSAGE);
    out.push(u8::from(transactional));
    out.extend_from_slice(&lsn.to_be_bytes());
    put_cstr(out, prefix);
    out.extend_from_slice(&(content.len() as i32).to_be_bytes());
    out.extend_from_slice(content);
}
