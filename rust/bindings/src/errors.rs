//! The one place where core errors become Python exceptions, and where a panic of the native
//! code is caught before it reaches Python ([`guard`]).

use electric_core::electric::FoldError;
use electric_core::pgoutput::StreamError;
use electric_core::satellite::FrameError;
use electric_core::shapes::{EvalError, FilterError};
use electric_core::{DecodeError, WireError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyList;

create_exception!(
    _native,
    ElectricError,
    PyException,
    "Root of every electric-trio error."
);
create_exception!(
    _native,
    InternalError,
    ElectricError,
    "A bug of ours in the native code (a Rust panic): the operation failed, nothing else did."
);
create_exception!(
    _native,
    ProtocolError,
    ElectricError,
    "Bytes from a peer that break the protocol."
);
create_exception!(
    _native,
    ValueDecodeError,
    ElectricError,
    "A value that does not parse as its declared type."
);
create_exception!(
    _native,
    PgOutputError,
    ProtocolError,
    "A malformed or out-of-place pgoutput message; `lsn` is the LSN of the XLogData that \
     carried it (None if the payload was not XLogData), `transactions` those completed before it."
);

create_exception!(
    _native,
    SatelliteFrameError,
    ProtocolError,
    "A Satellite frame that cannot be decoded: empty, an unknown type byte, over the size \
     limit, or a malformed message."
);

/// Runs `f` (the body of a binding that handles bytes or text from outside) and turns a panic
/// into [`InternalError`]. Without it PyO3 raises `PanicException`, a `BaseException` that the
/// service's per-connection `except Exception` does not stop: one bad frame would end the
/// process instead of one connection.
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(InternalError::new_err(format!(
            "internal error in electric-trio's native code: {what}"
        )))
    })
}

/// Panics inside [`guard`], so that tests can check what Python sees of a panic.
#[pyfunction]
fn _panic_in_guard(message: &str) -> PyResult<()> {
    guard(|| panic!("{message}"))
}

pub fn satellite(e: FrameError) -> PyErr {
    SatelliteFrameError::new_err(e.to_string())
}

create_exception!(
    _native,
    ShapeFilterError,
    ElectricError,
    "A where clause that does not parse or type-check; `position` is where (in characters \
     from 0) and `reason` what, and the message is `At location <position>: <reason>`."
);
create_exception!(
    _native,
    ShapeEvaluationError,
    ElectricError,
    "A row a where clause cannot be evaluated on (overflow, division by zero, a bad cast...), \
     where Postgres raises an error too."
);

pub fn shape_filter(e: FilterError) -> PyErr {
    Python::attach(|py| {
        let err = ShapeFilterError::new_err(e.to_string());
        let value = err.value(py);
        match value
            .setattr("position", e.position)
            .and_then(|()| value.setattr("reason", &e.message))
        {
            Ok(()) => err,
            Err(set) => set,
        }
    })
}

pub fn shape_evaluation(e: EvalError) -> PyErr {
    ShapeEvaluationError::new_err(e.to_string())
}

pub fn wire(e: WireError) -> PyErr {
    ProtocolError::new_err(e.to_string())
}

pub fn decode(e: DecodeError) -> PyErr {
    ValueDecodeError::new_err(e.to_string())
}

pub fn pgoutput(py: Python<'_>, e: &StreamError, transactions: Bound<'_, PyList>) -> PyErr {
    let err = PgOutputError::new_err(e.to_string());
    let value = err.value(py);
    if let Err(set) = value
        .setattr("lsn", e.lsn)
        .and_then(|()| value.setattr("transactions", transactions))
    {
        return set;
    }
    err
}

/// A transaction whose Electric bookkeeping does not parse: a `PgOutputError` at its commit LSN.
pub fn fold(py: Python<'_>, e: &FoldError, transactions: Bound<'_, PyList>) -> PyErr {
    let err = PgOutputError::new_err(e.to_string());
    let value = err.value(py);
    if let Err(set) = value
        .setattr("lsn", e.commit_lsn)
        .and_then(|()| value.setattr("transactions", transactions))
    {
        return set;
    }
    err
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for (name, ty) in [
        ("ElectricError", py.get_type::<ElectricError>()),
        ("InternalError", py.get_type::<InternalError>()),
        ("ProtocolError", py.get_type::<ProtocolError>()),
        ("ValueDecodeError", py.get_type::<ValueDecodeError>()),
        ("PgOutputError", py.get_type::<PgOutputError>()),
        ("ShapeFilterError", py.get_type::<ShapeFilterError>()),
        (
            "ShapeEvaluationError",
            py.get_type::<ShapeEvaluationError>(),
        ),
    ] {
        ty.setattr("__module__", "electric_trio.errors")?;
        m.add(name, ty)?;
    }
    // Re-exported by the package that speaks the protocol.
    let frame_error = py.get_type::<SatelliteFrameError>();
    frame_error.setattr("__module__", "electric_trio.satellite")?;
    m.add("SatelliteFrameError", frame_error)?;
    m.add_function(wrap_pyfunction!(_panic_in_guard, m)?)?;
    Ok(())
}
