//! Wire bindings for the migrations proxy: a scanner that lets runs of uninteresting messages
//! through as raw bytes (so a relay touches Python once per chunk, not once per message), the
//! parsers of what a client sends, and the few server messages the proxy writes itself.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use electric_core::pgwire::frontend::{
    is_plain_parse, is_plain_query, tag, FrontendMessage, StartupMessage,
};
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
/// With `pass_plain_queries` set, a simple Query that [`is_plain_query`] accepts is passed even
/// when `Q` is in `stop`; with `pass_plain_batches`, so are the extended protocol's Parse of a
/// statement [`is_plain_parse`] accepts, Bind, Execute and Sync. `requests_passed` counts the
/// Queries and Syncs passed that way; `batch_executes` the Executes since the last Sync, passed
/// or returned (both as a client sends them).
///
/// `pump` is the relay's fast path: it moves bytes from one socket to another with the GIL
/// released, and comes back to Python only for a message it must not pass.
#[pyclass(module = "electric_trio._native")]
pub struct FrameScanner {
    buf: Vec<u8>,
    pos: usize,
    max_message: usize,
    #[pyo3(get, set)]
    pass_plain_queries: bool,
    #[pyo3(get, set)]
    pass_plain_batches: bool,
    #[pyo3(get)]
    requests_passed: u64,
    #[pyo3(get)]
    batch_executes: u64,
    scratch: Vec<u8>,
}

/// What one scan of the buffer found: the passed run `start..end`, then maybe a stop message.
struct Scan {
    start: usize,
    end: usize,
    stop: Option<(u8, std::ops::Range<usize>)>,
}

enum PumpError {
    Io(std::io::Error),
    Wire(electric_core::error::WireError),
}

const PUMP_READ: usize = 1 << 16;

impl FrameScanner {
    fn append(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 1 << 16 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Whether a message whose tag is in `stop` goes through all the same.
    fn passes(&self, frame: Frame<'_>) -> bool {
        match frame.tag {
            tag::QUERY => {
                self.pass_plain_queries
                    && matches!(
                        FrontendMessage::parse(frame),
                        Ok(FrontendMessage::Query { sql }) if is_plain_query(sql)
                    )
            }
            tag::PARSE => {
                self.pass_plain_batches
                    && matches!(
                        FrontendMessage::parse(frame),
                        Ok(FrontendMessage::Parse { query, .. }) if is_plain_parse(query)
                    )
            }
            tag::BIND | tag::EXECUTE | tag::SYNC => self.pass_plain_batches,
            _ => false,
        }
    }

    fn count_batch(&mut self, tag: u8) {
        match tag {
            tag::EXECUTE => self.batch_executes += 1,
            tag::SYNC => self.batch_executes = 0,
            _ => {}
        }
    }

    /// Scans the whole messages at the front; a ReadyForQuery is passed and reported to `ready`
    /// when it is given. Consumes the stop message it returns if `take_stop`.
    fn scan(
        &mut self,
        stop: &[u8],
        ready: Option<&RelayState>,
        take_stop: bool,
    ) -> Result<Scan, electric_core::error::WireError> {
        let start = self.pos;
        let mut at = start;
        let mut found = None;
        while let Some(frame) = split_frame(&self.buf[at..], self.max_message)? {
            let len = frame.wire_len();
            if frame.tag == b'Z' {
                if let Some(state) = ready {
                    state.ready(frame.body.first().copied().unwrap_or(b'I'));
                    at += len;
                    continue;
                }
            }
            if stop.contains(&frame.tag) {
                if !self.passes(frame) {
                    found = Some((frame.tag, at + 5..at + len));
                    break;
                }
                if frame.tag == tag::QUERY || frame.tag == tag::SYNC {
                    self.requests_passed += 1;
                }
            }
            let tag = frame.tag;
            self.count_batch(tag);
            at += len;
        }
        self.pos = match &found {
            Some((tag, body)) if take_stop => {
                let (tag, end) = (*tag, body.end);
                self.count_batch(tag);
                end
            }
            _ => at,
        };
        Ok(Scan {
            start,
            end: at,
            stop: found,
        })
    }

    /// The loop of [`FrameScanner::pump`], without the GIL.
    fn pump_loop(
        &mut self,
        fd_in: i32,
        fd_out: i32,
        stop: &[u8],
        ready: Option<&RelayState>,
    ) -> Result<bool, PumpError> {
        use std::io::{Read, Write};
        use std::os::fd::FromRawFd;
        // SAFETY: the caller owns both descriptors for the duration of the call; ManuallyDrop
        // keeps them open afterwards.
        let mut input = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd_in) });
        let mut output = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd_out) });
        if self.scratch.len() < PUMP_READ {
            self.scratch = vec![0; PUMP_READ];
        }
        loop {
            let scan = self.scan(stop, ready, false).map_err(PumpError::Wire)?;
            if scan.end > scan.start {
                output
                    .write_all(&self.buf[scan.start..scan.end])
                    .map_err(PumpError::Io)?;
            }
            if scan.stop.is_some() {
                return Ok(true); // the stop message is left for `next`
            }
            let n = loop {
                match input.read(&mut self.scratch) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other.map_err(PumpError::Io)?,
                }
            };
            if n == 0 {
                return Ok(false);
            }
            let data = std::mem::take(&mut self.scratch);
            self.append(&data[..n]);
            self.scratch = data;
            if ready.is_some_and(|s| s.edit.load(Ordering::SeqCst)) {
                return Ok(true);
            }
        }
    }
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
            pass_plain_queries: false,
            pass_plain_batches: false,
            requests_passed: 0,
            batch_executes: 0,
            scratch: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        self.append(data);
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
            let scan = self.scan(stop, None, true).map_err(errors::wire)?;
            let passed = PyBytes::new(py, &self.buf[scan.start..scan.end]);
            Ok(match scan.stop {
                Some((tag, body)) => (passed, tag as i32, PyBytes::new(py, &self.buf[body])),
                None => (passed, -1, PyBytes::new(py, b"")),
            })
        })
    }

    /// Relays from the blocking socket `fd_in` to `fd_out` with the GIL released: the buffered
    /// and arriving messages go through as [`FrameScanner::next`] would pass them, written once
    /// per read. With `ready` (the upstream direction), ReadyForQuery messages are passed and
    /// reported to it, and the pump stops as soon as it says Python edits the stream. Returns
    /// True when a message in `stop` is next (left for `next`) or `ready` asks for Python,
    /// False at the end of `fd_in`. Raises OSError from either socket.
    #[pyo3(signature = (fd_in, fd_out, stop, ready = None))]
    fn pump(
        &mut self,
        py: Python<'_>,
        fd_in: i32,
        fd_out: i32,
        stop: &[u8],
        ready: Option<&Bound<'_, RelayState>>,
    ) -> PyResult<bool> {
        let ready = ready.map(|r| r.get());
        if ready.is_some_and(|s| s.edit.load(Ordering::SeqCst)) {
            return Ok(true);
        }
        errors::guard(|| {
            py.detach(|| self.pump_loop(fd_in, fd_out, stop, ready))
                .map_err(|e| match e {
                    PumpError::Io(e) => e.into(),
                    PumpError::Wire(e) => errors::wire(e),
                })
        })
    }
}

/// The upstream side of one proxy session, shared by the relay's two directions: ReadyForQuery
/// messages seen (each ends the answer to one Query or Sync), the last transaction status, how
/// many of them said idle, and whether Python edits the upstream stream (answers pending that
/// the pump must not pass).
#[pyclass(module = "electric_trio._native", frozen)]
pub struct RelayState {
    ready_seen: AtomicU64,
    status: AtomicU8,
    idle_seen: AtomicU64,
    edit: AtomicBool,
}

impl RelayState {
    fn ready(&self, status: u8) {
        self.status.store(status, Ordering::SeqCst);
        if status == b'I' {
            self.idle_seen.fetch_add(1, Ordering::SeqCst);
        }
        self.ready_seen.fetch_add(1, Ordering::SeqCst);
    }
}

#[pymethods]
impl RelayState {
    #[new]
    #[pyo3(signature = (status = b'I'))]
    fn py_new(status: u8) -> Self {
        RelayState {
            ready_seen: AtomicU64::new(0),
            status: AtomicU8::new(status),
            idle_seen: AtomicU64::new(0),
            edit: AtomicBool::new(false),
        }
    }

    /// Records one ReadyForQuery with its transaction status byte.
    #[pyo3(name = "ready")]
    fn py_ready(&self, status: u8) {
        self.ready(status);
    }

    #[getter]
    fn ready_seen(&self) -> u64 {
        self.ready_seen.load(Ordering::SeqCst)
    }

    /// The transaction status of the last ReadyForQuery (`I`, `T` or `E`).
    #[getter]
    fn status(&self) -> String {
        (self.status.load(Ordering::SeqCst) as char).to_string()
    }

    #[getter]
    fn idle_seen(&self) -> u64 {
        self.idle_seen.load(Ordering::SeqCst)
    }

    #[getter]
    fn edit(&self) -> bool {
        self.edit.load(Ordering::SeqCst)
    }

    #[setter]
    fn set_edit(&self, value: bool) {
        self.edit.store(value, Ordering::SeqCst);
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
    m.add_class::<RelayState>()?;
    m.add_function(wrap_pyfunction!(parse_startup, m)?)?;
    m.add_function(wrap_pyfunction!(parse_frontend, m)?)?;
    m.add_function(wrap_pyfunction!(encode_authentication, m)?)?;
    m.add_function(wrap_pyfunction!(encode_error_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_ready_for_query, m)?)?;
    m.add_function(wrap_pyfunction!(encode_command_complete, m)?)?;
    m.add_function(wrap_pyfunction!(encode_pg_message, m)?)?;
    Ok(())
}
