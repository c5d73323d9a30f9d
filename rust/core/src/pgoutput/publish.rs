//! The sending side of a logical replication stream: one transaction of inserts as the
//! CopyData frames a walsender would send (`XLogData` carrying a pgoutput message, protocol
//! version 1), with LSNs from the caller's own counter.

use super::message::{BeginBody, CommitBody, InsertBody, Message, RelationBody};
use super::tuple::{TupleData, TupleValue};
use crate::pgwire::backend;
use crate::pgwire::replication::ReplicationMessage;

/// The LSNs given to one encoded transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedLsns {
    /// The LSN of the Commit message, also the `final_lsn` of Begin.
    pub commit_lsn: u64,
    /// The end of the transaction: what the subscriber records as its progress.
    pub end_lsn: u64,
}

/// One insert: the relation it goes to and the values of the relation's columns (text form).
#[derive(Debug, Clone, Copy)]
pub struct PublishedInsert<'a> {
    pub relation_id: u32,
    pub values: &'a [TupleValue<'a>],
}

/// Appends `relations` (sent before the first change) and `inserts` framed as one transaction.
///
/// Begin and each insert get their own LSN, one after the other from `after_lsn + 1` (relations
/// share Begin's, so a transaction's LSNs do not depend on which relations go with it); the
/// Commit's LSN is Begin's `final_lsn` (the subscriber checks they match) and the transaction
/// ends one after it.
pub fn encode_transaction(
    out: &mut Vec<u8>,
    after_lsn: u64,
    xid: u32,
    commit_timestamp: i64,
    send_time: i64,
    relations: &[RelationBody<'_>],
    inserts: &[PublishedInsert<'_>],
) -> PublishedLsns {
    let first = after_lsn + 1;
    let commit_lsn = first + 1 + inserts.len() as u64;
    let end_lsn = commit_lsn + 1;
    let mut payload = Vec::with_capacity(256);
    let mut tuple = Vec::with_capacity(256);
    let mut lsn = first;
    let send = |out: &mut Vec<u8>, payload: &mut Vec<u8>, lsn: u64, wal_end: u64| {
        let mut frame = Vec::with_capacity(payload.len() + 25);
        ReplicationMessage::XLogData {
            wal_start: lsn,
            wal_end,
            send_time,
            data: payload,
        }
        .encode_into(&mut frame);
        backend::copy_data(out, &frame);
        payload.clear();
    };
    Message::Begin(BeginBody {
        final_lsn: commit_lsn,
        commit_timestamp,
        xid,
    })
    .encode_into(&mut payload);
    send(out, &mut payload, lsn, lsn);
    for r in relations {
        Message::Relation(r.clone()).encode_into(&mut payload);
        send(out, &mut payload, lsn, lsn);
    }
    for i in inserts {
        lsn += 1;
        Message::Insert(InsertBody {
            xid: None,
            relation_id: i.relation_id,
            new: TupleData::build(&mut tuple, i.values),
        })
        .encode_into(&mut payload);
        send(out, &mut payload, lsn, lsn);
    }
    debug_assert_eq!(lsn + 1, commit_lsn);
    Message::Commit(CommitBody {
        flags: 0,
        commit_lsn,
        end_lsn,
        commit_timestamp,
    })
    .encode_into(&mut payload);
    send(out, &mut payload, commit_lsn, end_lsn);
    PublishedLsns {
        commit_lsn,
        end_lsn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::{Decoded, Decoder, RelationColumn};
    use crate::pgwire::backend::BackendMessage;
    use crate::pgwire::{split_frame, DEFAULT_MAX_MESSAGE};

    fn relation() -> RelationBody<'static> {
        RelationBody {
            xid: None,
            id: 16384,
            namespace: "public",
            name: "items",
            replica_identity: b'd',
            columns: vec![
                RelationColumn {
                    flags: 1,
                    name: "id",
                    type_oid: 25,
                    type_modifier: -1,
                },
                RelationColumn {
                    flags: 0,
                    name: "n",
                    type_oid: 23,
                    type_modifier: -1,
                },
            ],
        }
    }

    fn frames(buf: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(f) = split_frame(&buf[pos..], DEFAULT_MAX_MESSAGE).unwrap() {
            pos += f.wire_len();
            let BackendMessage::CopyData(d) = BackendMessage::parse(f).unwrap() else {
                panic!("not CopyData")
            };
            out.push(d.to_vec());
        }
        assert_eq!(pos, buf.len());
        out
    }

    #[test]
    fn a_transaction_decodes_back_with_its_lsns() {
        let mut out = Vec::new();
        let v1 = [TupleValue::Text(b"a"), TupleValue::Text(b"1")];
        let v2 = [TupleValue::Text(b"b"), TupleValue::Null];
        let inserts = [
            PublishedInsert {
                relation_id: 16384,
                values: &v1,
            },
            PublishedInsert {
                relation_id: 16384,
                values: &v2,
            },
        ];
        let lsns = encode_transaction(&mut out, 100, 0, 5_000_000, 7, &[relation()], &inserts);
        // Begin and Relation 101, Inserts 102 and 103, Commit 104, end 105
        assert_eq!(
            lsns,
            PublishedLsns {
                commit_lsn: 104,
                end_lsn: 105
            }
        );
        let payloads = frames(&out);
        assert_eq!(payloads.len(), 5);
        let starts: Vec<u64> = payloads
            .iter()
            .map(|p| match ReplicationMessage::parse(p).unwrap() {
                ReplicationMessage::XLogData { wal_start, .. } => wal_start,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(starts, [101, 101, 102, 103, 104]);
        let mut decoder = Decoder::new();
        let mut decoded = Vec::new();
        for p in &payloads {
            decoder.decode_payload(p, &mut decoded).unwrap();
        }
        assert_eq!(decoded.len(), 1);
        let Decoded::Transaction(t) = &decoded[0] else {
            panic!("not a transaction")
        };
        assert_eq!((t.commit_lsn, t.end_lsn, t.xid), (104, 105, 0));
        assert_eq!(t.changes.len(), 2);
    }

    #[test]
    fn no_relations_no_inserts() {
        let mut out = Vec::new();
        let lsns = encode_transaction(&mut out, 0, 3, 0, 0, &[], &[]);
        assert_eq!((lsns.commit_lsn, lsns.end_lsn), (2, 3));
        assert_eq!(frames(&out).len(), 2);
    }
}
