//! The stateful decoder of a pgoutput replication stream: raw CopyData payloads in, whole
//! committed transactions with typed rows out.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::error::{BadValue, StreamError, StreamErrorKind};
use super::message::{
    Message, OldTuple, RelationBody, StreamAbortBody, StreamCommitBody, StreamStartBody,
};
use super::tuple::{TupleData, TupleValue};
use crate::error::DecodeError;
use crate::pgwire::replication::ReplicationMessage;
use crate::value::{decode_text, parse_int, Kind, Value};

/// A column of a published relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    /// Part of the replica identity.
    pub is_key: bool,
    /// How its text values are decoded (from `type_oid`).
    pub kind: Kind,
}

/// A published table as last described by a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

impl Relation {
    fn from_body(r: &RelationBody<'_>) -> Relation {
        Relation {
            id: r.id,
            namespace: r.namespace.to_owned(),
            name: r.name.to_owned(),
            replica_identity: r.replica_identity,
            columns: r
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.to_owned(),
                    type_oid: c.type_oid,
                    type_modifier: c.type_modifier,
                    is_key: c.is_key(),
                    kind: Kind::of(c.type_oid),
                })
                .collect(),
        }
    }
}

/// A data type described by a Type message (sent for types outside pg_catalog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    pub namespace: String,
    pub name: String,
}

/// One column value of a decoded row.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// A value, decoded by the column's type (`Value::Null` for NULL). Values sent in binary
    /// format (only with the `binary` option, which electric-trio never asks for) are kept as
    /// `Value::Bytes` of their wire form.
    Value(Value<'static>),
    /// A TOASTed value the update did not change: Postgres did not send it.
    UnchangedToast,
}

/// The values of a row, in the relation's column order.
pub type Row = Box<[Datum]>;

/// The old row of an update or delete.
#[derive(Debug, Clone, PartialEq)]
pub struct OldRow {
    /// Only the replica identity's columns are meaningful (the others are NULL).
    pub key_only: bool,
    pub row: Row,
}

/// A row change. Each holds the relation as it was described when the change was decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Insert {
        relation: Arc<Relation>,
        new: Row,
    },
    Update {
        relation: Arc<Relation>,
        /// Sent when the key changed, or always with `REPLICA IDENTITY FULL`.
        old: Option<OldRow>,
        new: Row,
    },
    Delete {
        relation: Arc<Relation>,
        old: OldRow,
    },
    /// One per truncated relation; `options` are the `message::truncate` bits.
    Truncate {
        relation: Arc<Relation>,
        options: u8,
    },
}

impl Change {
    pub fn relation(&self) -> &Arc<Relation> {
        match self {
            Change::Insert { relation, .. }
            | Change::Update { relation, .. }
            | Change::Delete { relation, .. }
            | Change::Truncate { relation, .. } => relation,
        }
    }
}

/// A message of `pg_logical_emit_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// The LSN of the message.
    pub lsn: u64,
    pub transactional: bool,
    pub prefix: String,
    pub content: Vec<u8>,
}

/// A committed transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub xid: u32,
    /// The LSN of the commit record.
    pub commit_lsn: u64,
    /// The LSN just past the commit record: where to resume after this transaction.
    pub end_lsn: u64,
    /// Microseconds since 2000-01-01 UTC.
    pub commit_timestamp: i64,
    /// The replication origin of the transaction, if it has one.
    pub origin: Option<String>,
    pub changes: Vec<Change>,
    /// Transactional logical messages, in order.
    pub messages: Vec<LogicalMessage>,
    /// The relations the changes refer to, each version once, in order of first use.
    pub relations: Vec<Arc<Relation>>,
    /// Whether it came in stream blocks (a large transaction decoded while in progress).
    pub streamed: bool,
}

/// What the decoder hands back, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Transaction(Transaction),
    /// A non-transactional logical message (sent as soon as it is decoded, outside any
    /// transaction).
    Message(LogicalMessage),
}

/// A transaction being assembled.
#[derive(Debug, Default)]
struct Pending {
    xid: u32,
    origin: Option<String>,
    changes: Vec<Change>,
    messages: Vec<LogicalMessage>,
    relations: Vec<Arc<Relation>>,
    /// Relations described inside this streamed transaction's blocks: they apply to its own
    /// changes now and to everyone's at its commit (Postgres's apply worker does the same).
    local_relations: HashMap<u32, Arc<Relation>>,
    /// Subtransactions of a streamed transaction, in order of their first change or message,
    /// with the number of changes and messages before it.
    subxacts: Vec<(u32, usize, usize)>,
}

impl Pending {
    fn new(xid: u32) -> Pending {
        Pending {
            xid,
            ..Pending::default()
        }
    }

    fn touch(&mut self, rel: &Arc<Relation>) {
        if !self.relations.iter().rev().any(|r| Arc::ptr_eq(r, rel)) {
            self.relations.push(rel.clone());
        }
    }

    /// Notes where a subtransaction's work starts, the first time it shows up.
    fn note_subxact(&mut self, xid: Option<u32>) {
        if let Some(x) = xid {
            if x != self.xid && !self.subxacts.iter().any(|s| s.0 == x) {
                self.subxacts
                    .push((x, self.changes.len(), self.messages.len()));
            }
        }
    }

    /// Discards a subtransaction's work and that of every subtransaction that started after
    /// it: in the stream, everything after a subtransaction's first change up to its abort
    /// belongs to it or to its children (the rule of Postgres's own apply worker).
    fn abort_subxact(&mut self, subxid: u32) {
        let Some(i) = self.subxacts.iter().position(|s| s.0 == subxid) else {
            return;
        };
        let (_, changes, messages) = self.subxacts[i];
        self.changes.truncate(changes);
        self.messages.truncate(messages);
        self.subxacts.truncate(i);
        let mut relations: Vec<Arc<Relation>> = Vec::new();
        for c in &self.changes {
            let r = c.relation();
            if !relations.iter().any(|x| Arc::ptr_eq(x, r)) {
                relations.push(r.clone());
            }
        }
        self.relations = relations;
    }

    fn finish(self, commit_lsn: u64, end_lsn: u64, ts: i64, streamed: bool) -> Transaction {
        Transaction {
            xid: self.xid,
            commit_lsn,
            end_lsn,
            commit_timestamp: ts,
            origin: self.origin,
            changes: self.changes,
            messages: self.messages,
            relations: self.relations,
            streamed,
        }
    }
}

/// Decodes the CopyData payloads of a pgoutput replication stream (protocol version 1 or 2,
/// with or without `streaming` and `messages`).
///
/// It keeps the relation cache and the transactions in progress across calls, and returns
/// each transaction once its Commit (or Stream Commit) arrives. After an error the decoder
/// drops every transaction in progress (the relation cache stays): restart replication from
/// the last acknowledged LSN, where Postgres sends them again from their start.
#[derive(Debug, Default)]
pub struct Decoder {
    relations: HashMap<u32, Arc<Relation>>,
    types: HashMap<u32, TypeInfo>,
    current: Option<Pending>,
    streams: HashMap<u32, Pending>,
    /// The transaction of the open stream block (between Stream Start and Stream Stop).
    stream_block: Option<u32>,
    server_wal_end: u64,
    reply_requested: bool,
    /// The last relation looked up: (stream block, id, relation). Cleared whenever a
    /// relation map changes.
    last_lookup: Option<(Option<u32>, u32, Arc<Relation>)>,
    /// The WAL position of the message being decoded (its XLogData's start).
    data_lsn: u64,
    /// The open transaction's first WAL position (its Begin's XLogData start) and its commit
    /// record's (the Begin's final LSN); None outside one, or for a streamed transaction.
    span: Option<(u64, u64)>,
}

fn sequence(what: impl Into<String>) -> StreamErrorKind {
    StreamErrorKind::Sequence(what.into())
}

/// Decodes a text value, with the most common kinds inlined (the others as `decode_text`).
#[inline]
fn decode_value(kind: Kind, raw: &[u8]) -> Result<Value<'static>, DecodeError> {
    match kind {
        Kind::Int => {
            if let Some(i) = parse_int(raw) {
                return Ok(Value::Int(i));
            }
        }
        Kind::Text => {
            if let Ok(s) = std::str::from_utf8(raw) {
                return Ok(Value::Text(Cow::Owned(s.to_owned())));
            }
        }
        Kind::Bool => match raw {
            b"t" => return Ok(Value::Bool(true)),
            b"f" => return Ok(Value::Bool(false)),
            _ => {}
        },
        Kind::Float => {
            // Finite values only: NaN and the infinities as Postgres spells them go the long way.
            let parsed = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<f64>().ok());
            if let Some(f) = parsed.filter(|f| f.is_finite()) {
                return Ok(Value::Float(f));
            }
        }
        _ => {}
    }
    decode_text(kind, raw).map(owned)
}

/// `Value::into_owned`, inlined for the kinds that borrow nothing (moved without a call).
#[inline(always)]
fn owned(v: Value<'_>) -> Value<'static> {
    match v {
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(b),
        Value::Int(i) => Value::Int(i),
        Value::Float(f) => Value::Float(f),
        Value::Uuid(u) => Value::Uuid(u),
        Value::Date(d) => Value::Date(d),
        Value::Time(t) => Value::Time(t),
        Value::TimeTz(t, o) => Value::TimeTz(t, o),
        Value::Timestamp(d, t) => Value::Timestamp(d, t),
        Value::TimestampTz(d, t) => Value::TimestampTz(d, t),
        other => other.into_owned(),
    }
}

fn decode_row(rel: &Relation, t: &TupleData<'_>) -> Result<Row, StreamErrorKind> {
    if t.len() != rel.columns.len() {
        return Err(StreamErrorKind::ColumnCount {
            schema: rel.namespace.clone(),
            table: rel.name.clone(),
            expected: rel.columns.len(),
            got: t.len(),
        });
    }
    let mut row = Vec::with_capacity(rel.columns.len());
    for (col, v) in rel.columns.iter().zip(t.iter()) {
        row.push(match v {
            TupleValue::Null => Datum::Value(Value::Null),
            TupleValue::UnchangedToast => Datum::UnchangedToast,
            TupleValue::Text(raw) => match decode_value(col.kind, raw) {
                Ok(v) => Datum::Value(v),
                Err(error) => {
                    return Err(StreamErrorKind::Value(Box::new(BadValue {
                        schema: rel.namespace.clone(),
                        table: rel.name.clone(),
                        column: col.name.clone(),
                        error,
                    })))
                }
            },
            TupleValue::Binary(raw) => Datum::Value(Value::Bytes(raw.to_vec())),
        });
    }
    Ok(row.into_boxed_slice())
}

fn old_row(rel: &Relation, old: &OldTuple<'_>) -> Result<OldRow, StreamErrorKind> {
    Ok(OldRow {
        key_only: old.is_key(),
        row: decode_row(rel, old.data())?,
    })
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// The highest WAL end the server reported (in XLogData headers and keepalives).
    pub fn server_wal_end(&self) -> u64 {
        self.server_wal_end
    }

    /// Whether a keepalive asked for a status update since the last [`Self::take_reply_requested`].
    pub fn reply_requested(&self) -> bool {
        self.reply_requested
    }

    /// Returns whether a reply was requested, and clears the request.
    pub fn take_reply_requested(&mut self) -> bool {
        std::mem::take(&mut self.reply_requested)
    }

    /// The current description of relation `id` (as of the last committed or plain Relation
    /// message).
    pub fn relation(&self, id: u32) -> Option<&Arc<Relation>> {
        self.relations.get(&id)
    }

    /// A type described by a Type message.
    pub fn type_info(&self, id: u32) -> Option<&TypeInfo> {
        self.types.get(&id)
    }

    /// Whether a transaction is partly received: open, or streamed and not yet committed.
    pub fn in_transaction(&self) -> bool {
        self.current.is_some() || self.stream_block.is_some() || !self.streams.is_empty()
    }

    /// For the open transaction (not a streamed one): the WAL from its start to the message
    /// last decoded, and the WAL left from there to its commit record (the Begin's final
    /// LSN). The walsender sends each message with its record's position (the Begin with the
    /// transaction's first, a change with its own), so the second says how much of the
    /// transaction is still to come, in WAL bytes.
    pub fn transaction_wal(&self) -> Option<(u64, u64)> {
        let (first, last) = self.span?;
        if self.current.is_none() || self.stream_block.is_some() {
            return None;
        }
        Some((
            self.data_lsn.saturating_sub(first),
            last.saturating_sub(self.data_lsn),
        ))
    }

    /// Streamed transactions in progress (their changes are buffered until Stream Commit).
    pub fn streams_in_progress(&self) -> usize {
        self.streams.len()
    }

    /// Decodes a batch of CopyData payloads, appending what completes to `out`. On error,
    /// `out` holds what completed before the offending payload, and the rest of the batch is
    /// not read.
    pub fn decode_into<'p, I>(
        &mut self,
        payloads: I,
        out: &mut Vec<Decoded>,
    ) -> Result<(), StreamError>
    where
        I: IntoIterator<Item = &'p [u8]>,
    {
        for p in payloads {
            self.decode_payload(p, out)?;
        }
        Ok(())
    }

    /// Decodes one CopyData payload of the replication stream (XLogData or keepalive).
    pub fn decode_payload(
        &mut self,
        payload: &[u8],
        out: &mut Vec<Decoded>,
    ) -> Result<(), StreamError> {
        let result = match ReplicationMessage::parse(payload) {
            Ok(ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            }) => {
                self.server_wal_end = self.server_wal_end.max(wal_end);
                self.data_lsn = wal_start;
                self.message(data, out).map_err(|kind| StreamError {
                    lsn: Some(wal_start),
                    kind,
                })
            }
            Ok(ReplicationMessage::PrimaryKeepalive {
                wal_end,
                reply_requested,
                ..
            }) => {
                self.server_wal_end = self.server_wal_end.max(wal_end);
                self.reply_requested |= reply_requested;
                Ok(())
            }
            Ok(_) => Err(StreamError {
                lsn: None,
                kind: StreamErrorKind::UnexpectedReplicationMessage(payload[0] as char),
            }),
            Err(e) => Err(StreamError {
                lsn: payload
                    .first()
                    .filter(|&&t| t == b'w')
                    .and_then(|_| payload.get(1..9))
                    .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes"))),
                kind: StreamErrorKind::Replication(e),
            }),
        };
        if result.is_err() {
            self.drop_in_progress();
        }
        result
    }

    /// Decodes one pgoutput message (the data of an XLogData), attributing errors to `lsn`.
    pub fn decode_message(
        &mut self,
        lsn: u64,
        data: &[u8],
        out: &mut Vec<Decoded>,
    ) -> Result<(), StreamError> {
        self.data_lsn = lsn;
        self.message(data, out)
            .map_err(|kind| StreamError {
                lsn: Some(lsn),
                kind,
            })
            .inspect_err(|_| self.drop_in_progress())
    }

    fn drop_in_progress(&mut self) {
        self.last_lookup = None;
        self.current = None;
        self.span = None;
        self.streams.clear();
        self.stream_block = None;
    }

    /// The transaction that data messages belong to now.
    fn target(&mut self, what: &str) -> Result<&mut Pending, StreamErrorKind> {
        if let Some(xid) = self.stream_block {
            return self.streams.get_mut(&xid).ok_or_else(|| {
                sequence(format!(
                    "{what} in a stream block of unknown transaction {xid}"
                ))
            });
        }
        self.current
            .as_mut()
            .ok_or_else(|| sequence(format!("{what} outside a transaction")))
    }

    fn lookup(&mut self, id: u32) -> Result<Arc<Relation>, StreamErrorKind> {
        if let Some((block, last_id, rel)) = &self.last_lookup {
            if *block == self.stream_block && *last_id == id {
                return Ok(rel.clone());
            }
        }
        let local = self
            .stream_block
            .and_then(|x| self.streams.get(&x))
            .and_then(|p| p.local_relations.get(&id));
        let rel = local
            .or_else(|| self.relations.get(&id))
            .cloned()
            .ok_or(StreamErrorKind::UnknownRelation(id))?;
        self.last_lookup = Some((self.stream_block, id, rel.clone()));
        Ok(rel)
    }

    fn push_change(
        &mut self,
        xid: Option<u32>,
        what: &str,
        change: Change,
    ) -> Result<(), StreamErrorKind> {
        let p = self.target(what)?;
        p.note_subxact(xid);
        p.touch(change.relation());
        p.changes.push(change);
        Ok(())
    }

    fn message(&mut self, data: &[u8], out: &mut Vec<Decoded>) -> Result<(), StreamErrorKind> {
        let msg = Message::parse(data, self.stream_block.is_some())?;
        match msg {
            Message::Begin(b) => {
                if let Some(xid) = self.stream_block {
                    return Err(sequence(format!(
                        "Begin inside a stream block of transaction {xid}"
                    )));
                }
                if let Some(p) = &self.current {
                    return Err(sequence(format!(
                        "Begin of transaction {} inside transaction {}",
                        b.xid, p.xid
                    )));
                }
                self.current = Some(Pending::new(b.xid));
                self.span = Some((self.data_lsn, b.final_lsn));
            }
            Message::Commit(c) => {
                if self.stream_block.is_some() {
                    return Err(sequence("Commit inside a stream block"));
                }
                let p = self
                    .current
                    .take()
                    .ok_or_else(|| sequence("Commit outside a transaction"))?;
                self.span = None;
                out.push(Decoded::Transaction(p.finish(
                    c.commit_lsn,
                    c.end_lsn,
                    c.commit_timestamp,
                    false,
                )));
            }
            Message::Origin(o) => {
                self.target("Origin")?.origin = Some(o.name.to_owned());
            }
            Message::Relation(r) => {
                self.last_lookup = None;
                let rel = Arc::new(Relation::from_body(&r));
                match self.stream_block {
                    Some(xid) => {
                        let p = self.streams.get_mut(&xid).ok_or_else(|| {
                            sequence(format!(
                                "Relation in a stream block of unknown transaction {xid}"
                            ))
                        })?;
                        p.local_relations.insert(r.id, rel);
                    }
                    None => {
                        self.relations.insert(r.id, rel);
                    }
                }
            }
            Message::Type(t) => {
                self.types.insert(
                    t.id,
                    TypeInfo {
                        namespace: t.namespace.to_owned(),
                        name: t.name.to_owned(),
                    },
                );
            }
            Message::Insert(i) => {
                self.target("Insert")?;
                let relation = self.lookup(i.relation_id)?;
                let new = decode_row(&relation, &i.new)?;
                self.push_change(i.xid, "Insert", Change::Insert { relation, new })?;
            }
            Message::Update(u) => {
                self.target("Update")?;
                let relation = self.lookup(u.relation_id)?;
                let old = u.old.as_ref().map(|o| old_row(&relation, o)).transpose()?;
                let new = decode_row(&relation, &u.new)?;
                self.push_change(u.xid, "Update", Change::Update { relation, old, new })?;
            }
            Message::Delete(d) => {
                self.target("Delete")?;
                let relation = self.lookup(d.relation_id)?;
                let old = old_row(&relation, &d.old)?;
                self.push_change(d.xid, "Delete", Change::Delete { relation, old })?;
            }
            Message::Truncate(t) => {
                self.target("Truncate")?;
                for &id in &t.relation_ids {
                    let relation = self.lookup(id)?;
                    let options = t.options;
                    self.push_change(t.xid, "Truncate", Change::Truncate { relation, options })?;
                }
            }
            Message::LogicalMessage(m) => {
                let msg = LogicalMessage {
                    lsn: m.lsn,
                    transactional: m.is_transactional(),
                    prefix: m.prefix.to_owned(),
                    content: m.content.to_vec(),
                };
                if msg.transactional {
                    let p = self.target("transactional Message")?;
                    p.note_subxact(m.xid);
                    p.messages.push(msg);
                } else {
                    out.push(Decoded::Message(msg));
                }
            }
            Message::StreamStart(s) => self.stream_start(s)?,
            Message::StreamStop => {
                if self.stream_block.take().is_none() {
                    return Err(sequence("Stream Stop outside a stream block"));
                }
            }
            Message::StreamCommit(c) => self.stream_commit(c, out)?,
            Message::StreamAbort(a) => self.stream_abort(a)?,
        }
        Ok(())
    }

    fn stream_start(&mut self, s: StreamStartBody) -> Result<(), StreamErrorKind> {
        if let Some(xid) = self.stream_block {
            return Err(sequence(format!(
                "Stream Start inside the stream block of transaction {xid}"
            )));
        }
        if let Some(p) = &self.current {
            return Err(sequence(format!(
                "Stream Start inside transaction {}",
                p.xid
            )));
        }
        if s.first_segment {
            self.streams.insert(s.xid, Pending::new(s.xid));
        } else if !self.streams.contains_key(&s.xid) {
            return Err(sequence(format!(
                "Stream Start continuing transaction {} whose first block was not seen",
                s.xid
            )));
        }
        self.stream_block = Some(s.xid);
        Ok(())
    }

    fn outside_blocks(&self, what: &str) -> Result<(), StreamErrorKind> {
        if self.stream_block.is_some() || self.current.is_some() {
            return Err(sequence(format!(
                "{what} inside a transaction or stream block"
            )));
        }
        Ok(())
    }

    fn stream_commit(
        &mut self,
        c: StreamCommitBody,
        out: &mut Vec<Decoded>,
    ) -> Result<(), StreamErrorKind> {
        self.outside_blocks("Stream Commit")?;
        let mut p = self.streams.remove(&c.xid).ok_or_else(|| {
            sequence(format!(
                "Stream Commit of transaction {} that was not streamed",
                c.xid
            ))
        })?;
        self.last_lookup = None;
        self.relations.extend(p.local_relations.drain());
        out.push(Decoded::Transaction(p.finish(
            c.commit_lsn,
            c.end_lsn,
            c.commit_timestamp,
            true,
        )));
        Ok(())
    }

    fn stream_abort(&mut self, a: StreamAbortBody) -> Result<(), StreamErrorKind> {
        self.outside_blocks("Stream Abort")?;
        self.last_lookup = None;
        if a.subxid == a.xid {
            self.streams.remove(&a.xid);
        } else if let Some(p) = self.streams.get_mut(&a.xid) {
            p.abort_subxact(a.subxid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod value_tests {
    use super::*;

    #[test]
    fn inlined_kinds_decode_as_decode_text_does() {
        let cases: &[(Kind, &[&str])] = &[
            (Kind::Int, &["0", "-9223372036854775808", "12", "1.5", "x"]),
            (Kind::Text, &["", "héllo"]),
            (Kind::Bool, &["t", "f", "true", "false", "x"]),
            (
                Kind::Float,
                &[
                    "1.5",
                    "-0",
                    "1e+300",
                    "1.2345678901234567e-07",
                    "NaN",
                    "Infinity",
                    "-Infinity",
                    "1e400",
                    "x",
                ],
            ),
            (Kind::TimestampTz, &["2024-01-01 00:00:00+00", "infinity"]),
            (Kind::Numeric, &["1.50", "NaN"]),
        ];
        for (kind, texts) in cases {
            for text in *texts {
                let raw = text.as_bytes();
                let expected = decode_text(*kind, raw).map(Value::into_owned);
                // Debug forms: NaN is not equal to itself.
                assert_eq!(
                    format!("{:?}", decode_value(*kind, raw)),
                    format!("{expected:?}"),
                    "{kind:?} {text:?}"
                );
            }
        }
    }
}
