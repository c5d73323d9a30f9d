//! Satellite frame bindings: frames and RPC messages to and from plain dicts keyed by the
//! .proto field names (bytes fields as bytes, enums as ints, unset optional fields as None), the
//! form `msgspec.convert` takes.

use electric_core::satellite::dynamic::{
    decode_dynamic, decode_frame_dynamic, encode_dynamic, encode_frame_dynamic, message_descriptor,
    prost_reflect,
};
use electric_core::satellite::{FrameError, MessageType, DEFAULT_MAX_FRAME_LEN};
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString};

use crate::errors;

/// Frames from this size on are decoded with the GIL released.
const DETACH_FROM: usize = 1 << 16;

fn value_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::I32(i) | Value::EnumNumber(i) => i.into_pyobject(py)?.into_any(),
        Value::I64(i) => i.into_pyobject(py)?.into_any(),
        Value::U32(u) => u.into_pyobject(py)?.into_any(),
        Value::U64(u) => u.into_pyobject(py)?.into_any(),
        Value::F32(f) => f.into_pyobject(py)?.into_any(),
        Value::F64(f) => f.into_pyobject(py)?.into_any(),
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::Message(m) => message_to_py(py, m)?.into_any(),
        Value::List(items) => PyList::new(
            py,
            items
                .iter()
                .map(|v| value_to_py(py, v))
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any(),
        Value::Map(_) => return Err(PyTypeError::new_err("map fields are not in the protocol")),
    })
}

/// Every field of the message: unset fields with presence (optional, message and oneof
/// fields) as None, the others with their value or default.
fn message_to_py<'py>(py: Python<'py>, msg: &DynamicMessage) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for field in msg.descriptor().fields() {
        let key = PyString::intern(py, field.name());
        if field.supports_presence() && !msg.has_field(&field) {
            dict.set_item(key, py.None())?;
        } else {
            dict.set_item(key, value_to_py(py, &msg.get_field(&field))?)?;
        }
    }
    Ok(dict)
}

/// Prefixes an error converting a field with the field's path; out-of-range ints become
/// ValueError.
fn field_error(py: Python<'_>, field: &FieldDescriptor, e: PyErr) -> PyErr {
    let path = field.full_name().trim_start_matches("Electric.Satellite.");
    let message = format!("{path}: {}", e.value(py));
    if e.is_instance_of::<PyValueError>(py) || e.is_instance_of::<PyOverflowError>(py) {
        PyValueError::new_err(message)
    } else {
        PyTypeError::new_err(message)
    }
}

fn scalar_from_py(kind: &Kind, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    Ok(match kind {
        Kind::Bool => Value::Bool(obj.extract()?),
        Kind::Int32 => Value::I32(obj.extract()?),
        Kind::Uint32 => Value::U32(obj.extract()?),
        Kind::Uint64 => Value::U64(obj.extract()?),
        Kind::Enum(_) => Value::EnumNumber(obj.extract()?),
        Kind::String => Value::String(obj.extract()?),
        Kind::Bytes => {
            let bytes = if let Ok(b) = obj.cast::<PyBytes>() {
                b.as_bytes().to_vec()
            } else if let Ok(b) = obj.cast::<PyByteArray>() {
                b.to_vec()
            } else {
                return Err(PyTypeError::new_err(format!(
                    "expected bytes, got {}",
                    obj.get_type().name()?
                )));
            };
            Value::Bytes(bytes.into())
        }
        Kind::Message(desc) => Value::Message(message_from_py(desc.clone(), obj)?),
        other => {
            return Err(PyTypeError::new_err(format!(
                "{other:?} fields are not in the protocol"
            )))
        }
    })
}

fn message_from_py(desc: MessageDescriptor, obj: &Bound<'_, PyAny>) -> PyResult<DynamicMessage> {
    let dict = obj
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err(format!("a {} must be a dict", desc.name())))?;
    let py = obj.py();
    let mut msg = DynamicMessage::new(desc.clone());
    for (key, item) in dict.iter() {
        let name: &str = &key.extract::<pyo3::pybacked::PyBackedStr>()?;
        let field = desc.get_field_by_name(name).ok_or_else(|| {
            PyValueError::new_err(format!("{} has no field {name:?}", desc.name()))
        })?;
        if item.is_none() {
            continue;
        }
        let value = if field.is_list() {
            if item.is_instance_of::<PyString>() || item.is_instance_of::<PyBytes>() {
                return Err(field_error(
                    py,
                    &field,
                    PyTypeError::new_err("expected a list"),
                ));
            }
            let items = item
                .try_iter()
                .map_err(|e| field_error(py, &field, e))?
                .map(|v| scalar_from_py(&field.kind(), &v?))
                .collect::<PyResult<Vec<_>>>()
                .map_err(|e| field_error(py, &field, e))?;
            Value::List(items)
        } else {
            scalar_from_py(&field.kind(), &item).map_err(|e| field_error(py, &field, e))?
        };
        msg.set_field(&field, value);
    }
    Ok(msg)
}

fn descriptor(name: &str) -> PyResult<MessageDescriptor> {
    message_descriptor(name).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn frame_type(type_id: u8) -> PyResult<MessageType> {
    MessageType::from_id(type_id)
        .ok_or_else(|| PyValueError::new_err(FrameError::UnknownType(type_id).to_string()))
}

/// Decodes a frame into `(type_id, message)`; `SatelliteFrameError` for an empty frame, an
/// unknown type byte, a frame over `max_len` bytes or a malformed message.
#[pyfunction]
#[pyo3(signature = (data, max_len = DEFAULT_MAX_FRAME_LEN))]
fn decode_frame<'py>(
    py: Python<'py>,
    data: PyBackedBytes,
    max_len: usize,
) -> PyResult<(u8, Bound<'py, PyDict>)> {
    errors::guard(|| {
        let decoded = if data.len() >= DETACH_FROM {
            py.detach(|| decode_frame_dynamic(&data, max_len))
        } else {
            decode_frame_dynamic(&data, max_len)
        };
        let (ty, msg) = decoded.map_err(errors::satellite)?;
        Ok((ty.id(), message_to_py(py, &msg)?))
    })
}

/// Encodes a frame of the message type `type_id` from a dict (missing keys and None values
/// take the field's default); TypeError / ValueError name the offending field.
#[pyfunction]
fn encode_frame<'py>(
    py: Python<'py>,
    type_id: u8,
    message: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let ty = frame_type(type_id)?;
    let msg = message_from_py(descriptor(ty.name())?, message)?;
    let frame = encode_frame_dynamic(ty, &msg).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &frame))
}

/// Decodes a message by name (`"SatAuthReq"`, `"SatOpMigrate.Table"`), e.g. the request inside
/// a `SatRpcRequest`.
#[pyfunction]
fn decode_message<'py>(py: Python<'py>, name: &str, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    errors::guard(|| {
        let msg = decode_dynamic(descriptor(name)?, data).map_err(errors::satellite)?;
        message_to_py(py, &msg)
    })
}

/// Encodes a message by name from a dict.
#[pyfunction]
fn encode_message<'py>(
    py: Python<'py>,
    name: &str,
    message: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let msg = message_from_py(descriptor(name)?, message)?;
    Ok(PyBytes::new(py, &encode_dynamic(&msg)))
}

/// The frame type id of each top-level message, by message name.
#[pyfunction]
fn frame_type_ids(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    for ty in MessageType::ALL {
        dict.set_item(ty.name(), ty.id())?;
    }
    Ok(dict)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SATELLITE_MAX_FRAME_LEN", DEFAULT_MAX_FRAME_LEN)?;
    m.add_function(wrap_pyfunction!(decode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(encode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(decode_message, m)?)?;
    m.add_function(wrap_pyfunction!(encode_message, m)?)?;
    m.add_function(wrap_pyfunction!(frame_type_ids, m)?)?;
    Ok(())
}
