//! Postgres wire codec bindings: an incremental reader of server messages with a fast path for
//! rows and COPY data, and encoders for client messages.

use electric_core::pgwire::backend::{Authentication, BackendMessage};
use electric_core::pgwire::{self, frontend, split_frame, DEFAULT_MAX_MESSAGE};
use electric_core::value::Kind;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::{errors, values};

/// Buffers bytes received from a Postgres server and yields whole messages.
///
/// `next()` returns one message as a tuple whose first item is the message's tag character,
/// or None when more bytes are needed. `read_rows()` and `read_copy_data()` consume runs of
/// DataRow / CopyData messages in one call, which is where large results spend their time.
#[pyclass(module = "electric_trio._native")]
pub struct BackendReader {
    buf: Vec<u8>,
    pos: usize,
    max_message: usize,
    kinds: Vec<Kind>,
    /// Per column: true when the server sends it in binary format (returned as bytes).
    binary: Vec<bool>,
}

impl BackendReader {
    fn compact(&mut self) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos > 1 << 16) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    fn row_tuple<'py>(
        &self,
        py: Python<'py>,
        body: pgwire::backend::DataRowBody<'_>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        if body.count as usize != self.kinds.len() {
            return Err(errors::ProtocolError::new_err(format!(
                "DataRow has {} columns, RowDescription declared {}",
                body.count,
                self.kinds.len()
            )));
        }
        let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(self.kinds.len());
        for (i, v) in body.iter().enumerate() {
            let v = v.map_err(errors::wire)?;
            items.push(match v {
                None => py.None().into_bound(py),
                Some(raw) if self.binary[i] => PyBytes::new(py, raw).into_any(),
                Some(raw) => values::decode_to_py(py, self.kinds[i], raw)?,
            });
        }
        PyTuple::new(py, items)
    }
}

fn s<'py>(py: Python<'py>, v: &str) -> Bound<'py, PyString> {
    PyString::new(py, v)
}

#[pymethods]
impl BackendReader {
    #[new]
    #[pyo3(signature = (max_message = DEFAULT_MAX_MESSAGE))]
    fn new(max_message: usize) -> Self {
        BackendReader {
            buf: Vec::with_capacity(1 << 16),
            pos: 0,
            max_message,
            kinds: Vec::new(),
            binary: Vec::new(),
        }
    }

    /// Appends bytes received from the server.
    fn feed(&mut self, data: PyBackedBytes) {
        self.compact();
        self.buf.extend_from_slice(&data);
    }

    /// Bytes received but not yet consumed.
    #[getter]
    fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the unconsumed bytes out (e.g. to hand a raw stream over after a handshake).
    fn take_buffered<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let out = PyBytes::new(py, &self.buf[self.pos..]);
        self.buf.clear();
        self.pos = 0;
        out
    }

    /// Sets the column types (and formats: 0 text, 1 binary) that DataRows are decoded with.
    #[pyo3(signature = (type_oids, formats = None))]
    fn set_columns(&mut self, type_oids: Vec<u32>, formats: Option<Vec<i16>>) {
        self.kinds = type_oids.iter().map(|&o| Kind::of(o)).collect();
        self.binary = match formats {
            Some(f) => (0..type_oids.len())
                .map(|i| f.get(i).or(f.first()).copied().unwrap_or(0) == 1)
                .collect(),
            None => vec![false; type_oids.len()],
        };
    }

    /// Decodes consecutive DataRow messages (at most `limit`) into tuples, stopping at the first
    /// other message or when more bytes are needed.
    #[pyo3(signature = (limit = 1 << 20))]
    fn read_rows<'py>(&mut self, py: Python<'py>, limit: usize) -> PyResult<Bound<'py, PyList>> {
        errors::guard(|| {
            let list = PyList::empty(py);
            let mut n = 0;
            while n < limit {
                let Some(frame) =
                    split_frame(&self.buf[self.pos..], self.max_message).map_err(errors::wire)?
                else {
                    break;
                };
                if frame.tag != pgwire::backend::tag::DATA_ROW {
                    break;
                }
                let len = frame.wire_len();
                let BackendMessage::DataRow(body) =
                    BackendMessage::parse(frame).map_err(errors::wire)?
                else {
                    unreachable!("tag checked above")
                };
                list.append(self.row_tuple(py, body)?)?;
                self.pos += len;
                n += 1;
            }
            Ok(list)
        })
    }

    /// Takes the payloads of consecutive CopyData messages, up to about `limit` bytes.
    #[pyo3(signature = (limit = 1 << 22))]
    fn read_copy_data<'py>(
        &mut self,
        py: Python<'py>,
        limit: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        let mut taken = 0;
        while taken < limit {
            let Some(frame) =
                split_frame(&self.buf[self.pos..], self.max_message).map_err(errors::wire)?
            else {
                break;
            };
            if frame.tag != pgwire::backend::tag::COPY_DATA {
                break;
            }
            list.append(PyBytes::new(py, frame.body))?;
            taken += frame.body.len();
            self.pos += frame.wire_len();
        }
        Ok(list)
    }

    /// The next whole message as a tuple `(tag, ...)`, or None if more bytes are needed.
    fn next<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        errors::guard(|| {
            let Some(frame) =
                split_frame(&self.buf[self.pos..], self.max_message).map_err(errors::wire)?
            else {
                return Ok(None);
            };
            let len = frame.wire_len();
            let tag = s(py, &(frame.tag as char).to_string()).into_any();
            let msg = BackendMessage::parse(frame).map_err(errors::wire)?;
            let items: Vec<Bound<'py, PyAny>> = match msg {
                BackendMessage::Authentication(a) => {
                    let (code, data) = match a {
                        Authentication::Ok => (0, py.None().into_bound(py)),
                        Authentication::CleartextPassword => (3, py.None().into_bound(py)),
                        Authentication::Md5Password { salt } => {
                            (5, PyBytes::new(py, &salt).into_any())
                        }
                        Authentication::Sasl { mechanisms } => {
                            (10, PyList::new(py, mechanisms)?.into_any())
                        }
                        Authentication::SaslContinue { data } => {
                            (11, PyBytes::new(py, data).into_any())
                        }
                        Authentication::SaslFinal { data } => {
                            (12, PyBytes::new(py, data).into_any())
                        }
                        Authentication::Unsupported { code } => (code, py.None().into_bound(py)),
                    };
                    vec![tag, code.into_pyobject(py)?.into_any(), data]
                }
                BackendMessage::BackendKeyData {
                    process_id,
                    secret_key,
                } => {
                    vec![
                        tag,
                        process_id.into_pyobject(py)?.into_any(),
                        PyBytes::new(py, secret_key).into_any(),
                    ]
                }
                BackendMessage::CommandComplete { tag: t } => vec![tag, s(py, t).into_any()],
                BackendMessage::CopyData(d) => vec![tag, PyBytes::new(py, d).into_any()],
                BackendMessage::CopyInResponse(r)
                | BackendMessage::CopyOutResponse(r)
                | BackendMessage::CopyBothResponse(r) => {
                    vec![
                        tag,
                        r.format.into_pyobject(py)?.into_any(),
                        PyList::new(py, r.column_formats)?.into_any(),
                    ]
                }
                BackendMessage::DataRow(body) => {
                    let row = if self.kinds.len() == body.count as usize {
                        self.row_tuple(py, body)?.into_any()
                    } else {
                        let vals = body
                            .iter()
                            .map(|v| v.map(|o| o.map(|b| PyBytes::new(py, b))))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(errors::wire)?;
                        PyTuple::new(py, vals)?.into_any()
                    };
                    vec![tag, row]
                }
                BackendMessage::ErrorResponse(f) | BackendMessage::NoticeResponse(f) => {
                    let d = PyDict::new(py);
                    for (code, value) in f.fields {
                        d.set_item((code as char).to_string(), value)?;
                    }
                    vec![tag, d.into_any()]
                }
                BackendMessage::NegotiateProtocolVersion {
                    newest_minor,
                    unrecognized,
                } => {
                    vec![
                        tag,
                        newest_minor.into_pyobject(py)?.into_any(),
                        PyList::new(py, unrecognized)?.into_any(),
                    ]
                }
                BackendMessage::NotificationResponse {
                    process_id,
                    channel,
                    payload,
                } => {
                    vec![
                        tag,
                        process_id.into_pyobject(py)?.into_any(),
                        s(py, channel).into_any(),
                        s(py, payload).into_any(),
                    ]
                }
                BackendMessage::ParameterDescription(oids) => {
                    vec![tag, PyList::new(py, oids)?.into_any()]
                }
                BackendMessage::ParameterStatus { name, value } => {
                    vec![tag, s(py, name).into_any(), s(py, value).into_any()]
                }
                BackendMessage::ReadyForQuery { status } => {
                    vec![tag, s(py, &(status as char).to_string()).into_any()]
                }
                BackendMessage::RowDescription(fields) => {
                    let list = PyList::empty(py);
                    for f in fields {
                        list.append((
                            f.name,
                            f.table_oid,
                            f.column_id,
                            f.type_oid,
                            f.type_size,
                            f.type_modifier,
                            f.format,
                        ))?;
                    }
                    vec![tag, list.into_any()]
                }
                BackendMessage::BindComplete
                | BackendMessage::CloseComplete
                | BackendMessage::CopyDone
                | BackendMessage::EmptyQueryResponse
                | BackendMessage::NoData
                | BackendMessage::ParseComplete
                | BackendMessage::PortalSuspended => vec![tag],
            };
            self.pos += len;
            Ok(Some(PyTuple::new(py, items)?))
        })
    }
}

fn out<'py>(py: Python<'py>, f: impl FnOnce(&mut Vec<u8>)) -> Bound<'py, PyBytes> {
    let mut b = Vec::with_capacity(64);
    f(&mut b);
    PyBytes::new(py, &b)
}

#[pyfunction]
fn encode_startup<'py>(py: Python<'py>, params: Vec<(String, String)>) -> Bound<'py, PyBytes> {
    let p: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    out(py, |b| frontend::startup(b, &p))
}

#[pyfunction]
fn encode_ssl_request(py: Python<'_>) -> Bound<'_, PyBytes> {
    out(py, frontend::ssl_request)
}

#[pyfunction]
fn encode_cancel_request<'py>(
    py: Python<'py>,
    process_id: i32,
    secret_key: &[u8],
) -> Bound<'py, PyBytes> {
    out(py, |b| frontend::cancel_request(b, process_id, secret_key))
}

#[pyfunction]
fn encode_password<'py>(py: Python<'py>, password: &[u8]) -> Bound<'py, PyBytes> {
    out(py, |b| frontend::password(b, password))
}

#[pyfunction]
fn encode_sasl_initial_response<'py>(
    py: Python<'py>,
    mechanism: &str,
    data: &[u8],
) -> Bound<'py, PyBytes> {
    out(py, |b| frontend::sasl_initial_response(b, mechanism, data))
}

#[pyfunction]
fn encode_sasl_response<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    out(py, |b| frontend::sasl_response(b, data))
}

#[pyfunction]
fn encode_query<'py>(py: Python<'py>, sql: &str) -> Bound<'py, PyBytes> {
    out(py, |b| frontend::query(b, sql))
}

/// Parse + Bind + Describe(portal) + Execute + Sync for one unnamed statement, in one buffer.
#[pyfunction]
#[pyo3(signature = (sql, param_types, params, result_format = 0, max_rows = 0))]
fn encode_extended_query<'py>(
    py: Python<'py>,
    sql: &str,
    param_types: Vec<u32>,
    params: Vec<Option<Vec<u8>>>,
    result_format: i16,
    max_rows: i32,
) -> Bound<'py, PyBytes> {
    out(py, |b| {
        frontend::parse(b, "", sql, &param_types);
        frontend::bind(
            b,
            "",
            "",
            &[0],
            params.iter().map(|p| p.as_deref()),
            &[result_format],
        );
        frontend::describe(b, b'P', "");
        frontend::execute(b, "", max_rows);
        frontend::sync(b);
    })
}

#[pyfunction]
fn encode_sync(py: Python<'_>) -> Bound<'_, PyBytes> {
    out(py, frontend::sync)
}

#[pyfunction]
fn encode_terminate(py: Python<'_>) -> Bound<'_, PyBytes> {
    out(py, frontend::terminate)
}

#[pyfunction]
fn encode_copy_data<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    out(py, |b| frontend::copy_data(b, data))
}

/// Frames many CopyData payloads into one buffer.
#[pyfunction]
fn encode_copy_data_many<'py>(py: Python<'py>, chunks: Vec<Vec<u8>>) -> Bound<'py, PyBytes> {
    out(py, |b| {
        for c in &chunks {
            frontend::copy_data(b, c);
        }
    })
}

#[pyfunction]
fn encode_copy_done(py: Python<'_>) -> Bound<'_, PyBytes> {
    out(py, frontend::copy_done)
}

#[pyfunction]
fn encode_copy_fail<'py>(py: Python<'py>, message: &str) -> Bound<'py, PyBytes> {
    out(py, |b| frontend::copy_fail(b, message))
}

/// Decodes one text-format value of the given type OID (as rows are decoded).
#[pyfunction]
fn decode_text_value<'py>(
    py: Python<'py>,
    type_oid: u32,
    raw: &[u8],
) -> PyResult<Bound<'py, PyAny>> {
    values::decode_to_py(py, Kind::of(type_oid), raw)
}

/// Parses the payload of a replication CopyData message.
///
/// Returns `("w", wal_start, wal_end, send_time, data)` or `("k", wal_end, send_time, reply)`.
#[pyfunction]
fn parse_replication_message<'py>(
    py: Python<'py>,
    payload: &[u8],
) -> PyResult<Bound<'py, PyTuple>> {
    use electric_core::pgwire::replication::ReplicationMessage as R;
    let m = R::parse(payload).map_err(errors::wire)?;
    match m {
        R::XLogData {
            wal_start,
            wal_end,
            send_time,
            data,
        } => ("w", wal_start, wal_end, send_time, PyBytes::new(py, data)).into_pyobject(py),
        R::PrimaryKeepalive {
            wal_end,
            send_time,
            reply_requested,
        } => ("k", wal_end, send_time, reply_requested).into_pyobject(py),
        R::StandbyStatusUpdate {
            write,
            flush,
            apply,
            send_time,
            reply_requested,
        } => ("r", write, flush, apply, send_time, reply_requested).into_pyobject(py),
        R::HotStandbyFeedback {
            send_time,
            xmin,
            epoch,
        } => ("h", send_time, xmin, epoch).into_pyobject(py),
    }
}

/// A standby status update framed as CopyData, ready to send.
#[pyfunction]
#[pyo3(signature = (write, flush, apply, send_time, reply_requested = false))]
fn encode_standby_status<'py>(
    py: Python<'py>,
    write: u64,
    flush: u64,
    apply: u64,
    send_time: i64,
    reply_requested: bool,
) -> Bound<'py, PyBytes> {
    use electric_core::pgwire::replication::ReplicationMessage as R;
    let mut payload = Vec::with_capacity(34);
    R::StandbyStatusUpdate {
        write,
        flush,
        apply,
        send_time,
        reply_requested,
    }
    .encode_into(&mut payload);
    out(py, |b| frontend::copy_data(b, &payload))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BackendReader>()?;
    m.add_function(wrap_pyfunction!(encode_startup, m)?)?;
    m.add_function(wrap_pyfunction!(encode_ssl_request, m)?)?;
    m.add_function(wrap_pyfunction!(encode_cancel_request, m)?)?;
    m.add_function(wrap_pyfunction!(encode_password, m)?)?;
    m.add_function(wrap_pyfunction!(encode_sasl_initial_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_sasl_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_query, m)?)?;
    m.add_function(wrap_pyfunction!(encode_extended_query, m)?)?;
    m.add_function(wrap_pyfunction!(encode_sync, m)?)?;
    m.add_function(wrap_pyfunction!(encode_terminate, m)?)?;
    m.add_function(wrap_pyfunction!(encode_copy_data, m)?)?;
    m.add_function(wrap_pyfunction!(encode_copy_data_many, m)?)?;
    m.add_function(wrap_pyfunction!(encode_copy_done, m)?)?;
    m.add_function(wrap_pyfunction!(encode_copy_fail, m)?)?;
    m.add_function(wrap_pyfunction!(decode_text_value, m)?)?;
    m.add_function(wrap_pyfunction!(parse_replication_message, m)?)?;
    m.add_function(wrap_pyfunction!(encode_standby_status, m)?)?;
    Ok(())
}
