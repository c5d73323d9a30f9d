//! The server side of the Postgres wire protocol, for the logical-replication publisher: an
//! incremental reader of client messages, encoders of server messages, and the encoder of one
//! transaction of inserts as a pgoutput replication stream.

use electric_core::pgoutput::publish::{encode_transaction, PublishedInsert};
use electric_core::pgoutput::{RelationBody, RelationColumn, TupleValue};
use electric_core::pgwire::backend::{self, CopyResponse, FieldDescription};
use electric_core::pgwire::frontend::{self, FrontendMessage, StartupMessage};
use electric_core::pgwire::{split_frame, split_untagged, DEFAULT_MAX_MESSAGE};
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyTuple};

use crate::errors;

/// Buffers bytes received from a Postgres client and yields whole messages.
///
/// `next_startup()` reads the untagged first message(s) of a connection, `next()` the tagged
/// messages after it; both return None when more bytes are needed.
#[pyclass(module = "electric_trio._native")]
pub struct FrontendReader {
    buf: Vec<u8>,
    pos: usize,
    max_message: usize,
}

impl FrontendReader {
    fn compact(&mut self) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos > 1 << 16) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

#[pymethods]
impl FrontendReader {
    #[new]
    #[pyo3(signature = (max_message = DEFAULT_MAX_MESSAGE))]
    fn new(max_message: usize) -> Self {
        FrontendReader {
            buf: Vec::with_capacity(1 << 12),
            pos: 0,
            max_message,
        }
    }

    /// Appends bytes received from the client.
    fn feed(&mut self, data: PyBackedBytes) {
        self.compact();
        self.buf.extend_from_slice(&data);
    }

    /// The next startup-phase message: `("startup", protocol, [(name, value), ...])`,
    /// `("ssl",)`, `("gssenc",)` or `("cancel", process_id, secret_key)`.
    fn next_startup<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        errors::guard(|| {
            let Some(body) =
                split_untagged(&self.buf[self.pos..], self.max_message).map_err(errors::wire)?
            else {
                return Ok(None);
            };
            let len = body.len() + 4;
            let item = match StartupMessage::parse(body).map_err(errors::wire)? {
                StartupMessage::Startup { protocol, params } => {
                    ("startup", protocol, params).into_pyobject(py)?
                }
                StartupMessage::SslRequest => ("ssl",).into_pyobject(py)?,
                StartupMessage::GssEncRequest => ("gssenc",).into_pyobject(py)?,
                StartupMessage::CancelRequest {
                    process_id,
                    secret_key,
                } => ("cancel", process_id, PyBytes::new(py, secret_key)).into_pyobject(py)?,
            };
            self.pos += len;
            Ok(Some(item))
        })
    }

    /// The next tagged message as `(tag, ...)`: `("Q", sql)`, `("d", data)`, `("p", data)`
    /// (a password or SASL response), `("X",)`, `("c",)`, `("f", message)`; any other message
    /// as its tag alone.
    fn next<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        errors::guard(|| {
            let Some(frame) =
                split_frame(&self.buf[self.pos..], self.max_message).map_err(errors::wire)?
            else {
                return Ok(None);
            };
            let len = frame.wire_len();
            let tag = (frame.tag as char).to_string();
            let item = match FrontendMessage::parse(frame) {
                Ok(FrontendMessage::Query { sql }) => (tag, sql).into_pyobject(py)?,
                Ok(FrontendMessage::CopyData(d)) | Ok(FrontendMessage::Password(d)) => {
                    (tag, PyBytes::new(py, d)).into_pyobject(py)?
                }
                Ok(FrontendMessage::CopyFail { message }) => (tag, message).into_pyobject(py)?,
                Ok(_) => (tag,).into_pyobject(py)?,
                Err(e) => return Err(errors::wire(e)),
            };
            self.pos += len;
            Ok(Some(item))
        })
    }
}

fn out<'py>(py: Python<'py>, f: impl FnOnce(&mut Vec<u8>)) -> Bound<'py, PyBytes> {
    let mut b = Vec::with_capacity(64);
    f(&mut b);
    PyBytes::new(py, &b)
}

/// `(mechanism, data)` of a SASLInitialResponse body (data None when the client sent none).
#[pyfunction]
fn parse_sasl_initial_response<'py>(
    py: Python<'py>,
    body: &[u8],
) -> PyResult<(String, Option<Bound<'py, PyBytes>>)> {
    errors::guard(|| {
        let (mechanism, data) =
            frontend::parse_sasl_initial_response(body).map_err(errors::wire)?;
        Ok((mechanism.to_owned(), data.map(|d| PyBytes::new(py, d))))
    })
}

/// An Authentication request: 0 ok, 10 SASL (`data` = the mechanisms, NUL-separated), 11 SASL
/// continue, 12 SASL final (`data` = the SASL payload).
#[pyfunction]
#[pyo3(signature = (code, data = b"".as_slice()))]
fn encode_auth_request<'py>(
    py: Python<'py>,
    code: i32,
    data: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(match code {
        0 => out(py, backend::authentication_ok),
        10 => {
            let text =
                std::str::from_utf8(data).map_err(|_| value_error("mechanisms are not UTF-8"))?;
            let mechanisms: Vec<&str> = text.split('\0').filter(|m| !m.is_empty()).collect();
            out(py, |b| backend::authentication_sasl(b, &mechanisms))
        }
        11 => out(py, |b| backend::authentication_sasl_continue(b, data)),
        12 => out(py, |b| backend::authentication_sasl_final(b, data)),
        other => {
            return Err(value_error(&format!(
                "unsupported authentication code {other}"
            )))
        }
    })
}

fn value_error(message: &str) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(message.to_owned())
}

fn status_byte(status: Option<&str>) -> PyResult<Option<u8>> {
    match status.map(str::as_bytes) {
        None => Ok(None),
        Some([s]) => Ok(Some(*s)),
        Some(_) => Err(value_error("the ReadyForQuery status is one character")),
    }
}

#[pyfunction]
fn encode_parameter_status<'py>(py: Python<'py>, name: &str, value: &str) -> Bound<'py, PyBytes> {
    out(py, |b| backend::parameter_status(b, name, value))
}

#[pyfunction]
fn encode_backend_key_data<'py>(
    py: Python<'py>,
    process_id: i32,
    secret_key: &[u8],
) -> Bound<'py, PyBytes> {
    out(py, |b| backend::backend_key_data(b, process_id, secret_key))
}

/// An ErrorResponse from `(field code, value)` pairs (e.g. `[("S", "FATAL"), ("C", "08004"),
/// ("M", "...")]`), then ReadyForQuery with `ready` (`I`, `T`, `E`) unless it is None.
#[pyfunction]
#[pyo3(signature = (fields, ready = None))]
fn encode_query_error<'py>(
    py: Python<'py>,
    fields: Vec<(PyBackedStr, PyBackedStr)>,
    ready: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    let ready = status_byte(ready)?;
    let mut f: Vec<(u8, &str)> = Vec::with_capacity(fields.len());
    for (code, value) in &fields {
        let [c] = code.as_bytes() else {
            return Err(value_error("field codes are one character"));
        };
        f.push((*c, value));
    }
    Ok(out(py, |b| {
        backend::error_response(b, &f);
        if let Some(s) = ready {
            backend::ready_for_query(b, s);
        }
    }))
}

/// The answer to a simple query in text format: RowDescription (`(name, type oid)` per column;
/// none when `columns` is None), a DataRow per row (None is NULL), CommandComplete `tag`, then
/// ReadyForQuery with `ready` unless it is None.
#[pyfunction]
#[pyo3(signature = (columns, rows, tag, ready = Some("I")))]
fn encode_query_result<'py>(
    py: Python<'py>,
    columns: Option<Vec<(PyBackedStr, u32)>>,
    rows: Vec<Vec<Option<PyBackedStr>>>,
    tag: &str,
    ready: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    let ready = status_byte(ready)?;
    let fields: Option<Vec<FieldDescription<'_>>> = columns.as_ref().map(|columns| {
        columns
            .iter()
            .map(|(name, oid)| FieldDescription {
                name,
                table_oid: 0,
                column_id: 0,
                type_oid: *oid,
                type_size: -1,
                type_modifier: -1,
                format: 0,
            })
            .collect()
    });
    Ok(out(py, |b| {
        if let Some(fields) = &fields {
            backend::row_description(b, fields);
        }
        for row in &rows {
            backend::data_row(b, row.iter().map(|v| v.as_ref().map(|s| s.as_bytes())));
        }
        backend::command_complete(b, tag);
        if let Some(s) = ready {
            backend::ready_for_query(b, s);
        }
    }))
}

/// CopyBothResponse, binary, no columns (what a walsender sends for START_REPLICATION).
#[pyfunction]
fn encode_copy_both_response(py: Python<'_>) -> Bound<'_, PyBytes> {
    out(py, |b| {
        backend::copy_both_response(
            b,
            &CopyResponse {
                format: 0,
                column_formats: Vec::new(),
            },
        )
    })
}

/// A primary keepalive framed as CopyData.
#[pyfunction]
#[pyo3(signature = (wal_end, send_time, reply_requested = false))]
fn encode_keepalive(
    py: Python<'_>,
    wal_end: u64,
    send_time: i64,
    reply_requested: bool,
) -> Bound<'_, PyBytes> {
    use electric_core::pgwire::replication::ReplicationMessage as R;
    let mut payload = Vec::with_capacity(18);
    R::PrimaryKeepalive {
        wal_end,
        send_time,
        reply_requested,
    }
    .encode_into(&mut payload);
    out(py, |b| backend::copy_data(b, &payload))
}

type RelationArg = (
    u32,
    PyBackedStr,
    PyBackedStr,
    PyBackedStr,
    Vec<(PyBackedStr, u32, i32, bool)>,
);

/// One transaction of inserts as CopyData(XLogData(pgoutput)) frames: Begin, the `relations`
/// (`(id, schema, table, replica identity char, [(column, type oid, type modifier, is key)])`),
/// the `inserts` (`(relation id, values in text form, None for NULL)`), Commit.
///
/// Begin and each insert take the next LSN after `after_lsn` (relations share Begin's), so
/// `end_lsn = after_lsn + len(inserts) + 3`; returns `(frames, commit_lsn, end_lsn)`.
/// `commit_timestamp` and `send_time` are microseconds since 2000-01-01.
#[pyfunction]
#[pyo3(signature = (after_lsn, commit_timestamp, send_time, relations, inserts, xid = 0))]
fn encode_pgoutput_transaction<'py>(
    py: Python<'py>,
    after_lsn: u64,
    commit_timestamp: i64,
    send_time: i64,
    relations: Vec<RelationArg>,
    inserts: Vec<(u32, Vec<Option<PyBackedStr>>)>,
    xid: u32,
) -> PyResult<(Bound<'py, PyBytes>, u64, u64)> {
    let mut bodies = Vec::with_capacity(relations.len());
    for (id, namespace, name, identity, columns) in &relations {
        let [replica_identity] = identity.as_bytes() else {
            return Err(value_error("replica identity is one character"));
        };
        bodies.push(RelationBody {
            xid: None,
            id: *id,
            namespace,
            name,
            replica_identity: *replica_identity,
            columns: columns
                .iter()
                .map(|(name, type_oid, type_modifier, key)| RelationColumn {
                    flags: u8::from(*key),
                    name,
                    type_oid: *type_oid,
                    type_modifier: *type_modifier,
                })
                .collect(),
        });
    }
    let values: Vec<Vec<TupleValue<'_>>> = inserts
        .iter()
        .map(|(_, vals)| {
            vals.iter()
                .map(|v| match v {
                    None => TupleValue::Null,
                    Some(s) => TupleValue::Text(s.as_bytes()),
                })
                .collect()
        })
        .collect();
    let rows: Vec<PublishedInsert<'_>> = inserts
        .iter()
        .zip(&values)
        .map(|((relation_id, _), values)| PublishedInsert {
            relation_id: *relation_id,
            values,
        })
        .collect();
    let mut buf = Vec::with_capacity(256 + 64 * rows.len());
    let lsns = encode_transaction(
        &mut buf,
        after_lsn,
        xid,
        commit_timestamp,
        send_time,
        &bodies,
        &rows,
    );
    Ok((PyBytes::new(py, &buf), lsns.commit_lsn, lsns.end_lsn))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FrontendReader>()?;
    m.add_function(wrap_pyfunction!(parse_sasl_initial_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_auth_request, m)?)?;
    m.add_function(wrap_pyfunction!(encode_parameter_status, m)?)?;
    m.add_function(wrap_pyfunction!(encode_backend_key_data, m)?)?;
    m.add_function(wrap_pyfunction!(encode_query_error, m)?)?;
    m.add_function(wrap_pyfunction!(encode_query_result, m)?)?;
    m.add_function(wrap_pyfunction!(encode_copy_both_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_keepalive, m)?)?;
    m.add_function(wrap_pyfunction!(encode_pgoutput_transaction, m)?)?;
    Ok(())
}
