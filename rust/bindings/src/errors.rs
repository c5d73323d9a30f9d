//! The one place where core errors become Python exceptions.

use electric_core::{DecodeError, WireError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    ElectricError,
    PyException,
    "Root of every electric-trio error."
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

pub fn wire(e: WireError) -> PyErr {
    ProtocolError::new_err(e.to_string())
}

pub fn decode(e: DecodeError) -> PyErr {
    ValueDecodeError::new_err(e.to_string())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for (name, ty) in [
        ("ElectricError", py.get_type::<ElectricError>()),
        ("ProtocolError", py.get_type::<ProtocolError>()),
        ("ValueDecodeError", py.get_type::<ValueDecodeError>()),
    ] {
        ty.setattr("__module__", "electric_trio.errors")?;
        m.add(name, ty)?;
    }
    Ok(())
}
