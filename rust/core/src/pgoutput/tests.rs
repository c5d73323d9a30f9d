//! Round trips of every message through the encoder and the parser, malformed input, and the
//! stream decoder's transaction assembly.

use proptest::prelude::*;

use super::*;
use crate::pgwire::replication::ReplicationMessage;
use crate::value::{oid, Value};

// ---- owned mirrors of the messages, for proptest ------------------------------------------

#[derive(Debug, Clone)]
enum OwnedValue {
    Null,
    Toast,
    Text(Vec<u8>),
    Binary(Vec<u8>),
}

impl OwnedValue {
    fn borrow(&self) -> TupleValue<'_> {
        match self {
            OwnedValue::Null => TupleValue::Null,
            OwnedValue::Toast => TupleValue::UnchangedToast,
            OwnedValue::Text(b) => TupleValue::Text(b),
            OwnedValue::Binary(b) => TupleValue::Binary(b),
        }
    }
}

fn values() -> impl Strategy<Value = Vec<OwnedValue>> {
    prop::collection::vec(
        prop_oneof![
            Just(OwnedValue::Null),
            Just(OwnedValue::Toast),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(OwnedValue::Text),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(OwnedValue::Binary),
        ],
        0..8,
    )
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ é\"]{0,12}"
}

#[derive(Debug, Clone)]
enum Owned {
    Begin(BeginBody),
    Commit(CommitBody),
    Origin(u64, String),
    Relation(
        Option<u32>,
        u32,
        String,
        String,
        u8,
        Vec<(u8, String, u32, i32)>,
    ),
    Type(Option<u32>, u32, String, String),
    Insert(Option<u32>, u32, Vec<OwnedValue>),
    Update(
        Option<u32>,
        u32,
        Option<(bool, Vec<OwnedValue>)>,
        Vec<OwnedValue>,
    ),
    Delete(Option<u32>, u32, bool, Vec<OwnedValue>),
    Truncate(TruncateBody),
    Message(Option<u32>, u8, u64, String, Vec<u8>),
    StreamStart(StreamStartBody),
    StreamStop,
    StreamCommit(StreamCommitBody),
    StreamAbort(StreamAbortBody),
}

fn owned_messages() -> impl Strategy<Value = Owned> {
    let xid = any::<Option<u32>>();
    prop_oneof![
        (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(
            |(final_lsn, commit_timestamp, xid)| {
                Owned::Begin(BeginBody {
                    final_lsn,
                    commit_timestamp,
                    xid,
                })
            }
        ),
        (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(|(flags, c, e, t)| {
            Owned::Commit(CommitBody {
                flags,
                commit_lsn: c,
                end_lsn: e,
                commit_timestamp: t,
            })
        }),
        (any::<u64>(), name()).prop_map(|(l, n)| Owned::Origin(l, n)),
        (
            xid.clone(),
            any::<u32>(),
            name(),
            name(),
            any::<u8>(),
            prop::collection::vec((any::<u8>(), name(), any::<u32>(), any::<i32>()), 0..6)
        )
            .prop_map(|(x, id, ns, n, ri, cols)| Owned::Relation(x, id, ns, n, ri, cols)),
        (xid.clone(), any::<u32>(), name(), name())
            .prop_map(|(x, id, ns, n)| Owned::Type(x, id, ns, n)),
        (xid.clone(), any::<u32>(), values()).prop_map(|(x, r, v)| Owned::Insert(x, r, v)),
        (
            xid.clone(),
            any::<u32>(),
            proptest::option::of((any::<bool>(), values())),
            values()
        )
            .prop_map(|(x, r, o, v)| Owned::Update(x, r, o, v)),
        (xid.clone(), any::<u32>(), any::<bool>(), values())
            .prop_map(|(x, r, k, v)| Owned::Delete(x, r, k, v)),
        (
            xid.clone(),
            any::<u8>(),
            prop::collection::vec(any::<u32>(), 0..5)
        )
            .prop_map(
                |(xid, options, relation_ids)| Owned::Truncate(TruncateBody {
                    xid,
                    options,
                    relation_ids
                })
            ),
        (
            xid,
            any::<u8>(),
            any::<u64>(),
            name(),
            prop::collection::vec(any::<u8>(), 0..30)
        )
            .prop_map(|(x, f, l, p, c)| Owned::Message(x, f, l, p, c)),
        (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| Owned::StreamStart(
            StreamStartBody { xid, first_segment }
        )),
        Just(Owned::StreamStop),
        (
            any::<u32>(),
            any::<u8>(),
            any::<u64>(),
            any::<u64>(),
            any::<i64>()
        )
            .prop_map(
                |(xid, flags, c, e, t)| Owned::StreamCommit(StreamCommitBody {
                    xid,
                    flags,
                    commit_lsn: c,
                    end_lsn: e,
                    commit_timestamp: t
                })
            ),
        (any::<u32>(), any::<u32>(), any::<Option<(u64, i64)>>()).prop_map(
            |(xid, subxid, abort)| { Owned::StreamAbort(StreamAbortBody { xid, subxid, abort }) }
        ),
    ]
}

fn borrow_values(v: &[OwnedValue]) -> Vec<TupleValue<'_>> {
    v.iter().map(OwnedValue::borrow).collect()
}

/// Encodes the message, parses it back, and checks both the value and the re-encoding.
fn round_trip(o: &Owned) {
    let (mut b1, mut b2) = (Vec::new(), Vec::new());
    let msg = match o {
        Owned::Begin(b) => Message::Begin(*b),
        Owned::Commit(c) => Message::Commit(*c),
        Owned::Origin(l, n) => Message::Origin(OriginBody {
            commit_lsn: *l,
            name: n,
        }),
        Owned::Relation(xid, id, ns, n, ri, cols) => Message::Relation(RelationBody {
            xid: *xid,
            id: *id,
            namespace: ns,
            name: n,
            replica_identity: *ri,
            columns: cols
                .iter()
                .map(|(flags, name, type_oid, type_modifier)| RelationColumn {
                    flags: *flags,
                    name,
                    type_oid: *type_oid,
                    type_modifier: *type_modifier,
                })
                .collect(),
        }),
        Owned::Type(xid, id, ns, n) => Message::Type(TypeBody {
            xid: *xid,
            id: *id,
            namespace: ns,
            name: n,
        }),
        Owned::Insert(xid, r, v) => Message::Insert(InsertBody {
            xid: *xid,
            relation_id: *r,
            new: TupleData::build(&mut b1, &borrow_values(v)),
        }),
        Owned::Update(xid, r, old, v) => {
            let old = old.as_ref().map(|(key, ov)| {
                let t = TupleData::build(&mut b2, &borrow_values(ov));
                if *key {
                    OldTuple::Key(t)
                } else {
                    OldTuple::Full(t)
                }
            });
            Message::Update(UpdateBody {
                xid: *xid,
                relation_id: *r,
                old,
                new: TupleData::build(&mut b1, &borrow_values(v)),
            })
        }
        Owned::Delete(xid, r, key, v) => {
            let t = TupleData::build(&mut b1, &borrow_values(v));
            Message::Delete(DeleteBody {
                xid: *xid,
                relation_id: *r,
                old: if *key {
                    OldTuple::Key(t)
                } else {
                    OldTuple::Full(t)
                },
            })
        }
        Owned::Truncate(t) => Message::Truncate(t.clone()),
        Owned::Message(xid, flags, lsn, prefix, content) => {
            Message::LogicalMessage(LogicalMessageBody {
                xid: *xid,
                flags: *flags,
                lsn: *lsn,
                prefix,
                content,
            })
        }
        Owned::StreamStart(s) => Message::StreamStart(*s),
        Owned::StreamStop => Message::StreamStop,
        Owned::StreamCommit(c) => Message::StreamCommit(*c),
        Owned::StreamAbort(a) => Message::StreamAbort(*a),
    };
    let mut bytes = Vec::new();
    msg.encode_into(&mut bytes);
    let parsed = Message::parse(&bytes, msg.streamed_xid().is_some()).unwrap();
    assert_eq!(parsed, msg);
    let mut again = Vec::new();
    parsed.encode_into(&mut again);
    assert_eq!(again, bytes);
    if let Message::Insert(i) = &parsed {
        let (Owned::Insert(_, _, v), true) = (o, true) else {
            unreachable!()
        };
        assert_eq!(i.new.iter().collect::<Vec<_>>(), borrow_values(v));
    }
    // Every strict prefix is an error, never a panic (a Stream Abort without its optional
    // abort position is itself complete).
    for cut in 0..bytes.len() {
        let r = Message::parse(&bytes[..cut], msg.streamed_xid().is_some());
        let complete_abort = matches!(msg, Message::StreamAbort(_)) && cut == 9;
        assert!(
            r.is_err() || complete_abort,
            "prefix {cut} of {msg:?} parsed"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips(o in owned_messages()) {
        round_trip(&o);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64), streaming: bool) {
        let _ = Message::parse(&bytes, streaming);
    }

    #[test]
    fn decoder_never_panics(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 0..12)) {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for p in &payloads {
            let mut framed = vec![b'w'];
            framed.extend_from_slice(&[0u8; 24]);
            framed.extend_from_slice(p);
            let _ = d.decode_payload(&framed, &mut out);
            let _ = d.decode_payload(p, &mut out);
        }
    }
}

// ---- the stream decoder ---------------------------------------------------------------------

fn xlog(lsn: u64, msg: &Message<'_>) -> Vec<u8> {
    let mut data = Vec::new();
    msg.encode_into(&mut data);
    let mut out = Vec::new();
    ReplicationMessage::XLogData {
        wal_start: lsn,
        wal_end: lsn + 100,
        send_time: 0,
        data: &data,
    }
    .encode_into(&mut out);
    out
}

fn relation(xid: Option<u32>, id: u32, name: &str) -> Message<'_> {
    Message::Relation(RelationBody {
        xid,
        id,
        namespace: "public",
        name,
        replica_identity: b'd',
        columns: vec![
            RelationColumn {
                flags: 1,
                name: "id",
                type_oid: oid::INT8,
                type_modifier: -1,
            },
            RelationColumn {
                flags: 0,
                name: "v",
                type_oid: oid::TEXT,
                type_modifier: -1,
            },
        ],
    })
}

fn begin(xid: u32) -> Message<'static> {
    Message::Begin(BeginBody {
        final_lsn: 0x200,
        commit_timestamp: 7,
        xid,
    })
}

fn commit(lsn: u64) -> Message<'static> {
    Message::Commit(CommitBody {
        flags: 0,
        commit_lsn: lsn,
        end_lsn: lsn + 8,
        commit_timestamp: 7,
    })
}

/// A stream of messages, each in its own XLogData at increasing LSNs.
struct Stream {
    payloads: Vec<Vec<u8>>,
    lsn: u64,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            payloads: Vec::new(),
            lsn: 0x100,
        }
    }

    fn push(&mut self, m: Message<'_>) -> &mut Self {
        self.lsn += 0x10;
        self.payloads.push(xlog(self.lsn, &m));
        self
    }

    fn insert(&mut self, xid: Option<u32>, rel: u32, id: &str, v: Option<&str>) -> &mut Self {
        let mut buf = Vec::new();
        let vals = [
            TupleValue::Text(id.as_bytes()),
            v.map_or(TupleValue::Null, |s| TupleValue::Text(s.as_bytes())),
        ];
        let new = TupleData::build(&mut buf, &vals);
        self.push(Message::Insert(InsertBody {
            xid,
            relation_id: rel,
            new,
        }))
    }

    fn decode(&self, d: &mut Decoder) -> Result<Vec<Decoded>, StreamError> {
        let mut out = Vec::new();
        d.decode_into(self.payloads.iter().map(Vec::as_slice), &mut out)?;
        Ok(out)
    }
}

fn transactions(out: Vec<Decoded>) -> Vec<Transaction> {
    out.into_iter()
        .filter_map(|d| match d {
            Decoded::Transaction(t) => Some(t),
            Decoded::Message(_) => None,
        })
        .collect()
}

fn ids(t: &Transaction) -> Vec<i64> {
    t.changes
        .iter()
        .map(|c| match c {
            Change::Insert { new, .. } => match &new[0] {
                Datum::Value(Value::Int(i)) => *i,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn plain_transaction_with_every_change() {
    let mut s = Stream::new();
    s.push(begin(42)).push(relation(None, 16384, "t"));
    s.insert(None, 16384, "1", Some("one"));
    let (mut k, mut n) = (Vec::new(), Vec::new());
    s.push(Message::Update(UpdateBody {
        xid: None,
        relation_id: 16384,
        old: Some(OldTuple::Key(TupleData::build(
            &mut k,
            &[TupleValue::Text(b"1"), TupleValue::Null],
        ))),
        new: TupleData::build(
            &mut n,
            &[TupleValue::Text(b"2"), TupleValue::UnchangedToast],
        ),
    }));
    s.push(Message::Delete(DeleteBody {
        xid: None,
        relation_id: 16384,
        old: OldTuple::Full(TupleData::build(
            &mut k,
            &[TupleValue::Text(b"2"), TupleValue::Text(b"x")],
        )),
    }));
    s.push(Message::Truncate(TruncateBody {
        xid: None,
        options: truncate::CASCADE,
        relation_ids: vec![16384],
    }));
    s.push(Message::LogicalMessage(LogicalMessageBody {
        xid: None,
        flags: 1,
        lsn: 0x150,
        prefix: "p",
        content: b"hi",
    }));
    s.push(Message::Origin(OriginBody {
        commit_lsn: 1,
        name: "elsewhere",
    }));
    s.push(commit(0x200));
    let mut d = Decoder::new();
    let mut txns = transactions(s.decode(&mut d).unwrap());
    assert_eq!(txns.len(), 1);
    let t = txns.pop().unwrap();
    assert_eq!(
        (t.xid, t.commit_lsn, t.end_lsn, t.commit_timestamp),
        (42, 0x200, 0x208, 7)
    );
    assert_eq!(t.origin.as_deref(), Some("elsewhere"));
    assert!(!t.streamed);
    assert_eq!(t.relations.len(), 1);
    assert_eq!(t.changes.len(), 4);
    let Change::Update {
        old: Some(old),
        new,
        ..
    } = &t.changes[1]
    else {
        panic!("{:?}", t.changes[1])
    };
    assert!(old.key_only);
    assert_eq!(
        &*old.row,
        &[Datum::Value(Value::Int(1)), Datum::Value(Value::Null)]
    );
    assert_eq!(
        &new[..],
        &[Datum::Value(Value::Int(2)), Datum::UnchangedToast]
    );
    let Change::Delete { old, .. } = &t.changes[2] else {
        panic!()
    };
    assert!(!old.key_only);
    assert_eq!(old.row[1], Datum::Value(Value::Text("x".into())));
    assert!(matches!(t.changes[3], Change::Truncate { options: 1, .. }));
    assert_eq!(t.messages.len(), 1);
    assert_eq!(t.messages[0].content, b"hi");
    assert!(t.messages[0].transactional);
    assert_eq!(d.relation(16384).unwrap().columns[0].name, "id");
}

#[test]
fn non_transactional_message_and_keepalive() {
    let mut s = Stream::new();
    s.push(Message::LogicalMessage(LogicalMessageBody {
        xid: None,
        flags: 0,
        lsn: 0x150,
        prefix: "p",
        content: b"now",
    }));
    let mut ka = Vec::new();
    ReplicationMessage::PrimaryKeepalive {
        wal_end: 0x9999,
        send_time: 1,
        reply_requested: true,
    }
    .encode_into(&mut ka);
    s.payloads.push(ka);
    let mut d = Decoder::new();
    let out = s.decode(&mut d).unwrap();
    assert!(matches!(&out[..], [Decoded::Message(m)] if m.content == b"now" && !m.transactional));
    assert_eq!(d.server_wal_end(), 0x9999);
    assert!(d.reply_requested());
    assert!(d.take_reply_requested());
    assert!(!d.reply_requested());
}

#[test]
fn streamed_transaction_with_subtransaction_aborts() {
    let top = 500;
    let mut s = Stream::new();
    s.push(Message::StreamStart(StreamStartBody {
        xid: top,
        first_segment: true,
    }));
    s.push(relation(Some(top), 1, "t"));
    s.insert(Some(top), 1, "1", None);
    s.insert(Some(501), 1, "2", None); // subtransaction 501, later rolled back
    s.insert(Some(502), 1, "3", None); // its child, rolled back with it
    s.push(Message::StreamStop);
    // A plain transaction committed meanwhile, interleaved with the stream blocks.
    s.push(relation(None, 2, "u")).push(begin(600));
    s.insert(None, 2, "100", None);
    s.push(commit(0x300));
    s.push(Message::StreamAbort(StreamAbortBody {
        xid: top,
        subxid: 502,
        abort: None,
    }));
    s.push(Message::StreamAbort(StreamAbortBody {
        xid: top,
        subxid: 501,
        abort: None,
    }));
    s.push(Message::StreamStart(StreamStartBody {
        xid: top,
        first_segment: false,
    }));
    s.insert(Some(top), 1, "4", None);
    s.insert(Some(503), 1, "5", None); // released savepoint: kept
    s.push(Message::LogicalMessage(LogicalMessageBody {
        xid: Some(503),
        flags: 1,
        lsn: 0x400,
        prefix: "p",
        content: b"",
    }));
    s.push(Message::StreamStop);
    // A second streamed transaction that aborts entirely.
    s.push(Message::StreamStart(StreamStartBody {
        xid: 700,
        first_segment: true,
    }));
    s.push(relation(Some(700), 1, "t"));
    s.insert(Some(700), 1, "9", None);
    s.push(Message::StreamStop);
    s.push(Message::StreamAbort(StreamAbortBody {
        xid: 700,
        subxid: 700,
        abort: None,
    }));
    s.push(Message::StreamCommit(StreamCommitBody {
        xid: top,
        flags: 0,
        commit_lsn: 0x500,
        end_lsn: 0x508,
        commit_timestamp: 9,
    }));
    let mut d = Decoder::new();
    let txns = transactions(s.decode(&mut d).unwrap());
    assert_eq!(txns.len(), 2);
    assert_eq!((txns[0].xid, ids(&txns[0])), (600, vec![100]));
    assert_eq!(txns[1].xid, top);
    assert!(txns[1].streamed);
    assert_eq!(ids(&txns[1]), vec![1, 4, 5]);
    assert_eq!(txns[1].messages.len(), 1);
    assert_eq!(txns[1].commit_lsn, 0x500);
    assert_eq!(d.streams_in_progress(), 0);
    // The relation described inside the stream became global at its commit.
    assert_eq!(d.relation(1).unwrap().name, "t");
}

#[test]
fn relation_inside_an_aborted_stream_is_dropped() {
    let mut s = Stream::new();
    s.push(Message::StreamStart(StreamStartBody {
        xid: 5,
        first_segment: true,
    }));
    s.push(relation(Some(5), 1, "t"));
    s.push(Message::StreamStop);
    s.push(Message::StreamAbort(StreamAbortBody {
        xid: 5,
        subxid: 5,
        abort: Some((1, 2)),
    }));
    let mut d = Decoder::new();
    s.decode(&mut d).unwrap();
    assert!(d.relation(1).is_none());
}

fn error_of(s: &Stream) -> StreamError {
    s.decode(&mut Decoder::new()).unwrap_err()
}

#[test]
fn errors_carry_the_lsn() {
    let mut s = Stream::new();
    s.insert(None, 1, "1", None);
    let e = error_of(&s);
    assert_eq!(e.lsn, Some(0x110));
    assert!(matches!(e.kind, StreamErrorKind::Sequence(_)));
    assert_eq!(
        e.to_string(),
        "pgoutput at LSN 0/110: Insert outside a transaction"
    );

    let mut s = Stream::new();
    s.push(begin(1));
    s.insert(None, 1, "1", None);
    assert_eq!(error_of(&s).kind, StreamErrorKind::UnknownRelation(1));

    let mut s = Stream::new();
    s.push(relation(None, 1, "t")).push(begin(1));
    s.insert(None, 1, "x", None);
    let e = error_of(&s);
    assert_eq!(e.lsn, Some(0x130));
    assert!(
        e.to_string()
            .contains("column \"id\" of public.t: invalid integer"),
        "{e}"
    );

    let mut s = Stream::new();
    s.push(relation(None, 1, "t")).push(begin(1));
    let mut buf = Vec::new();
    let new = TupleData::build(&mut buf, &[TupleValue::Null]);
    s.push(Message::Insert(InsertBody {
        xid: None,
        relation_id: 1,
        new,
    }));
    assert!(matches!(
        error_of(&s).kind,
        StreamErrorKind::ColumnCount {
            expected: 2,
            got: 1,
            ..
        }
    ));

    let mut s = Stream::new();
    s.push(begin(1)).push(begin(2));
    assert!(matches!(error_of(&s).kind, StreamErrorKind::Sequence(_)));

    let mut s = Stream::new();
    s.push(Message::StreamStart(StreamStartBody {
        xid: 1,
        first_segment: false,
    }));
    assert!(matches!(error_of(&s).kind, StreamErrorKind::Sequence(_)));

    let mut s = Stream::new();
    s.push(Message::StreamCommit(StreamCommitBody {
        xid: 1,
        flags: 0,
        commit_lsn: 0,
        end_lsn: 0,
        commit_timestamp: 0,
    }));
    assert!(matches!(error_of(&s).kind, StreamErrorKind::Sequence(_)));

    let mut s = Stream::new();
    s.push(Message::StreamStop);
    assert!(matches!(error_of(&s).kind, StreamErrorKind::Sequence(_)));

    // An unknown tag inside an XLogData, and payloads that are not XLogData at all.
    let mut d = Decoder::new();
    let mut payload = xlog(0x1234, &Message::StreamStop);
    *payload.last_mut().unwrap() = b'Z';
    let e = d.decode_payload(&payload, &mut Vec::new()).unwrap_err();
    assert_eq!(e.lsn, Some(0x1234));
    assert_eq!(
        e.kind,
        StreamErrorKind::Message(PgOutputError::UnknownTag { tag: 'Z' })
    );
    let e = d.decode_payload(b"w\0\0", &mut Vec::new()).unwrap_err();
    assert_eq!(e.lsn, None);
    let e = d.decode_payload(b"", &mut Vec::new()).unwrap_err();
    assert!(matches!(e.kind, StreamErrorKind::Replication(_)));
    let mut r = Vec::new();
    ReplicationMessage::HotStandbyFeedback {
        send_time: 0,
        xmin: 0,
        epoch: 0,
    }
    .encode_into(&mut r);
    let e = d.decode_payload(&r, &mut Vec::new()).unwrap_err();
    assert_eq!(e.kind, StreamErrorKind::UnexpectedReplicationMessage('h'));
}

#[test]
fn an_error_drops_transactions_in_progress_and_keeps_completed_ones() {
    let mut s = Stream::new();
    s.push(relation(None, 1, "t")).push(begin(1));
    s.insert(None, 1, "1", None);
    s.push(commit(0x200)).push(begin(2));
    s.insert(None, 1, "bad", None);
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let e = d
        .decode_into(s.payloads.iter().map(Vec::as_slice), &mut out)
        .unwrap_err();
    assert!(matches!(e.kind, StreamErrorKind::Value(_)));
    assert_eq!(transactions(out).len(), 1);
    // The open transaction is gone: its Commit is now out of place.
    let mut s2 = Stream::new();
    s2.push(commit(0x300));
    assert!(s2.decode(&mut d).is_err());
    assert!(d.relation(1).is_some());
}

#[test]
fn parse_errors_name_tag_and_offset() {
    let e = Message::parse(b"I\0\0\0\x01X", false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pgoutput message 'I' at offset 5: expected 'N' before the new tuple, got 'X'"
    );
    let e = Message::parse(b"I\0\0\0\x01N\0\x01t\0\0\0\x05ab", false).unwrap_err();
    assert_eq!(
        e,
        PgOutputError::Truncated {
            tag: 'I',
            offset: 13,
            what: "tuple value"
        }
    );
    let e = Message::parse(b"I\0\0\0\x01N\0\x01q", false).unwrap_err();
    assert!(
        e.to_string().contains("unknown tuple column kind 'q'"),
        "{e}"
    );
    let e = Message::parse(b"E\0", false).unwrap_err();
    assert!(matches!(
        e,
        PgOutputError::Trailing {
            extra: 1,
            offset: 1,
            ..
        }
    ));
    assert_eq!(
        Message::parse(b"", false).unwrap_err(),
        PgOutputError::Empty
    );
    assert!(Message::parse(b"P", false)
        .unwrap_err()
        .to_string()
        .contains("two-phase"));
    let e = Message::parse(b"R\0\0\0\x01\xff\0", false).unwrap_err();
    assert!(matches!(e, PgOutputError::Utf8 { offset: 5, .. }));
}

#[test]
fn transaction_wal_left_to_its_commit() {
    let mut d = Decoder::new();
    assert_eq!(d.transaction_wal(), None);
    // Begin at 0x110 (final LSN 0x200), Relation at 0x120, Insert at 0x130.
    let mut s = Stream::new();
    s.push(begin(42)).push(relation(None, 16384, "t"));
    s.insert(None, 16384, "1", Some("one"));
    s.decode(&mut d).unwrap();
    assert_eq!(d.transaction_wal(), Some((0x20, 0xd0)));
    let mut s = Stream {
        payloads: Vec::new(),
        lsn: 0x1f0,
    };
    s.insert(None, 16384, "2", None);
    s.decode(&mut d).unwrap();
    assert_eq!(d.transaction_wal(), Some((0xf0, 0)));
    let mut s = Stream {
        payloads: Vec::new(),
        lsn: 0x200,
    };
    s.push(commit(0x200));
    assert_eq!(transactions(s.decode(&mut d).unwrap()).len(), 1);
    assert_eq!(d.transaction_wal(), None);
    // A streamed transaction has no final LSN until its Stream Commit.
    let mut s = Stream::new();
    s.push(Message::StreamStart(StreamStartBody {
        xid: 7,
        first_segment: true,
    }));
    s.push(relation(Some(7), 16385, "u"));
    s.insert(Some(7), 16385, "1", None);
    s.decode(&mut d).unwrap();
    assert!(d.in_transaction());
    assert_eq!(d.transaction_wal(), None);
}
