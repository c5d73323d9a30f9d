//! Wire bindings for the migrations proxy: a scanner that lets runs of uninteresting messages
//! through as raw bytes (so a relay touches Python once per chunk, not once per message), the
//! parsers of what a client sends, and the few server messages the proxy writes itself.

use electric_core::pgwire::frontend::{FrontendMessage, StartupMessage};
use electric_core::pgwire::{backend, split_frame, split_untagged, Frame, DEFAULT_MAX_MESSAGE};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::errors;

/// Buffers the bytes of one direction of a Postgres connection and cuts them into runs.
///
/// `next(stop)` returns `(passed, tag, body)`: `passed` is the raw bytes of the whole messages
/// at the front whose tag is not in `stop` (to forward untouched), then the first whole message
/// whose tag is in `stop` as its tag byte and body (tag -1 and empty body when there is none yet).
#[pyclass(module = "electric_trio._native")]
pub struct FrameScanner {
    buf: Vec<u8>,
    pos: usize,
    max_message: usize,
}

#[pymethods]
impl FrameScanner {
    #[new]
    #[pyo3(signature = (max_message = DEFAULT_MAX_MESSAGE))]
    fn new(max_message: usize) -> Self {
        FrameScanner {
            buf: Vec::with_capacity(1 << 16),
            pos: 0,
            max_message,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 1 << 16 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The body of the next untagged (startup-family) message, or None if more bytes are needed.
    fn next_untagged<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        errors::guard(|| {
            let Some(body) =
                split_untagged(&self.buf[self.pos..], self.max_message).map_err(errors::wire)?
            else {
                return Ok(None);
            };
            let out = PyBytes::new(py, body);
            self.pos += body.len() + 4;
            Ok(Some(out))
        })
    }

    fn next<'py>(
        &mut self,
        py: Python<'py>,
        stop: &[u8],
    ) -> PyResult<(Bound<'py, PyBytes>, i32, Bound<'py, PyBytes>)> {
        errors::guard(|| {
            let start = self.pos;
            let mut at = start;
            let mut found: Option<Frame<'_>> = None;
            while let Some(frame) =
                split_frame(&self.buf[at..], self.max_message).map_err(errors::wire)?
            {
                if stop.contains(&frame.tag) {
                    found = Some(frame);
                    break;
                }
                at += frame.wire_len();
            }
            let passed = PyBytes::new(py, &self.buf[start..at]);
            let (tag, body, len) = match found {
                Some(f) => (f.tag as i32, PyBytes::new(py, f.body), f.wire_len()),
                None => (-1, PyBytes::new(py, b""), 0),
            };
            self.pos = at + len;
            Ok((passed, tag, body))
        })
    }
}

/// Parses the body of an untagged first message: `("startup", protocol, [(name, value)...])`,
/// `("ssl",)`, `("gss",)` or `("cancel", process_id, secret_key)`.
#[pyfunction]
fn parse_startup<'py>(py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    errors::guard(|| {
        let msg = StartupMessage::parse(body).map_err(errors::wire)?;
        match msg {
            StartupMessage::Startup { protocol, params } => {
                ("startup", protocol, PyList::new(py, params)?).into_pyobject(py)
            }
            StartupMessage::SslRequest => ("ssl",).into_pyobject(py),
            StartupMessage::GssEncRequest => ("gss",).into_pyobject(py),
            StartupMessage::CancelRequest {
                process_id,
                secret_key,
            } => ("cancel", process_id, PyBytes::new(py, secret_key)).into_pyobject(py),
        }
    })
}

/// Parses a client message: `Q` -> `(sql,)`, `P` -> `(name, sql, param_types)`, `B` ->
/// `(portal, statement, param_formats, params, result_formats)`, `E` -> `(portal, max_rows)`,
/// `D`/`C` -> `(kind, name)`, `p` -> `(data,)`, anything else -> `()`.
#[pyfunction]
fn parse_frontend<'py>(py: Python<'py>, tag: u8, body: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    errors::guard(|| {
        let msg = FrontendMessage::parse(Frame { tag, body }).map_err(errors::wire)?;
        match msg {
            FrontendMessage::Query { sql } => (sql,).into_pyobject(py),
            FrontendMessage::Parse {
                name,
                query,
                param_types,
            } => (name, query, param_types).into_pyobject(py),
            FrontendMessage::Bind(b) => {
                let params = b
                    .params
                    .iter()
                    .map(|p| p.map(|v| PyBytes::new(py, v)))
                    .collect::<Vec<_>>();
                (
                    b.portal,
                    b.statement,
                    b.param_formats,
                    PyList::new(py, params)?,
                    b.result_formats,
                )
                    .into_pyobject(py)
            }
            FrontendMessage::Execute { portal, max_rows } => (portal, max_rows).into_pyobject(py),
            FrontendMessage::Describe { kind, name } | FrontendMessage::Close { kind, name } => {
                ((kind as char).to_string(), name).into_pyobject(py)
            }
            FrontendMessage::Password(data) => (PyBytes::new(py, data),).into_pyobject(py),
            _ => Ok(PyTuple::empty(py)),
        }
    })
}

fn out<'py>(py: Python<'py>, f: impl FnOnce(&mut Vec<u8>)) -> Bound<'py, PyBytes> {
    let mut b = Vec::with_capacity(64);
    f(&mut b);
    PyBytes::new(py, &b)
}

fn field_codes(fields: &[(String, String)]) -> PyResult<Vec<(u8, &str)>> {
    fields
        .iter()
        .map(|(k, v)| match k.as_bytes() {
            [c] => Ok((*c, v.as_str())),
            _ => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "field code {k:?} is not one byte"
            ))),
        })
        .collect()
}

/// `AuthenticationOk` (code 0), `AuthenticationCleartextPassword` (3) or
/// `AuthenticationMD5Password` (5, with its 4-byte salt).
#[pyfunction]
#[pyo3(signature = (code, salt = None))]
fn encode_authentication<'py>(
    py: Python<'py>,
    code: i32,
    salt: Option<[u8; 4]>,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(match (code, salt) {
        (0, None) => out(py, backend::authentication_ok),
        (3, None) => out(py, backend::authentication_cleartext),
        (5, Some(s)) => out(py, |b| backend::authentication_md5(b, s)),
        _ => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unsupported authentication code {code}"
            )))
        }
    })
}

/// An `ErrorResponse` (or with `notice`, a `NoticeResponse`) from `(code char, value)` fields.
#[pyfunction]
#[pyo3(signature = (fields, notice = false))]
fn encode_error_response<'py>(
    py: Python<'py>,
    fields: Vec<(String, String)>,
    notice: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let f = field_codes(&fields)?;
    Ok(if notice {
        out(py, |b| backend::notice_response(b, &f))
    } else {
        out(py, |b| backend::error_response(b, &f))
    })
}

#[pyfunction]
fn encode_ready_for_query(py: Python<'_>, status: u8) -> Bound<'_, PyBytes> {
    out(py, |b| backend::ready_for_query(b, status))
}

#[pyfunction]
fn encode_command_complete<'py>(py: Python<'py>, tag: &str) -> Bound<'py, PyBytes> {
    out(py, |b| backend::command_complete(b, tag))
}

/// One server message from its tag byte and body, length added (to forward a stop message).
#[pyfunction]
fn encode_pg_message<'py>(py: Python<'py>, tag: u8, body: PyBackedBytes) -> Bound<'py, PyBytes> {
    let mut b = Vec::with_capacity(body.len() + 5);
    b.push(tag);
    b.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    b.extend_from_slice(&body);
    PyBytes::new(py, &b)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FrameScanner>()?;
    m.add_function(wrap_pyfunction!(parse_startup, m)?)?;
    m.add_function(wrap_pyfunction!(parse_frontend, m)?)?;
    m.add_function(wrap_pyfunction!(encode_authentication, m)?)?;
    m.add_function(wrap_pyfunction!(encode_error_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_ready_for_query, m)?)?;
    m.add_function(wrap_pyfunction!(encode_command_complete, m)?)?;
    m.add_function(wrap_pyfunction!(encode_pg_message, m)?)?;
    Ok(())
}
