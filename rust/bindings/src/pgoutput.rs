//! The pgoutput stream decoder: payloads in (decoded with the GIL released), transactions out
//! as handles whose rows stay in Rust until `changes()` asks for them.

use std::collections::VecDeque;
use std::sync::Arc;

use electric_core::pgoutput::{
    Change, Datum, Decoded, Decoder, LogicalMessage, Relation, StreamError, Transaction,
};
use electric_core::pgwire::backend::tag::COPY_DATA;
use electric_core::pgwire::{split_frame, DEFAULT_MAX_MESSAGE};
use electric_core::value::Value;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::{errors, values};

/// Non-transactional messages kept for `take_messages()`; older ones are dropped and counted.
const MAX_PENDING_MESSAGES: usize = 1024;

/// The type of `UNCHANGED_TOAST`, the value of a TOASTed column that an update left unchanged
/// (Postgres does not send it again).
#[pyclass(module = "electric_trio._native", frozen)]
pub struct UnchangedToastType;

#[pymethods]
impl UnchangedToastType {
    fn __repr__(&self) -> &'static str {
        "UNCHANGED_TOAST"
    }
}

static UNCHANGED_TOAST: PyOnceLock<Py<UnchangedToastType>> = PyOnceLock::new();

pub(crate) fn unchanged_toast(py: Python<'_>) -> PyResult<&Py<UnchangedToastType>> {
    UNCHANGED_TOAST.get_or_try_init(py, || Py::new(py, UnchangedToastType))
}

pub(crate) fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// A borrowed view of a stored value, so that converting it copies no strings.
fn view<'a>(v: &'a Value<'_>) -> Value<'a> {
    use std::borrow::Cow::Borrowed;
    match v {
        Value::Numeric(s) => Value::Numeric(Borrowed(s)),
        Value::Text(s) => Value::Text(Borrowed(s)),
        Value::Json(s) => Value::Json(Borrowed(s)),
        Value::Array(a) => Value::Array(a.iter().map(view).collect()),
        other => other.clone(),
    }
}

/// Names of one relation version, created once per `changes()` call.
pub(crate) struct Names<'py> {
    pub(crate) relation: Arc<Relation>,
    pub(crate) schema: Bound<'py, PyString>,
    pub(crate) table: Bound<'py, PyString>,
    columns: Vec<Bound<'py, PyString>>,
}

impl<'py> Names<'py> {
    pub(crate) fn of(py: Python<'py>, relations: &[Arc<Relation>]) -> Vec<Names<'py>> {
        relations
            .iter()
            .map(|r| Names {
                relation: r.clone(),
                schema: PyString::new(py, &r.namespace),
                table: PyString::new(py, &r.name),
                columns: r
                    .columns
                    .iter()
                    .map(|c| PyString::new(py, &c.name))
                    .collect(),
            })
            .collect()
    }

    /// The index of `rel` in `names`, starting the search at `last` (changes come in runs).
    pub(crate) fn find(names: &[Names<'py>], last: usize, rel: &Arc<Relation>) -> usize {
        if names
            .get(last)
            .is_some_and(|n| Arc::ptr_eq(&n.relation, rel))
        {
            return last;
        }
        names
            .iter()
            .position(|n| Arc::ptr_eq(&n.relation, rel))
            .expect("every change's relation is listed")
    }

    /// A row as a dict of column name to value; a key-only row holds the key columns only.
    pub(crate) fn row(
        &self,
        py: Python<'py>,
        row: &[Datum],
        key_only: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for ((name, col), datum) in self.columns.iter().zip(&self.relation.columns).zip(row) {
            if key_only && !col.is_key {
                continue;
            }
            let v = match datum {
                Datum::Value(v) => values::to_py(py, view(v))?,
                Datum::UnchangedToast => unchanged_toast(py)?.bind(py).clone().into_any(),
            };
            d.set_item(name, v)?;
        }
        Ok(d)
    }

    /// `(kind, new_row, old_row)` of a change.
    pub(crate) fn change(
        &self,
        py: Python<'py>,
        change: &Change,
    ) -> PyResult<(Bound<'py, PyString>, Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let none = || py.None().into_bound(py);
        Ok(match change {
            Change::Insert { new, .. } => (
                intern!(py, "insert").clone(),
                self.row(py, new, false)?.into_any(),
                none(),
            ),
            Change::Update { new, old, .. } => (
                intern!(py, "update").clone(),
                self.row(py, new, false)?.into_any(),
                match old {
                    Some(o) => self.row(py, &o.row, o.key_only)?.into_any(),
                    None => none(),
                },
            ),
            Change::Delete { old, .. } => (
                intern!(py, "delete").clone(),
                none(),
                self.row(py, &old.row, old.key_only)?.into_any(),
            ),
            Change::Truncate { .. } => (intern!(py, "truncate").clone(), none(), none()),
        })
    }
}

/// A committed transaction decoded from the replication stream.
///
/// The metadata is cheap to read; the rows stay in Rust until `changes()` builds them.
#[pyclass(name = "Transaction", module = "electric_trio._native", frozen)]
pub struct PyTransaction {
    inner: electric_core::pgoutput::Transaction,
}

#[pymethods]
impl PyTransaction {
    #[getter]
    fn xid(&self) -> u32 {
        self.inner.xid
    }

    /// The LSN of the commit record.
    #[getter]
    fn commit_lsn(&self) -> u64 {
        self.inner.commit_lsn
    }

    /// The LSN just past the commit: the position to acknowledge once the transaction is kept.
    #[getter]
    fn end_lsn(&self) -> u64 {
        self.inner.end_lsn
    }

    /// Microseconds since 2000-01-01 UTC.
    #[getter]
    fn commit_timestamp(&self) -> i64 {
        self.inner.commit_timestamp
    }

    #[getter]
    fn origin(&self) -> Option<&str> {
        self.inner.origin.as_deref()
    }

    /// Whether it arrived in stream blocks while in progress (a large transaction).
    #[getter]
    fn streamed(&self) -> bool {
        self.inner.streamed
    }

    /// The (schema, table) of every relation it changed, in order of first change.
    #[getter]
    fn relations(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for r in &self.inner.relations {
            let key = (r.namespace.as_str(), r.name.as_str());
            if !out.contains(&key) {
                out.push(key);
            }
        }
        out
    }

    /// Its transactional logical messages as (prefix, content, transactional).
    #[getter]
    fn messages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for m in &self.inner.messages {
            list.append((&m.prefix, PyBytes::new(py, &m.content), m.transactional))?;
        }
        Ok(list)
    }

    fn __len__(&self) -> usize {
        self.inner.changes.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "<Transaction xid={} commit_lsn={} changes={}>",
            self.inner.xid,
            lsn_text(self.inner.commit_lsn),
            self.inner.changes.len()
        )
    }

    /// The changes as `(kind, schema, table, new_row, old_row)` tuples: kind is "insert",
    /// "update", "delete" or "truncate"; rows are dicts of column name to value (None when
    /// absent); a key-only old row holds the key columns only; an unchanged TOASTed column is
    /// `UNCHANGED_TOAST`. `start` and `stop` select a slice (to page through a large one).
    #[pyo3(signature = (start = 0, stop = None))]
    fn changes<'py>(
        &self,
        py: Python<'py>,
        start: usize,
        stop: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let all = &self.inner.changes;
        let stop = stop.map_or(all.len(), |s| s.min(all.len()));
        let names = Names::of(py, &self.inner.relations);
        let list = PyList::empty(py);
        let mut last = 0;
        for change in &all[start.min(stop)..stop] {
            last = Names::find(&names, last, change.relation());
            let n = &names[last];
            let (kind, new, old) = n.change(py, change)?;
            let items = [
                kind.into_any(),
                n.schema.clone().into_any(),
                n.table.clone().into_any(),
                new,
                old,
            ];
            list.append(PyTuple::new(py, items)?)?;
        }
        Ok(list)
    }
}

/// Decodes the CopyData payloads of a pgoutput replication stream (protocol version 1 or 2,
/// with streaming and messages) into committed transactions.
///
/// Keeps the relation cache and transactions in progress between calls. After an error the
/// transactions in progress are dropped: restart replication from the last acknowledged LSN.
/// What both decoder classes keep: the stream decoder and the non-transactional messages.
pub(crate) struct StreamState {
    pub(crate) inner: Decoder,
    messages: VecDeque<LogicalMessage>,
    pub(crate) dropped_messages: u64,
    /// Bytes of the connection given to `decode_wire` and not decoded: a partial CopyData
    /// frame, or (when `wire_stopped`) everything from the first frame that is not one.
    wire: Vec<u8>,
    wire_stopped: bool,
    /// The buffer of `read_fd`'s receives, allocated at the first and kept.
    read_buf: Vec<u8>,
}

/// What a decode step gives back: completed transactions (through `then`), the
/// non-transactional messages, and the error that stopped it.
type Step<T> = (T, Vec<LogicalMessage>, Option<StreamError>);

fn split_decoded<T>(
    out: Vec<Decoded>,
    then: impl FnOnce(Vec<Transaction>) -> T,
    error: Option<StreamError>,
) -> Step<T> {
    let mut txns = Vec::with_capacity(out.len());
    let mut messages = Vec::new();
    for d in out {
        match d {
            Decoded::Transaction(t) => txns.push(t),
            Decoded::Message(m) => messages.push(m),
        }
    }
    (then(txns), messages, error)
}

/// The most bytes one receive of `StreamState::read_fd` takes.
const READ_SIZE: usize = 256 * 1024;

/// Decodes the CopyData frames of `data`, after the partial frame kept in `wire` (see
/// `StreamState::decode_wire`), appending what completes to `out`.
fn wire_step(
    inner: &mut Decoder,
    wire: &mut Vec<u8>,
    wire_stopped: &mut bool,
    data: &[u8],
    out: &mut Vec<Decoded>,
) -> Option<StreamError> {
    if *wire_stopped {
        wire.extend_from_slice(data);
        return None;
    }
    let joined = !wire.is_empty();
    if joined {
        wire.extend_from_slice(data);
    }
    let buf: &[u8] = if joined { wire } else { data };
    let mut pos = 0;
    let mut error = None;
    while pos < buf.len() {
        if buf[pos] != COPY_DATA {
            *wire_stopped = true;
            break;
        }
        match split_frame(&buf[pos..], DEFAULT_MAX_MESSAGE) {
            Ok(Some(frame)) => {
                pos += frame.wire_len();
                if let Err(e) = inner.decode_payload(frame.body, out) {
                    error = Some(e);
                    break;
                }
            }
            Ok(None) => break,
            // The connection's reader reports it.
            Err(_) => {
                *wire_stopped = true;
                break;
            }
        }
    }
    if joined {
        wire.drain(..pos);
    } else {
        wire.extend_from_slice(&data[pos..]);
    }
    error
}

impl StreamState {
    pub(crate) fn new() -> Self {
        StreamState {
            inner: Decoder::new(),
            messages: VecDeque::new(),
            dropped_messages: 0,
            wire: Vec::new(),
            wire_stopped: false,
            read_buf: Vec::new(),
        }
    }

    fn queue_messages(&mut self, messages: Vec<LogicalMessage>) {
        for m in messages {
            if self.messages.len() == MAX_PENDING_MESSAGES {
                self.messages.pop_front();
                self.dropped_messages += 1;
            }
            self.messages.push_back(m);
        }
    }

    /// Decodes the CopyData frames in `data`, bytes of the connection as received (after the
    /// partial frame kept from the previous call), like [`Self::decode`] but without a Python
    /// object per message. Stops at the first frame that is not CopyData (or whose header is
    /// bad) and keeps it, with everything after it, for [`Self::take_unhandled`]; keeps a
    /// trailing partial frame for the next call.
    pub(crate) fn decode_wire<T: Send>(
        &mut self,
        py: Python<'_>,
        data: &[u8],
        then: impl FnOnce(Vec<Transaction>) -> T + Send,
    ) -> (T, Option<StreamError>) {
        let StreamState {
            inner,
            wire,
            wire_stopped,
            ..
        } = self;
        let (result, messages, error) = py.detach(|| {
            let mut out = Vec::new();
            let error = wire_step(inner, wire, wire_stopped, data, &mut out);
            split_decoded(out, then, error)
        });
        self.queue_messages(messages);
        (result, error)
    }

    /// One receive from the socket `fd` (non-blocking, into a buffer kept between calls) and
    /// its bytes decoded as [`Self::decode_wire`] does, all without the GIL: no Python object
    /// per receive. `Ok(None)` when nothing was ready (the receive would block); the number
    /// of bytes received with the result otherwise; an error of kind `UnexpectedEof` when the
    /// peer closed the connection.
    #[allow(clippy::type_complexity)]
    pub(crate) fn read_fd<T: Send>(
        &mut self,
        py: Python<'_>,
        fd: i32,
        then: impl FnOnce(Vec<Transaction>) -> T + Send,
    ) -> std::io::Result<Option<(T, usize, Option<StreamError>)>> {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        let StreamState {
            inner,
            wire,
            wire_stopped,
            read_buf,
            ..
        } = self;
        if read_buf.is_empty() {
            *read_buf = vec![0; READ_SIZE];
        }
        let step = py.detach(|| {
            // SAFETY: the caller keeps the socket open for the call; ManuallyDrop leaves it open.
            let mut sock = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            let n = loop {
                match sock.read(read_buf) {
                    Ok(0) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "server closed the connection",
                        ))
                    }
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                }
            };
            let mut out = Vec::new();
            let error = wire_step(inner, wire, wire_stopped, &read_buf[..n], &mut out);
            Ok(Some((split_decoded(out, then, error), n)))
        })?;
        Ok(step.map(|((result, messages, error), n)| {
            self.queue_messages(messages);
            (result, n, error)
        }))
    }

    /// The bytes `decode_wire` stopped at (a message other than CopyData first), to be read by
    /// the connection; empty while the stream holds CopyData only.
    pub(crate) fn take_unhandled<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        if !self.wire_stopped {
            return PyBytes::new(py, b"");
        }
        self.wire_stopped = false;
        let out = PyBytes::new(py, &self.wire);
        self.wire.clear();
        out
    }

    /// Decodes a batch with the GIL released and hands the completed transactions to `then`,
    /// still without the GIL; queues the non-transactional messages. On error, `then` gets
    /// the transactions completed before the offending payload.
    pub(crate) fn decode<T: Send>(
        &mut self,
        py: Python<'_>,
        payloads: &[PyBackedBytes],
        then: impl FnOnce(Vec<Transaction>) -> T + Send,
    ) -> (T, Option<StreamError>) {
        let inner = &mut self.inner;
        let (result, messages, error) = py.detach(|| {
            let mut out = Vec::new();
            let r = inner.decode_into(payloads.iter().map(|p| &p[..]), &mut out);
            split_decoded(out, then, r.err())
        });
        self.queue_messages(messages);
        (result, error)
    }

    pub(crate) fn take_messages<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for m in self.messages.drain(..) {
            list.append((m.lsn, &m.prefix, PyBytes::new(py, &m.content)))?;
        }
        Ok(list)
    }
}

/// Decodes the CopyData payloads of a pgoutput replication stream (protocol version 1 or 2,
/// with streaming and messages) into committed transactions.
///
/// Keeps the relation cache and transactions in progress between calls. After an error the
/// transactions in progress are dropped: restart replication from the last acknowledged LSN.
#[pyclass(module = "electric_trio._native")]
pub struct PgOutputDecoder {
    state: StreamState,
}

#[pymethods]
impl PgOutputDecoder {
    #[new]
    fn new() -> Self {
        PgOutputDecoder {
            state: StreamState::new(),
        }
    }

    /// Decodes a batch of payloads (XLogData and keepalives) with the GIL released and returns
    /// the transactions whose commit it contained, in commit order.
    ///
    /// Raises `PgOutputError` (with `lsn`, and `transactions`: those completed before the
    /// offending payload) on a malformed or out-of-place message.
    fn decode(
        &mut self,
        py: Python<'_>,
        payloads: Vec<PyBackedBytes>,
    ) -> PyResult<Vec<Py<PyTransaction>>> {
        crate::errors::guard(|| {
            let (decoded, error) = self.state.decode(py, &payloads, |txns| txns);
            let txns = decoded
                .into_iter()
                .map(|t| Py::new(py, PyTransaction { inner: t }))
                .collect::<PyResult<Vec<_>>>()?;
            match error {
                Some(e) => Err(errors::pgoutput(py, &e, PyList::new(py, txns)?)),
                None => Ok(txns),
            }
        })
    }

    /// Takes the non-transactional logical messages decoded so far, as (lsn, prefix, content).
    /// At most 1024 are kept; `dropped_messages` counts the older ones that were dropped.
    fn take_messages<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.state.take_messages(py)
    }

    #[getter]
    fn dropped_messages(&self) -> u64 {
        self.state.dropped_messages
    }

    /// The highest WAL position the server reported (keepalives and XLogData headers).
    #[getter]
    fn server_wal_end(&self) -> u64 {
        self.state.inner.server_wal_end()
    }

    /// Whether a keepalive asked for a status update (cleared by `take_reply_requested`).
    #[getter]
    fn reply_requested(&self) -> bool {
        self.state.inner.reply_requested()
    }

    /// Returns whether a status update was requested, and clears the request.
    fn take_reply_requested(&mut self) -> bool {
        self.state.inner.take_reply_requested()
    }

    /// Whether a transaction is partly received (open, or streamed and not yet committed).
    #[getter]
    fn in_transaction(&self) -> bool {
        self.state.inner.in_transaction()
    }

    /// The relation `oid` as last described: (schema, table, replica identity, columns), each
    /// column (name, type OID, type modifier, is part of the key); None if never described.
    #[allow(clippy::type_complexity)]
    fn relation(
        &self,
        oid: u32,
    ) -> Option<(String, String, String, Vec<(String, u32, i32, bool)>)> {
        let r = self.state.inner.relation(oid)?;
        Some((
            r.namespace.clone(),
            r.name.clone(),
            (r.replica_identity as char).to_string(),
            r.columns
                .iter()
                .map(|c| (c.name.clone(), c.type_oid, c.type_modifier, c.is_key))
                .collect(),
        ))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PgOutputDecoder>()?;
    m.add_class::<PyTransaction>()?;
    m.add_class::<UnchangedToastType>()?;
    m.add(
        "UNCHANGED_TOAST",
        unchanged_toast(py)?.clone_ref(py).into_py_any(py)?,
    )?;
    Ok(())
}
