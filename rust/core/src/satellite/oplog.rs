//! The read path's encoder: a transaction's changes, as decoded from pgoutput, straight into one
//! `SatOpLog` frame, without building the protobuf structs or any per-row object.
//!
//! The encoder measures the frame first (nested protobuf messages are length-prefixed), then
//! writes it into a buffer reserved once at its exact size, so a transaction of N changes costs
//! one allocation for its frame; the measurements go to a scratch vector kept by the
//! [`OplogEncoder`] between frames. The bytes equal what prost writes for the same
//! [`SatOpLog`](super::proto::SatOpLog) (tested), which is what lets a frame be encoded once per
//! audience and written unchanged to every socket of that audience.
//!
//! From a folded transaction (`electric::ElectricTransaction`), a sender would build
//! ```text
//! Bracket::Transaction(TxInfo {
//!     commit_timestamp_ms: commit_timestamp_ms(txn.commit_timestamp),
//!     lsn: txn.end_lsn,
//!     origin: Some(txn.origin.as_deref().unwrap_or(POSTGRES_ORIGIN)),
//!     is_migration: !txn.ddl.is_empty(),
//!     additional_data_ref: 0,
//!     transaction_id: Some(txn.xid.into()),
//! })
//! ```
//! and pass `txn.changes.iter().filter(|c| audience_sees(c)).filter_map(Op::from_change)`
//! (followed by `Op::Migrate` bytes for captured DDL) to [`OplogEncoder::encode_into`].

use thiserror::Error;

use super::ids::{server_lsn_len, write_server_lsn};
use super::values::{text_len, write_delimited, write_text, UnencodableValue};
use crate::electric::ElectricChange;
use crate::pgoutput::{Change, Datum, Relation};
use crate::value::{decode_text, oid, Kind, Value};

/// Room left before the frame for a WebSocket header (at most 10 bytes unmasked).
pub const HEADER_ROOM: usize = 14;

/// The begin/commit of a transaction from Postgres.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxInfo<'a> {
    /// Milliseconds since the Unix epoch.
    pub commit_timestamp_ms: u64,
    /// The WAL position the client resumes after (sent as decimal ASCII).
    pub lsn: u64,
    pub origin: Option<&'a str>,
    pub is_migration: bool,
    /// Non-zero: move-in data with this ref follows later.
    pub additional_data_ref: u64,
    /// Set on begin only, as the legacy server did.
    pub transaction_id: Option<u64>,
}

/// What surrounds the ops of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bracket<'a> {
    /// Bare ops: subscription data (inserts) or a GONE batch.
    None,
    /// `begin` ... `commit` of a transaction.
    Transaction(TxInfo<'a>),
    /// `additional_begin` ... `additional_commit` of move-in data with this ref.
    Additional(u64),
}

/// One op, borrowing the decoded rows. Row values are in the relation's column order; each
/// relation is sent as its `id` (the table OID), with float4 columns (by type OID) printed in
/// single precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op<'a> {
    Insert {
        relation: &'a Relation,
        new: &'a [Datum],
        tags: &'a [String],
    },
    /// `old` is the full old row (tables are `REPLICA IDENTITY FULL`); a value of `new` that
    /// Postgres did not send (unchanged TOAST) is taken from it.
    Update {
        relation: &'a Relation,
        new: &'a [Datum],
        old: Option<&'a [Datum]>,
        tags: &'a [String],
    },
    Delete {
        relation: &'a Relation,
        old: &'a [Datum],
        tags: &'a [String],
    },
    /// A row that left the client's shapes: only the values of `pk_columns` (positions in
    /// `row`) are sent, the others as NULL.
    Gone {
        relation: &'a Relation,
        row: &'a [Datum],
        pk_columns: &'a [usize],
    },
    /// An already encoded `SatOpMigrate`.
    Migrate(&'a [u8]),
}

impl<'a> Op<'a> {
    /// The op of a folded change with its tags (a delete always goes with no tags, whatever it
    /// holds); `None` for a truncate, which the protocol cannot express.
    pub fn from_change(change: &'a ElectricChange) -> Option<Op<'a>> {
        Some(match &change.change {
            Change::Insert { relation, new } => Op::Insert {
                relation,
                new,
                tags: &change.tags,
            },
            Change::Update { relation, old, new } => Op::Update {
                relation,
                new,
                old: old.as_ref().map(|o| &o.row[..]),
                tags: &change.tags,
            },
            Change::Delete { relation, old } => Op::Delete {
                relation,
                old: &old.row,
                tags: &[],
            },
            Change::Truncate { .. } => return None,
        })
    }
}

/// A row that cannot be encoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("relation {relation}, column {column}: {kind}")]
pub struct EncodeError {
    pub relation: u32,
    pub column: usize,
    pub kind: EncodeErrorKind,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EncodeErrorKind {
    #[error("row has {got} values for {expected} columns")]
    Width { expected: usize, got: usize },
    #[error("unchanged TOAST value without an old row to take it from")]
    UnchangedToast,
    #[error(transparent)]
    Unencodable(#[from] UnencodableValue),
}

// Field keys: (field number << 3) | wire type; every field number here is below 16.
const LEN: u8 = 2;
const fn key(field: u8, wire_type: u8) -> u8 {
    field << 3 | wire_type
}

pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The size of a length-delimited field holding `n` bytes.
fn delimited_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

fn put_delimited_key(out: &mut Vec<u8>, field: u8, n: usize) {
    out.push(key(field, LEN));
    put_varint(out, n as u64);
}

fn put_uint_field(out: &mut Vec<u8>, field: u8, v: u64) {
    if v != 0 {
        out.push(key(field, 0));
        put_varint(out, v);
    }
}

fn uint_field_len(v: u64) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(v)
    }
}

/// A row as the encoder sees it: values, where missing ones come from, which are masked.
#[derive(Clone, Copy)]
struct RowRef<'a> {
    relation: &'a Relation,
    values: &'a [Datum],
    /// Where unchanged TOAST values are found.
    fallback: Option<&'a [Datum]>,
    /// Only these columns are sent (the others as NULL).
    only: Option<&'a [usize]>,
}

impl<'a> RowRef<'a> {
    fn plain(relation: &'a Relation, values: &'a [Datum]) -> RowRef<'a> {
        RowRef {
            relation,
            values,
            fallback: None,
            only: None,
        }
    }

    fn error(&self, column: usize, kind: EncodeErrorKind) -> EncodeError {
        EncodeError {
            relation: self.relation.id,
            column,
            kind,
        }
    }

    fn check_width(&self) -> Result<(), EncodeError> {
        let expected = self.relation.columns.len();
        let got = self.values.len();
        if got != expected || self.fallback.is_some_and(|f| f.len() != expected) {
            return Err(self.error(0, EncodeErrorKind::Width { expected, got }));
        }
        Ok(())
    }

    /// The value of column `i`, `None` for NULL.
    fn value(&self, i: usize) -> Result<Option<&'a Value<'static>>, EncodeError> {
        if self.only.is_some_and(|only| !only.contains(&i)) {
            return Ok(None);
        }
        let datum = match (&self.values[i], self.fallback) {
            (Datum::UnchangedToast, Some(old)) => &old[i],
            (d, _) => d,
        };
        match datum {
            Datum::Value(Value::Null) => Ok(None),
            Datum::Value(v) => Ok(Some(v)),
            Datum::UnchangedToast => Err(self.error(i, EncodeErrorKind::UnchangedToast)),
        }
    }

    /// Whether column `i` prints its floats in single precision.
    fn float4(&self, i: usize) -> bool {
        self.relation.columns[i].type_oid == oid::FLOAT4
    }

    /// The encoded `SatOpRow` length.
    fn measure(&self) -> Result<usize, EncodeError> {
        self.check_width()?;
        let columns = self.values.len();
        let mask = columns.div_ceil(8);
        let mut len = if mask == 0 { 0 } else { delimited_len(mask) };
        for i in 0..columns {
            let n = match self.value(i)? {
                None => 0,
                Some(v) => text_len(v, self.float4(i)).map_err(|e| self.error(i, e.into()))?,
            };
            len += delimited_len(n);
        }
        Ok(len)
    }

    /// Writes the `SatOpRow` body measured by [`measure`](Self::measure) (which validated it):
    /// the bitmask is reserved first and its bits set as the values go by.
    fn write(&self, out: &mut Vec<u8>) {
        let columns = self.values.len();
        let mask = columns.div_ceil(8);
        let mask_at = out.len() + 1 + varint_len(mask as u64);
        if mask > 0 {
            put_delimited_key(out, 1, mask);
            out.resize(mask_at + mask, 0);
        }
        for i in 0..columns {
            out.push(key(2, LEN));
            match self.value(i) {
                Ok(Some(v)) => write_delimited(v, self.float4(i), out),
                _ => {
                    out.push(0);
                    out[mask_at + i / 8] |= 0x80 >> (i % 8);
                }
            }
        }
    }
}

/// Encodes `SatOpLog` frames, keeping its scratch space between frames.
#[derive(Debug, Default)]
pub struct OplogEncoder {
    /// Lengths computed by the measuring pass, consumed in the same order by the writing pass.
    sizes: Vec<usize>,
}

impl OplogEncoder {
    pub fn new() -> OplogEncoder {
        OplogEncoder::default()
    }

    /// Appends one `SatOpLog` frame (type byte included) of `ops` within `bracket` to `out`.
    /// `header` is called first with the frame's length, to write e.g. a WebSocket header into
    /// `out` (up to [`HEADER_ROOM`] bytes fit in the one reservation). Nothing is written when a
    /// row cannot be encoded. Returns the frame's length.
    pub fn encode_into<'a, I>(
        &mut self,
        bracket: &Bracket<'a>,
        ops: I,
        out: &mut Vec<u8>,
        header: impl FnOnce(usize, &mut Vec<u8>),
    ) -> Result<usize, EncodeError>
    where
        I: IntoIterator<Item = Op<'a>>,
        I::IntoIter: Clone,
    {
        self.encode_with_room(bracket, ops, out, HEADER_ROOM, header)
    }

    /// Encodes one frame into a new buffer of exactly its length.
    pub fn encode<'a, I>(&mut self, bracket: &Bracket<'a>, ops: I) -> Result<Vec<u8>, EncodeError>
    where
        I: IntoIterator<Item = Op<'a>>,
        I::IntoIter: Clone,
    {
        let mut out = Vec::new();
        self.encode_with_room(bracket, ops, &mut out, 0, |_, _| ())?;
        Ok(out)
    }

    fn encode_with_room<'a, I>(
        &mut self,
        bracket: &Bracket<'a>,
        ops: I,
        out: &mut Vec<u8>,
        room: usize,
        header: impl FnOnce(usize, &mut Vec<u8>),
    ) -> Result<usize, EncodeError>
    where
        I: IntoIterator<Item = Op<'a>>,
        I::IntoIter: Clone,
    {
        let ops = ops.into_iter();
        let (open, close) = bracket_ops(bracket);
        let all = || {
            open.clone()
                .into_iter()
                .chain(ops.clone().map(Inner::Op))
                .chain(close.clone())
        };
        self.sizes.clear();
        let mut body = 0;
        for op in all() {
            let inner = self.measure_inner(&op)?;
            body += delimited_len(delimited_len(inner));
        }
        let frame = 1 + body;
        out.reserve(frame + room);
        header(frame, out);
        out.push(super::MessageType::OpLog.id());
        let mut sizes = self.sizes.iter().copied();
        for op in all() {
            write_inner(&op, &mut sizes, out);
        }
        debug_assert!(sizes.next().is_none());
        Ok(frame)
    }

    /// Measures one op's message (the SatTransOp's inner message), recording the lengths the
    /// writing pass needs: rows first, then the message itself.
    fn measure_inner(&mut self, op: &Inner<'_>) -> Result<usize, EncodeError> {
        let len = match op {
            Inner::Begin(tx) => begin_len(tx),
            Inner::Commit(tx) => commit_len(tx),
            Inner::AdditionalBegin(r) | Inner::AdditionalCommit(r) => uint_field_len(*r),
            Inner::Op(Op::Migrate(bytes)) => bytes.len(),
            Inner::Op(op) => {
                let (relation, rows, tags) = op_parts(op);
                let mut len = uint_field_len(u64::from(relation.id));
                for row in rows.into_iter().flatten() {
                    let n = row.measure()?;
                    self.sizes.push(n);
                    len += delimited_len(n);
                }
                len + tags.iter().map(|t| delimited_len(t.len())).sum::<usize>()
            }
        };
        self.sizes.push(len);
        Ok(len)
    }
}

/// Encodes one `SatOpLog` frame with a one-off encoder.
pub fn encode_oplog<'a, I>(bracket: &Bracket<'a>, ops: I) -> Result<Vec<u8>, EncodeError>
where
    I: IntoIterator<Item = Op<'a>>,
    I::IntoIter: Clone,
{
    OplogEncoder::new().encode(bracket, ops)
}

/// A SatTransOp to write: a bracket op or one of the caller's.
#[derive(Clone)]
enum Inner<'a> {
    Begin(TxInfo<'a>),
    Commit(TxInfo<'a>),
    AdditionalBegin(u64),
    AdditionalCommit(u64),
    Op(Op<'a>),
}

impl Inner<'_> {
    /// The SatTransOp oneof field number.
    fn field(&self) -> u8 {
        match self {
            Inner::Begin(_) => 1,
            Inner::Commit(_) => 2,
            Inner::Op(Op::Update { .. }) => 3,
            Inner::Op(Op::Insert { .. }) => 4,
            Inner::Op(Op::Delete { .. }) => 5,
            Inner::Op(Op::Migrate(_)) => 6,
            Inner::Op(Op::Gone { .. }) => 8,
            Inner::AdditionalBegin(_) => 9,
            Inner::AdditionalCommit(_) => 10,
        }
    }
}

fn bracket_ops<'a>(bracket: &Bracket<'a>) -> (Option<Inner<'a>>, Option<Inner<'a>>) {
    match bracket {
        Bracket::None => (None, None),
        Bracket::Transaction(tx) => (
            Some(Inner::Begin(tx.clone())),
            Some(Inner::Commit(tx.clone())),
        ),
        Bracket::Additional(r) => (
            Some(Inner::AdditionalBegin(*r)),
            Some(Inner::AdditionalCommit(*r)),
        ),
    }
}

/// The relation, rows (in field order: row_data, old_row_data) and tags of a row op.
fn op_parts<'a>(op: &Op<'a>) -> (&'a Relation, [Option<RowRef<'a>>; 2], &'a [String]) {
    match *op {
        Op::Insert {
            relation,
            new,
            tags,
        } => (relation, [Some(RowRef::plain(relation, new)), None], tags),
        Op::Update {
            relation,
            new,
            old,
            tags,
        } => (
            relation,
            [
                Some(RowRef {
                    fallback: old,
                    ..RowRef::plain(relation, new)
                }),
                old.map(|old| RowRef::plain(relation, old)),
            ],
            tags,
        ),
        Op::Delete {
            relation,
            old,
            tags,
        } => (relation, [Some(RowRef::plain(relation, old)), None], tags),
        Op::Gone {
            relation,
            row,
            pk_columns,
        } => (
            relation,
            [
                Some(RowRef {
                    only: Some(pk_columns),
                    ..RowRef::plain(relation, row)
                }),
                None,
            ],
            &[],
        ),
        Op::Migrate(_) => unreachable!("migrate ops have no rows"),
    }
}

fn begin_len(tx: &TxInfo<'_>) -> usize {
    uint_field_len(tx.commit_timestamp_ms)
        + delimited_len(server_lsn_len(tx.lsn))
        + tx.origin.map_or(0, |o| delimited_len(o.len()))
        + if tx.is_migration { 2 } else { 0 }
        + uint_field_len(tx.additional_data_ref)
        + tx.transaction_id.map_or(0, |id| 1 + varint_len(id))
}

fn commit_len(tx: &TxInfo<'_>) -> usize {
    uint_field_len(tx.commit_timestamp_ms)
        + delimited_len(server_lsn_len(tx.lsn))
        + uint_field_len(tx.additional_data_ref)
}

fn write_inner(op: &Inner<'_>, sizes: &mut impl Iterator<Item = usize>, out: &mut Vec<u8>) {
    // SatOpLog.ops (field 1) holds a SatTransOp whose oneof field holds the inner message.
    let row_sizes: [Option<usize>; 2] = match op {
        Inner::Op(
            op @ (Op::Insert { .. } | Op::Update { .. } | Op::Delete { .. } | Op::Gone { .. }),
        ) => {
            let (_, rows, _) = op_parts(op);
            rows.map(|r| r.map(|_| sizes.next().expect("row size")))
        }
        _ => [None, None],
    };
    let inner = sizes.next().expect("op size");
    put_delimited_key(out, 1, delimited_len(inner));
    put_delimited_key(out, op.field(), inner);
    match op {
        Inner::Begin(tx) => {
            put_uint_field(out, 1, tx.commit_timestamp_ms);
            put_delimited_key(out, 3, server_lsn_len(tx.lsn));
            write_server_lsn(tx.lsn, out);
            if let Some(origin) = tx.origin {
                put_delimited_key(out, 4, origin.len());
                out.extend_from_slice(origin.as_bytes());
            }
            if tx.is_migration {
                out.extend_from_slice(&[key(5, 0), 1]);
            }
            put_uint_field(out, 6, tx.additional_data_ref);
            if let Some(id) = tx.transaction_id {
                out.push(key(7, 0));
                put_varint(out, id);
            }
        }
        Inner::Commit(tx) => {
            put_uint_field(out, 1, tx.commit_timestamp_ms);
            put_delimited_key(out, 3, server_lsn_len(tx.lsn));
            write_server_lsn(tx.lsn, out);
            put_uint_field(out, 4, tx.additional_data_ref);
        }
        Inner::AdditionalBegin(r) | Inner::AdditionalCommit(r) => put_uint_field(out, 1, *r),
        Inner::Op(Op::Migrate(bytes)) => out.extend_from_slice(bytes),
        Inner::Op(op) => {
            let (relation, rows, tags) = op_parts(op);
            put_uint_field(out, 1, u64::from(relation.id));
            for (field, (row, size)) in (2u8..).zip(rows.iter().zip(row_sizes)) {
                if let (Some(row), Some(size)) = (row, size) {
                    put_delimited_key(out, field, size);
                    row.write(out);
                }
            }
            let tags_field = match op {
                Op::Update { .. } => 4,
                _ => 3,
            };
            for tag in tags {
                put_delimited_key(out, tags_field, tag.len());
                out.extend_from_slice(tag.as_bytes());
            }
        }
    }
}

/// Subscription data written straight into WebSocket-framed `SatOpLog` messages: bare insert
/// (or gone) ops, at most `max_ops` per message, each message a final binary WebSocket frame
/// (unmasked, as a server sends it) in one growing buffer that the caller takes and writes as
/// it fills. A message is closed once it has `max_ops` ops, so rows pushed in parts give the
/// same messages as pushed at once; [`DataFramer::finish`] closes the last one.
///
/// Rows read as text (a `COPY ... TO STDOUT`) are written by [`DataFramer::push_text_insert`]
/// without a [`Datum`] per value: the wire text of most types is Postgres's own text, copied.
#[derive(Debug)]
pub struct DataFramer {
    max_ops: usize,
    /// Ops in the open message.
    in_open: usize,
    /// Ops pushed in all.
    total: usize,
    /// The open message's ops (the `SatOpLog` body so far).
    open: Vec<u8>,
    /// Closed messages, framed.
    out: Vec<u8>,
    /// Values of the row being written: `(start, end)` in `scratch`, or `None` for NULL.
    values: Vec<Option<(usize, usize)>>,
    /// The wire text of the row's values.
    scratch: Vec<u8>,
    encoder: OplogEncoder,
}

impl DataFramer {
    /// An empty framer of at most `max_ops` ops per message (at least one).
    pub fn new(max_ops: usize) -> DataFramer {
        DataFramer {
            max_ops: max_ops.max(1),
            in_open: 0,
            total: 0,
            open: Vec::new(),
            out: Vec::new(),
            values: Vec::new(),
            scratch: Vec::new(),
            encoder: OplogEncoder::new(),
        }
    }

    /// Ops pushed since the framer was made.
    pub fn ops(&self) -> usize {
        self.total
    }

    /// The messages closed so far, framed, leaving the open one.
    pub fn take_closed(&mut self) -> Vec<u8> {
        // The next part is about as large: reserved at once rather than grown by doubling.
        let capacity = self.out.capacity();
        std::mem::replace(&mut self.out, Vec::with_capacity(capacity))
    }

    /// Closes the open message (when it has ops) and returns every message not taken yet.
    pub fn finish(&mut self) -> Vec<u8> {
        self.close();
        self.take_closed()
    }

    fn close(&mut self) {
        if self.in_open == 0 {
            return;
        }
        let len = 1 + self.open.len();
        self.out.reserve(len + 10);
        push_ws_header(&mut self.out, len);
        self.out.push(super::MessageType::OpLog.id());
        self.out.extend_from_slice(&self.open);
        self.open.clear();
        self.in_open = 0;
    }

    fn op_done(&mut self) {
        self.in_open += 1;
        self.total += 1;
        if self.in_open >= self.max_ops {
            self.close();
        }
    }

    /// Appends one op (an insert or a gone of decoded rows) as [`OplogEncoder`] writes it.
    pub fn push_op(&mut self, op: Op<'_>) -> Result<(), EncodeError> {
        let inner = Inner::Op(op);
        self.encoder.sizes.clear();
        self.encoder.measure_inner(&inner)?;
        let mut sizes = self.encoder.sizes.iter().copied();
        write_inner(&inner, &mut sizes, &mut self.open);
        self.op_done();
        Ok(())
    }

    /// Appends the insert of a row of `relation` given as Postgres's text of each value (`None`
    /// for NULL, in column order), with its `tags`: the same bytes as [`DataFramer::push_op`] of
    /// the row decoded from that text (a value whose text does not decode is sent as it is,
    /// as the graph keeps it).
    pub fn push_text_insert<'v>(
        &mut self,
        relation: &Relation,
        values: impl Iterator<Item = Option<&'v str>>,
        tags: &[String],
    ) -> Result<(), EncodeError> {
        let error = |column: usize, kind: EncodeErrorKind| EncodeError {
            relation: relation.id,
            column,
            kind,
        };
        self.values.clear();
        self.scratch.clear();
        let columns = relation.columns.len();
        // Each value's wire text into `scratch` first (a copy of a few bytes), so that the
        // row's length is known before it is written.
        for (i, (column, text)) in relation.columns.iter().zip(values).enumerate() {
            let Some(t) = text else {
                self.values.push(None);
                continue;
            };
            let start = self.scratch.len();
            if verbatim(column.kind) {
                self.scratch.extend_from_slice(t.as_bytes());
            } else {
                let value = decode_text(column.kind, t.as_bytes()).unwrap_or(Value::Text(t.into()));
                let float4 = column.type_oid == oid::FLOAT4;
                write_text(&value, float4, &mut self.scratch).map_err(|e| error(i, e.into()))?;
            }
            self.values.push(Some((start, self.scratch.len())));
        }
        if self.values.len() != columns {
            return Err(error(
                0,
                EncodeErrorKind::Width {
                    expected: columns,
                    got: self.values.len(),
                },
            ));
        }
        let mask = columns.div_ceil(8);
        let mut row_len = if mask == 0 { 0 } else { delimited_len(mask) };
        for span in &self.values {
            row_len += delimited_len(span.map_or(0, |(a, b)| b - a));
        }
        let insert_len = uint_field_len(u64::from(relation.id))
            + delimited_len(row_len)
            + tags.iter().map(|t| delimited_len(t.len())).sum::<usize>();
        let out = &mut self.open;
        out.reserve(delimited_len(delimited_len(insert_len)));
        put_delimited_key(out, 1, delimited_len(insert_len));
        put_delimited_key(out, 4, insert_len);
        put_uint_field(out, 1, u64::from(relation.id));
        put_delimited_key(out, 2, row_len);
        let mask_at = out.len() + 1 + varint_len(mask as u64);
        if mask > 0 {
            put_delimited_key(out, 1, mask);
            out.resize(mask_at + mask, 0);
        }
        for (i, span) in self.values.iter().enumerate() {
            out.push(key(2, LEN));
            match *span {
                None => {
                    out.push(0);
                    out[mask_at + i / 8] |= 0x80 >> (i % 8);
                }
                Some((a, b)) => {
                    put_varint(out, (b - a) as u64);
                    out.extend_from_slice(&self.scratch[a..b]);
                }
            }
        }
        for tag in tags {
            put_delimited_key(out, 3, tag.len());
            out.extend_from_slice(tag.as_bytes());
        }
        self.op_done();
        Ok(())
    }
}

/// Whether the wire text of a value of `kind` is Postgres's text of it, as the shape query's
/// `column::text` gives it on the service's connections (canonical integers and uuids, texts
/// and json as they are, floats in shortest-exact form under `extra_float_digits = 1`, which
/// the wire's float text reproduces). Booleans (`true` as text, `t` on the wire), dates and
/// times (the wire's timestamptz ends in `Z`) and bytea (raw bytes) are written from their
/// decoded value.
fn verbatim(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Int | Kind::Float | Kind::Numeric | Kind::Text | Kind::Json | Kind::Uuid
    )
}

/// The header of a final, unmasked, binary WebSocket frame of `len` bytes.
pub fn push_ws_header(out: &mut Vec<u8>, len: usize) {
    const BINARY_FIN: u8 = 0x82;
    if len < 126 {
        out.extend_from_slice(&[BINARY_FIN, len as u8]);
    } else if len < 65536 {
        out.extend_from_slice(&[BINARY_FIN, 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[BINARY_FIN, 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}
