//! The messages of the pgoutput plugin (logical replication protocol versions 1 and 2), each
//! parsed from the data of one XLogData and encoded back into a caller's buffer.

use super::error::PgOutputError;
use super::reader::Reader;
use super::tuple::TupleData;

/// Message tags (the first byte of the data of an XLogData).
pub mod tag {
    pub const BEGIN: u8 = b'B';
    pub const COMMIT: u8 = b'C';
    pub const ORIGIN: u8 = b'O';
    pub const RELATION: u8 = b'R';
    pub const TYPE: u8 = b'Y';
    pub const INSERT: u8 = b'I';
    pub const UPDATE: u8 = b'U';
    pub const DELETE: u8 = b'D';
    pub const TRUNCATE: u8 = b'T';
    pub const MESSAGE: u8 = b'M';
    pub const STREAM_START: u8 = b'S';
    pub const STREAM_STOP: u8 = b'E';
    pub const STREAM_COMMIT: u8 = b'c';
    pub const STREAM_ABORT: u8 = b'A';
    /// Two-phase commit messages (protocol version 3): recognised, not supported.
    pub const TWO_PHASE: [u8; 5] = [b'b', b'P', b'K', b'r', b'p'];
}

/// Markers inside Update and Delete messages.
pub mod part {
    pub const NEW: u8 = b'N';
    pub const KEY: u8 = b'K';
    pub const OLD: u8 = b'O';
}

/// Option bits of a Truncate message.
pub mod truncate {
    pub const CASCADE: u8 = 1;
    pub const RESTART_IDENTITY: u8 = 2;
}

/// Flag bits of a logical decoding message.
pub mod message_flags {
    pub const TRANSACTIONAL: u8 = 1;
}

/// Flag bits of a Relation column.
pub mod column_flags {
    pub const KEY: u8 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginBody {
    /// The LSN of the transaction's commit record.
    pub final_lsn: u64,
    /// Microseconds since 2000-01-01 UTC.
    pub commit_timestamp: i64,
    pub xid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitBody {
    /// Unused, 0.
    pub flags: u8,
    pub commit_lsn: u64,
    pub end_lsn: u64,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginBody<'a> {
    /// The LSN of the commit on the origin server.
    pub commit_lsn: u64,
    pub name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelationColumn<'a> {
    /// [`column_flags::KEY`] marks a column of the replica identity.
    pub flags: u8,
    pub name: &'a str,
    pub type_oid: u32,
    pub type_modifier: i32,
}

impl RelationColumn<'_> {
    pub fn is_key(&self) -> bool {
        self.flags & column_flags::KEY != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationBody<'a> {
    /// The (sub)transaction, in a streamed transaction only (as for every message below).
    pub xid: Option<u32>,
    pub id: u32,
    /// Empty for pg_catalog.
    pub namespace: &'a str,
    pub name: &'a str,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeBody<'a> {
    pub xid: Option<u32>,
    pub id: u32,
    pub namespace: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertBody<'a> {
    pub xid: Option<u32>,
    pub relation_id: u32,
    pub new: TupleData<'a>,
}

/// The old row of an Update or Delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldTuple<'a> {
    /// The replica identity's columns (the others are sent as NULL).
    Key(TupleData<'a>),
    /// The whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData<'a>),
}

impl<'a> OldTuple<'a> {
    pub fn data(&self) -> &TupleData<'a> {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }

    pub fn is_key(&self) -> bool {
        matches!(self, OldTuple::Key(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateBody<'a> {
    pub xid: Option<u32>,
    pub relation_id: u32,
    /// Sent when the key changed, or always with `REPLICA IDENTITY FULL`.
    pub old: Option<OldTuple<'a>>,
    pub new: TupleData<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteBody<'a> {
    pub xid: Option<u32>,
    pub relation_id: u32,
    pub old: OldTuple<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncateBody {
    pub xid: Option<u32>,
    /// [`truncate`] bits.
    pub options: u8,
    pub relation_ids: Vec<u32>,
}

/// A message of `pg_logical_emit_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogicalMessageBody<'a> {
    pub xid: Option<u32>,
    /// [`message_flags`] bits.
    pub flags: u8,
    /// The LSN of the message.
    pub lsn: u64,
    pub prefix: &'a str,
    pub content: &'a [u8],
}

impl LogicalMessageBody<'_> {
    pub fn is_transactional(&self) -> bool {
        self.flags & message_flags::TRANSACTIONAL != 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStartBody {
    pub xid: u32,
    /// True for the first block of this transaction.
    pub first_segment: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCommitBody {
    pub xid: u32,
    /// Unused, 0.
    pub flags: u8,
    pub commit_lsn: u64,
    pub end_lsn: u64,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAbortBody {
    /// The top-level transaction.
    pub xid: u32,
    /// The aborted subtransaction; equal to `xid` when the whole transaction aborted.
    pub subxid: u32,
    /// Abort LSN and timestamp, sent by protocol version 4 with parallel streaming only.
    pub abort: Option<(u64, i64)>,
}

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Begin(BeginBody),
    Commit(CommitBody),
    Origin(OriginBody<'a>),
    Relation(RelationBody<'a>),
    Type(TypeBody<'a>),
    Insert(InsertBody<'a>),
    Update(UpdateBody<'a>),
    Delete(DeleteBody<'a>),
    Truncate(TruncateBody),
    LogicalMessage(LogicalMessageBody<'a>),
    StreamStart(StreamStartBody),
    StreamStop,
    StreamCommit(StreamCommitBody),
    StreamAbort(StreamAbortBody),
}

fn old_tuple<'a>(r: &mut Reader<'a>, marker: u8) -> Result<OldTuple<'a>, PgOutputError> {
    Ok(match marker {
        part::KEY => OldTuple::Key(TupleData::parse(r)?),
        _ => OldTuple::Full(TupleData::parse(r)?),
    })
}

fn expect_new(r: &mut Reader<'_>, marker: u8, at: usize) -> Result<(), PgOutputError> {
    if marker != part::NEW {
        return Err(r.invalid_at(
            at,
            format!(
                "expected 'N' before the new tuple, got {:?}",
                marker as char
            ),
        ));
    }
    Ok(())
}

impl<'a> Message<'a> {
    /// Parses the data of one XLogData. `streaming` says whether the message came between a
    /// Stream Start and a Stream Stop, where data messages carry the xid of their transaction.
    pub fn parse(data: &'a [u8], streaming: bool) -> Result<Message<'a>, PgOutputError> {
        let Some(&t) = data.first() else {
            return Err(PgOutputError::Empty);
        };
        let mut r = Reader::new(data);
        let xid = |r: &mut Reader<'a>| -> Result<Option<u32>, PgOutputError> {
            if streaming {
                r.u32("xid").map(Some)
            } else {
                Ok(None)
            }
        };
        let msg = match t {
            tag::BEGIN => Message::Begin(BeginBody {
                final_lsn: r.u64("final LSN")?,
                commit_timestamp: r.i64("commit timestamp")?,
                xid: r.u32("xid")?,
            }),
            tag::COMMIT => Message::Commit(CommitBody {
                flags: r.u8("flags")?,
                commit_lsn: r.u64("commit LSN")?,
                end_lsn: r.u64("end LSN")?,
                commit_timestamp: r.i64("commit timestamp")?,
            }),
            tag::ORIGIN => Message::Origin(OriginBody {
                commit_lsn: r.u64("origin commit LSN")?,
                name: r.cstr("origin name")?,
            }),
            tag::RELATION => {
                let xid = xid(&mut r)?;
                let id = r.u32("relation id")?;
                let namespace = r.cstr("namespace")?;
                let name = r.cstr("relation name")?;
                let replica_identity = r.u8("replica identity")?;
                let at = r.position();
                let n = r.i16("column count")?;
                if n < 0 {
                    return Err(r.invalid_at(at, format!("negative column count {n}")));
                }
                // Each column takes at least 10 bytes: do not trust the count for the capacity.
                let mut columns = Vec::with_capacity((n as usize).min(r.remaining() / 10));
                for _ in 0..n {
                    columns.push(RelationColumn {
                        flags: r.u8("column flags")?,
                        name: r.cstr("column name")?,
                        type_oid: r.u32("column type")?,
                        type_modifier: r.i32("column type modifier")?,
                    });
                }
                Message::Relation(RelationBody {
                    xid,
                    id,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                })
            }
            tag::TYPE => Message::Type(TypeBody {
                xid: xid(&mut r)?,
                id: r.u32("type id")?,
                namespace: r.cstr("type namespace")?,
                name: r.cstr("type name")?,
            }),
            tag::INSERT => {
                let xid = xid(&mut r)?;
                let relation_id = r.u32("relation id")?;
                let at = r.position();
                let marker = r.u8("new tuple marker")?;
                expect_new(&mut r, marker, at)?;
                Message::Insert(InsertBody {
                    xid,
                    relation_id,
                    new: TupleData::parse(&mut r)?,
                })
            }
            tag::UPDATE => {
                let xid = xid(&mut r)?;
                let relation_id = r.u32("relation id")?;
                let mut at = r.position();
                let mut marker = r.u8("tuple marker")?;
                let mut old = None;
                if marker == part::KEY || marker == part::OLD {
                    old = Some(old_tuple(&mut r, marker)?);
                    at = r.position();
                    marker = r.u8("new tuple marker")?;
                }
                expect_new(&mut r, marker, at)?;
                Message::Update(UpdateBody {
                    xid,
                    relation_id,
                    old,
                    new: TupleData::parse(&mut r)?,
                })
            }
            tag::DELETE => {
                let xid = xid(&mut r)?;
                let relation_id = r.u32("relation id")?;
                let at = r.position();
                let marker = r.u8("old tuple marker")?;
                if marker != part::KEY && marker != part::OLD {
                    return Err(r.invalid_at(
                        at,
                        format!(
                            "expected 'K' or 'O' before the old tuple, got {:?}",
                            marker as char
                        ),
                    ));
                }
                Message::Delete(DeleteBody {
                    xid,
                    relation_id,
                    old: old_tuple(&mut r, marker)?,
                })
            }
            tag::TRUNCATE => {
                let xid = xid(&mut r)?;
                let at = r.position();
                let n = r.i32("relation count")?;
                if n < 0 {
                    return Err(r.invalid_at(at, format!("negative relation count {n}")));
                }
                let options = r.u8("truncate options")?;
                let mut relation_ids = Vec::with_capacity((n as usize).min(r.remaining() / 4));
                for _ in 0..n {
                    relation_ids.push(r.u32("relation id")?);
                }
                Message::Truncate(TruncateBody {
                    xid,
                    options,
                    relation_ids,
                })
            }
            tag::MESSAGE => {
                let xid = xid(&mut r)?;
                let flags = r.u8("message flags")?;
                let lsn = r.u64("message LSN")?;
                let prefix = r.cstr("message prefix")?;
                let at = r.position();
                let len = r.i32("message length")?;
                if len < 0 {
                    return Err(r.invalid_at(at, format!("negative message length {len}")));
                }
                Message::LogicalMessage(LogicalMessageBody {
                    xid,
                    flags,
                    lsn,
                    prefix,
                    content: r.bytes(len as usize, "message content")?,
                })
            }
            tag::STREAM_START => Message::StreamStart(StreamStartBody {
                xid: r.u32("xid")?,
                first_segment: r.u8("first segment flag")? != 0,
            }),
            tag::STREAM_STOP => Message::StreamStop,
            tag::STREAM_COMMIT => Message::StreamCommit(StreamCommitBody {
                xid: r.u32("xid")?,
                flags: r.u8("flags")?,
                commit_lsn: r.u64("commit LSN")?,
                end_lsn: r.u64("end LSN")?,
                commit_timestamp: r.i64("commit timestamp")?,
            }),
            tag::STREAM_ABORT => {
                let xid = r.u32("xid")?;
                let subxid = r.u32("subtransaction xid")?;
                let abort = if r.remaining() > 0 {
                    Some((r.u64("abort LSN")?, r.i64("abort timestamp")?))
                } else {
                    None
                };
                Message::StreamAbort(StreamAbortBody { xid, subxid, abort })
            }
            t if tag::TWO_PHASE.contains(&t) => {
                return Err(r.invalid_at(
                    0,
                    "two-phase commit messages (protocol version 3) are not supported",
                ))
            }
            other => return Err(PgOutputError::UnknownTag { tag: other as char }),
        };
        r.finish()?;
        Ok(msg)
    }

    /// The message's tag byte.
    pub fn tag(&self) -> u8 {
        match self {
            Message::Begin(_) => tag::BEGIN,
            Message::Commit(_) => tag::COMMIT,
            Message::Origin(_) => tag::ORIGIN,
            Message::Relation(_) => tag::RELATION,
            Message::Type(_) => tag::TYPE,
            Message::Insert(_) => tag::INSERT,
            Message::Update(_) => tag::UPDATE,
            Message::Delete(_) => tag::DELETE,
            Message::Truncate(_) => tag::TRUNCATE,
            Message::LogicalMessage(_) => tag::MESSAGE,
            Message::StreamStart(_) => tag::STREAM_START,
            Message::StreamStop => tag::STREAM_STOP,
            Message::StreamCommit(_) => tag::STREAM_COMMIT,
            Message::StreamAbort(_) => tag::STREAM_ABORT,
        }
    }

    /// Appends the message (the data of one XLogData) to `out`. A data message is encoded with
    /// its xid when it has one, as it is sent inside a stream block.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        fn xid(out: &mut Vec<u8>, xid: Option<u32>) {
            if let Some(x) = xid {
                out.extend_from_slice(&x.to_be_bytes());
            }
        }
        fn cstr(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        fn old(out: &mut Vec<u8>, t: &OldTuple<'_>) {
            out.push(if t.is_key() { part::KEY } else { part::OLD });
            t.data().encode_into(out);
        }
        out.push(self.tag());
        match self {
            Message::Begin(b) => {
                out.extend_from_slice(&b.final_lsn.to_be_bytes());
                out.extend_from_slice(&b.commit_timestamp.to_be_bytes());
                out.extend_from_slice(&b.xid.to_be_bytes());
            }
            Message::Commit(c) => {
                out.push(c.flags);
                out.extend_from_slice(&c.commit_lsn.to_be_bytes());
                out.extend_from_slice(&c.end_lsn.to_be_bytes());
                out.extend_from_slice(&c.commit_timestamp.to_be_bytes());
            }
            Message::Origin(o) => {
                out.extend_from_slice(&o.commit_lsn.to_be_bytes());
                cstr(out, o.name);
            }
            Message::Relation(r) => {
                xid(out, r.xid);
                out.extend_from_slice(&r.id.to_be_bytes());
                cstr(out, r.namespace);
                cstr(out, r.name);
                out.push(r.replica_identity);
                out.extend_from_slice(&(r.columns.len() as i16).to_be_bytes());
                for c in &r.columns {
                    out.push(c.flags);
                    cstr(out, c.name);
                    out.extend_from_slice(&c.type_oid.to_be_bytes());
                    out.extend_from_slice(&c.type_modifier.to_be_bytes());
                }
            }
            Message::Type(t) => {
                xid(out, t.xid);
                out.extend_from_slice(&t.id.to_be_bytes());
                cstr(out, t.namespace);
                cstr(out, t.name);
            }
            Message::Insert(i) => {
                xid(out, i.xid);
                out.extend_from_slice(&i.relation_id.to_be_bytes());
                out.push(part::NEW);
                i.new.encode_into(out);
            }
            Message::Update(u) => {
                xid(out, u.xid);
                out.extend_from_slice(&u.relation_id.to_be_bytes());
                if let Some(o) = &u.old {
                    old(out, o);
                }
                out.push(part::NEW);
                u.new.encode_into(out);
            }
            Message::Delete(d) => {
                xid(out, d.xid);
                out.extend_from_slice(&d.relation_id.to_be_bytes());
                old(out, &d.old);
            }
            Message::Truncate(t) => {
                xid(out, t.xid);
                out.extend_from_slice(&(t.relation_ids.len() as i32).to_be_bytes());
                out.push(t.options);
                for id in &t.relation_ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            Message::LogicalMessage(m) => {
                xid(out, m.xid);
                out.push(m.flags);
                out.extend_from_slice(&m.lsn.to_be_bytes());
                cstr(out, m.prefix);
                out.extend_from_slice(&(m.content.len() as i32).to_be_bytes());
                out.extend_from_slice(m.content);
            }
            Message::StreamStart(s) => {
                out.extend_from_slice(&s.xid.to_be_bytes());
                out.push(s.first_segment as u8);
            }
            Message::StreamStop => {}
            Message::StreamCommit(c) => {
                out.extend_from_slice(&c.xid.to_be_bytes());
                out.push(c.flags);
                out.extend_from_slice(&c.commit_lsn.to_be_bytes());
                out.extend_from_slice(&c.end_lsn.to_be_bytes());
                out.extend_from_slice(&c.commit_timestamp.to_be_bytes());
            }
            Message::StreamAbort(a) => {
                out.extend_from_slice(&a.xid.to_be_bytes());
                out.extend_from_slice(&a.subxid.to_be_bytes());
                if let Some((lsn, ts)) = a.abort {
                    out.extend_from_slice(&lsn.to_be_bytes());
                    out.extend_from_slice(&ts.to_be_bytes());
                }
            }
        }
    }

    /// The xid a data message carries inside a stream block.
    pub fn streamed_xid(&self) -> Option<u32> {
        match self {
            Message::Relation(b) => b.xid,
            Message::Type(b) => b.xid,
            Message::Insert(b) => b.xid,
            Message::Update(b) => b.xid,
            Message::Delete(b) => b.xid,
            Message::Truncate(b) => b.xid,
            Message::LogicalMessage(b) => b.xid,
            _ => None,
        }
    }
}
