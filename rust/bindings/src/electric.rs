//! Folded decoding: transactions as clients should see them (tags, writer, DDL, markers,
//! referenced records), folded in Rust with the GIL released; rows stay in Rust until
//! `changes()` asks for them.

use electric_core::electric::{fold, ElectricTransaction, FoldError, Tags};
use electric_core::pgoutput::{StreamError, Transaction};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::errors;
use crate::pgoutput::{lsn_text, Names, StreamState};

/// Builds tag lists, reusing the strings of the previous list when it is the same one (rows
/// written by one statement share their tags).
struct TagLists<'py> {
    last: Option<(Tags, Vec<Bound<'py, PyString>>)>,
}

impl<'py> TagLists<'py> {
    fn list(&mut self, py: Python<'py>, tags: &Tags) -> PyResult<Bound<'py, PyList>> {
        if !self
            .last
            .as_ref()
            .is_some_and(|(t, _)| std::sync::Arc::ptr_eq(t, tags))
        {
            let strings = tags.iter().map(|t| PyString::new(py, t)).collect();
            self.last = Some((tags.clone(), strings));
        }
        let (_, strings) = self.last.as_ref().expect("set above");
        PyList::new(py, strings)
    }
}

/// A committed transaction with Electric's bookkeeping folded in: only changes of user tables,
/// each with its tags; the writer and time of client writes; captured DDL; the magic-write
/// marker; newly electrified tables; referenced records.
#[pyclass(name = "ElectricTransaction", module = "electric_trio._native", frozen)]
pub struct PyElectricTransaction {
    pub(crate) inner: ElectricTransaction,
}

#[pymethods]
impl PyElectricTransaction {
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

    /// Microseconds since 2000-01-01 UTC: the tag time of the last shadow write (a client's
    /// commit time for its own writes), else Postgres's commit time.
    #[getter]
    fn commit_timestamp(&self) -> i64 {
        self.inner.commit_timestamp
    }

    /// The writer of the last shadow write (a client id, or "postgres_1"), else the
    /// replication origin if any.
    #[getter]
    fn origin(&self) -> Option<&str> {
        self.inner.origin.as_deref()
    }

    /// Whether it arrived in stream blocks while in progress (a large transaction).
    #[getter]
    fn streamed(&self) -> bool {
        self.inner.streamed
    }

    /// The (schema, table) of every user table it changed, in order of first change.
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

    /// Captured migration statements as (txid, txts, query), in order.
    #[getter]
    fn ddl(&self) -> Vec<(i64, i64, &str)> {
        (self.inner.ddl.iter())
            .map(|d| (d.txid, d.txts, d.query.as_str()))
            .collect()
    }

    /// The JSON content of the 'magic write' marker if this transaction wrote it.
    #[getter]
    fn marker(&self) -> Option<&str> {
        self.inner.marker.as_deref()
    }

    /// Tables electrified by this transaction, as (schema, table).
    #[getter]
    fn electrified(&self) -> Vec<(&str, &str)> {
        (self.inner.electrified.iter())
            .map(|(s, t)| (s.as_str(), t.as_str()))
            .collect()
    }

    /// Rows its rows reference (fk_chain_touch), as (schema, table, pk, data, tags): pk and
    /// data values as text (None for NULL), tags in Satellite form.
    #[getter]
    fn referenced<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        let mut tags = TagLists { last: None };
        for r in &self.inner.referenced {
            let data = PyDict::new(py);
            for (k, v) in &r.data {
                data.set_item(k, v)?;
            }
            list.append((&r.schema, &r.table, &r.pk, data, tags.list(py, &r.tags)?))?;
        }
        Ok(list)
    }

    /// Transactional logical messages of other prefixes, dropped.
    #[getter]
    fn other_messages(&self) -> usize {
        self.inner.other_messages
    }

    /// The number of user-table changes.
    fn __len__(&self) -> usize {
        self.inner.changes.len()
    }

    fn __repr__(&self) -> String {
        let origin = match &self.inner.origin {
            Some(o) => format!("{o:?}"),
            None => "None".into(),
        };
        format!(
            "<ElectricTransaction xid={} commit_lsn={} origin={origin} changes={}>",
            self.inner.xid,
            lsn_text(self.inner.commit_lsn),
            self.inner.changes.len()
        )
    }

    /// The changes as `(kind, schema, table, new_row, old_row, tags)` tuples: as
    /// `Transaction.changes()`, plus the row's tags in Satellite form ("<origin>@<ms>"; empty
    /// for deletes and truncates). `start` and `stop` select a slice.
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
        let mut tags = TagLists { last: None };
        let list = PyList::empty(py);
        let mut last = 0;
        for c in &all[start.min(stop)..stop] {
            last = Names::find(&names, last, c.change.relation());
            let n = &names[last];
            let (kind, new, old) = n.change(py, &c.change)?;
            let items = [
                kind.into_any(),
                n.schema.clone().into_any(),
                n.table.clone().into_any(),
                new,
                old,
                tags.list(py, &c.tags)?.into_any(),
            ];
            list.append(PyTuple::new(py, items)?)?;
        }
        Ok(list)
    }
}

/// Decodes a pgoutput replication stream like `PgOutputDecoder`, and folds Electric's
/// bookkeeping into each transaction (server-behaviour.md §6, §8).
///
/// After an error, restart replication from the last acknowledged LSN with a new decoder.
#[pyclass(module = "electric_trio._native")]
pub struct ElectricDecoder {
    state: StreamState,
}

#[pymethods]
impl ElectricDecoder {
    #[new]
    fn new() -> Self {
        ElectricDecoder {
            state: StreamState::new(),
        }
    }

    /// Decodes and folds a batch of payloads with the GIL released; returns the transactions
    /// whose commit it contained, in commit order.
    ///
    /// Raises `PgOutputError` (with `lsn`, and `transactions`: those complete before the
    /// fault) on a malformed message, or on bookkeeping that does not parse (then `lsn` is
    /// the transaction's commit LSN).
    fn decode(
        &mut self,
        py: Python<'_>,
        payloads: Vec<PyBackedBytes>,
    ) -> PyResult<Vec<Py<PyElectricTransaction>>> {
        errors::guard(|| {
            let (folded, error) = self.state.decode(py, &payloads, fold_all);
            into_py(py, folded, error)
        })
    }

    /// As `decode`, from the bytes of the replication connection as received: CopyData
    /// frames, the last one possibly cut short (kept for the next call). Decoding stops at
    /// the first message that is not CopyData (an error, the end of the stream, a notice):
    /// `take_unhandled()` then returns it and the bytes after it, for the connection to read.
    fn decode_wire(
        &mut self,
        py: Python<'_>,
        data: PyBackedBytes,
    ) -> PyResult<Vec<Py<PyElectricTransaction>>> {
        errors::guard(|| {
            let (folded, error) = self.state.decode_wire(py, &data, fold_all);
            into_py(py, folded, error)
        })
    }

    /// One receive from the socket `fd` (non-blocking, into a buffer the decoder keeps),
    /// decoded as `decode_wire` decodes its bytes: (the transactions completed, the bytes
    /// received), or None when nothing was ready to receive. No Python object per receive.
    /// Raises OSError when the receive fails, EOFError when the server closed the connection.
    #[allow(clippy::type_complexity)]
    fn read_socket(
        &mut self,
        py: Python<'_>,
        fd: i32,
    ) -> PyResult<Option<(Vec<Py<PyElectricTransaction>>, usize)>> {
        errors::guard(|| match self.state.read_fd(py, fd, fold_all) {
            Ok(None) => Ok(None),
            Ok(Some((folded, received, error))) => {
                Ok(Some((into_py(py, folded, error)?, received)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(pyo3::exceptions::PyEOFError::new_err(e.to_string()))
            }
            Err(e) => Err(pyo3::exceptions::PyOSError::new_err((
                e.raw_os_error().unwrap_or(0),
                e.to_string(),
            ))),
        })
    }

    /// The bytes `decode_wire` did not read, from the first message that is not CopyData on;
    /// empty while the stream holds nothing else.
    fn take_unhandled<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        self.state.take_unhandled(py)
    }

    /// Takes the non-transactional logical messages decoded so far, as (lsn, prefix, content).
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

    /// For the open transaction (not a streamed one): (WAL bytes from its start to the last
    /// message decoded, WAL bytes left from there to its commit record); None outside one.
    #[getter]
    fn transaction_wal(&self) -> Option<(u64, u64)> {
        self.state.inner.transaction_wal()
    }
}

type Folded = (Vec<ElectricTransaction>, Option<FoldError>);

/// Folds decoded transactions, stopping at the first that does not fold.
fn fold_all(txns: Vec<Transaction>) -> Folded {
    let mut out = Vec::with_capacity(txns.len());
    for t in txns {
        match fold(t) {
            Ok(f) => out.push(f),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn into_py(
    py: Python<'_>,
    (folded, fold_error): Folded,
    error: Option<StreamError>,
) -> PyResult<Vec<Py<PyElectricTransaction>>> {
    let txns = folded
        .into_iter()
        .map(|t| Py::new(py, PyElectricTransaction { inner: t }))
        .collect::<PyResult<Vec<_>>>()?;
    // A fold error comes first in stream order: its transaction precedes any bad payload.
    if let Some(e) = fold_error {
        return Err(errors::fold(py, &e, PyList::new(py, txns)?));
    }
    match error {
        Some(e) => Err(errors::pgoutput(py, &e, PyList::new(py, txns)?)),
        None => Ok(txns),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ElectricDecoder>()?;
    m.add_class::<PyElectricTransaction>()?;
    Ok(())
}
