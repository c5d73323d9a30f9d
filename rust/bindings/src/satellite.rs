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
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};

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

// ---- Straight to the msgspec Structs ---------------------------------------------------------
//
// The dict form above costs a DynamicMessage, a dict per message and `msgspec.convert`; the
// codec below reads the protobuf wire format directly into the Python classes of
// `satellite/messages.py`, driven by plans built once from the compiled .proto.

extern "C" {
    // In the stable ABI from 3.12 only, but exported by CPython since 3.9 (abi3-py311 here):
    // the msgspec Structs take keyword arguments by vectorcall without a dict.
    fn PyObject_Vectorcall(
        callable: *mut pyo3::ffi::PyObject,
        args: *const *mut pyo3::ffi::PyObject,
        nargsf: usize,
        kwnames: *mut pyo3::ffi::PyObject,
    ) -> *mut pyo3::ffi::PyObject;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Bool,
    Int32,
    Uint32,
    Uint64,
    Enum,
    String,
    Bytes,
    Message,
}

struct FieldPlan {
    number: u32,
    scalar: Scalar,
    list: bool,
    /// Unset: None (optional, message and oneof fields); otherwise the default below.
    presence: bool,
    oneof: Option<usize>,
    /// The Python attribute name, interned.
    attr: Py<PyString>,
    default: Py<PyAny>,
    /// The enum class of an enum field.
    enum_cls: Option<Py<PyAny>>,
    /// The plan of a message field.
    message: usize,
}

struct MessagePlan {
    name: String,
    cls: Py<PyAny>,
    /// The attribute names of `fields`, the keywords of the class call.
    kwnames: Py<PyTuple>,
    fields: Vec<FieldPlan>,
    /// Field indexes by field number, the order protobuf encoders write them in.
    encode_order: Vec<usize>,
    /// Field index by field number.
    by_number: Vec<Option<usize>>,
}

/// The Satellite codec straight to and from the msgspec Structs of `satellite/messages.py`:
/// `classes` maps every message name of the .proto (`SatOpMigrate.Table`) to its Struct class,
/// `enums` every enum name (`SatErrorResp.ErrorCode`) to its IntEnum class.
#[pyclass(module = "electric_trio._native", frozen)]
pub struct SatelliteCodec {
    plans: Vec<MessagePlan>,
    by_name: std::collections::HashMap<String, usize>,
}

fn short_name(full: &str) -> &str {
    full.trim_start_matches("Electric.Satellite.")
}

impl SatelliteCodec {
    fn plan(&self, name: &str) -> PyResult<usize> {
        self.by_name.get(name).copied().ok_or_else(|| {
            PyValueError::new_err(FrameError::UnknownMessage(name.into()).to_string())
        })
    }

    fn decode_into<'py>(
        &self,
        py: Python<'py>,
        index: usize,
        mut buf: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        let plan = &self.plans[index];
        let malformed = |reason: &str| {
            errors::satellite(FrameError::Malformed {
                message: short_name(&plan.name).to_owned(),
                reason: reason.to_owned(),
            })
        };
        let mut singles: Vec<Option<Bound<'py, PyAny>>> = vec![None; plan.fields.len()];
        let mut lists: Vec<Vec<Bound<'py, PyAny>>> = Vec::new();
        lists.resize_with(plan.fields.len(), Vec::new);
        while !buf.is_empty() {
            let key = read_varint(&mut buf).ok_or_else(|| malformed("truncated key"))?;
            let wire = (key & 7) as u8;
            let number = key >> 3;
            if number == 0 || number > u64::from(u32::MAX >> 3) {
                return Err(malformed("invalid field number"));
            }
            let found = plan.by_number.get(number as usize).copied().flatten();
            let Some(fi) = found else {
                skip_field(wire, &mut buf).ok_or_else(|| malformed("malformed unknown field"))?;
                continue;
            };
            let field = &plan.fields[fi];
            let varint_kind = !matches!(
                field.scalar,
                Scalar::String | Scalar::Bytes | Scalar::Message
            );
            if varint_kind && field.list && wire == 2 {
                let len = read_varint(&mut buf).ok_or_else(|| malformed("truncated length"))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= buf.len())
                    .ok_or_else(|| malformed("buffer underflow"))?;
                let (mut packed, rest) = buf.split_at(len);
                buf = rest;
                while !packed.is_empty() {
                    let v = read_varint(&mut packed)
                        .ok_or_else(|| malformed("truncated packed varint"))?;
                    lists[fi].push(self.varint_value(py, &plan.name, field, v)?);
                }
                continue;
            }
            let value = match (varint_kind, wire) {
                (true, 0) => {
                    let v = read_varint(&mut buf).ok_or_else(|| malformed("truncated varint"))?;
                    self.varint_value(py, &plan.name, field, v)?
                }
                (false, 2) => {
                    let len = read_varint(&mut buf).ok_or_else(|| malformed("truncated length"))?;
                    let len = usize::try_from(len)
                        .ok()
                        .filter(|&l| l <= buf.len())
                        .ok_or_else(|| malformed("buffer underflow"))?;
                    let (data, rest) = buf.split_at(len);
                    buf = rest;
                    match field.scalar {
                        Scalar::String => {
                            let s = std::str::from_utf8(data).map_err(|_| {
                                malformed("invalid string value: data is not UTF-8 encoded")
                            })?;
                            PyString::new(py, s).into_any()
                        }
                        Scalar::Bytes => PyBytes::new(py, data).into_any(),
                        _ => self.decode_into(py, field.message, data)?,
                    }
                }
                _ => return Err(malformed("invalid wire type")),
            };
            if field.list {
                lists[fi].push(value);
            } else {
                if let Some(group) = field.oneof {
                    for (other, f) in plan.fields.iter().enumerate() {
                        if f.oneof == Some(group) {
                            singles[other] = None;
                        }
                    }
                }
                singles[fi] = Some(value);
            }
        }
        let mut args: Vec<Bound<'py, PyAny>> = Vec::with_capacity(plan.fields.len());
        for (fi, field) in plan.fields.iter().enumerate() {
            args.push(if field.list {
                PyTuple::new(py, std::mem::take(&mut lists[fi]))?.into_any()
            } else {
                match singles[fi].take() {
                    Some(v) => v,
                    None => field.default.bind(py).clone(),
                }
            });
        }
        let ptrs: Vec<*mut pyo3::ffi::PyObject> = args.iter().map(|a| a.as_ptr()).collect();
        // SAFETY: `ptrs` borrows `args`, alive during the call; no positional arguments, one
        // keyword argument per field, named in `kwnames` order.
        unsafe {
            let result =
                PyObject_Vectorcall(plan.cls.as_ptr(), ptrs.as_ptr(), 0, plan.kwnames.as_ptr());
            Bound::from_owned_ptr_or_err(py, result)
        }
    }

    fn encode_from(
        &self,
        py: Python<'_>,
        index: usize,
        obj: &Bound<'_, PyAny>,
        out: &mut Vec<u8>,
    ) -> PyResult<()> {
        let plan = &self.plans[index];
        for &fi in &plan.encode_order {
            let field = &plan.fields[fi];
            let fail = |e: PyErr| {
                let message = format!(
                    "{}.{}: {}",
                    short_name(&plan.name),
                    field.attr.bind(py),
                    e.value(py)
                );
                if e.is_instance_of::<PyValueError>(py) || e.is_instance_of::<PyOverflowError>(py) {
                    PyValueError::new_err(message)
                } else {
                    PyTypeError::new_err(message)
                }
            };
            let value = obj.getattr(field.attr.bind(py)).map_err(fail)?;
            if field.list {
                if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
                    return Err(fail(PyTypeError::new_err("expected a list")));
                }
                let items = value.try_iter().map_err(fail)?;
                if field.is_varint() {
                    let key = out.len();
                    write_varint(out, u64::from(field.number << 3 | 2));
                    let start = out.len();
                    for item in items {
                        let item = item.map_err(fail)?;
                        write_varint(out, varint_of(field.scalar, &item).map_err(fail)?);
                    }
                    if out.len() == start {
                        out.truncate(key);
                    } else {
                        insert_len(out, start);
                    }
                } else {
                    for item in items {
                        let item = item.map_err(fail)?;
                        self.encode_value(py, field, &item, out).map_err(fail)?;
                    }
                }
            } else if value.is_none() {
                if !field.presence {
                    return Err(fail(PyTypeError::new_err(
                        "None for a field without presence",
                    )));
                }
            } else if field.is_varint() {
                let v = varint_of(field.scalar, &value).map_err(fail)?;
                if v != 0 || field.presence {
                    write_varint(out, u64::from(field.number << 3));
                    write_varint(out, v);
                }
            } else if field.presence
                || field.scalar == Scalar::Message
                || value.len().map_err(fail)? > 0
            {
                self.encode_value(py, field, &value, out).map_err(fail)?;
            }
        }
        Ok(())
    }

    /// A length-delimited field: its key, length and data.
    fn encode_value(
        &self,
        py: Python<'_>,
        field: &FieldPlan,
        value: &Bound<'_, PyAny>,
        out: &mut Vec<u8>,
    ) -> PyResult<()> {
        write_varint(out, u64::from(field.number << 3 | 2));
        match field.scalar {
            Scalar::String => {
                let s = value.cast::<PyString>()?.to_str()?;
                write_varint(out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            Scalar::Bytes => {
                if let Ok(b) = value.cast::<PyBytes>() {
                    let b = b.as_bytes();
                    write_varint(out, b.len() as u64);
                    out.extend_from_slice(b);
                } else if let Ok(b) = value.cast::<PyByteArray>() {
                    let b = b.to_vec();
                    write_varint(out, b.len() as u64);
                    out.extend_from_slice(&b);
                } else {
                    return Err(PyTypeError::new_err(format!(
                        "expected bytes, got {}",
                        value.get_type().name()?
                    )));
                }
            }
            _ => {
                // Encoded in place, its length put in front afterwards (no buffer per message).
                let start = out.len();
                self.encode_from(py, field.message, value, out)?;
                insert_len(out, start);
            }
        }
        Ok(())
    }

    fn varint_value<'py>(
        &self,
        py: Python<'py>,
        owner: &str,
        field: &FieldPlan,
        v: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match field.scalar {
            Scalar::Bool => PyBool::new(py, v != 0).to_owned().into_any(),
            Scalar::Int32 => (v as i32).into_pyobject(py)?.into_any(),
            Scalar::Uint32 => (v as u32).into_pyobject(py)?.into_any(),
            Scalar::Enum => {
                let n = v as i32;
                let cls = field.enum_cls.as_ref().expect("enum field has its class");
                cls.bind(py).call1((n,)).map_err(|_| {
                    errors::satellite(FrameError::Malformed {
                        message: short_name(owner).to_owned(),
                        reason: format!("unknown value {n} of enum field {}", field.attr.bind(py)),
                    })
                })?
            }
            _ => v.into_pyobject(py)?.into_any(),
        })
    }
}

impl FieldPlan {
    fn is_varint(&self) -> bool {
        !matches!(
            self.scalar,
            Scalar::String | Scalar::Bytes | Scalar::Message
        )
    }
}

/// The varint of an int, bool or enum value (negative int32 as 10 bytes, as protobuf does).
fn varint_of(scalar: Scalar, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(match scalar {
        Scalar::Bool => u64::from(value.extract::<bool>()?),
        Scalar::Uint32 => u64::from(value.extract::<u32>()?),
        Scalar::Uint64 => value.extract::<u64>()?,
        _ => value.extract::<i32>()? as i64 as u64,
    })
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

fn skip_field(wire: u8, buf: &mut &[u8]) -> Option<()> {
    let n = match wire {
        0 => {
            read_varint(buf)?;
            0
        }
        1 => 8,
        2 => usize::try_from(read_varint(buf)?).ok()?,
        5 => 4,
        _ => return None,
    };
    if n > buf.len() {
        return None;
    }
    *buf = &buf[n..];
    Some(())
}

/// Puts the varint length of `out[start..]` at `start`.
fn insert_len(out: &mut Vec<u8>, start: usize) {
    let n = out.len() - start;
    if n < 0x80 {
        out.insert(start, n as u8);
    } else {
        let mut len = Vec::with_capacity(10);
        write_varint(&mut len, n as u64);
        out.splice(start..start, len);
    }
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[pymethods]
impl SatelliteCodec {
    #[new]
    fn new(classes: &Bound<'_, PyDict>, enums: &Bound<'_, PyDict>) -> PyResult<Self> {
        let py = classes.py();
        let pool = electric_core::satellite::dynamic::descriptor_pool();
        let descriptors: Vec<MessageDescriptor> = pool.all_messages().collect();
        let by_name: std::collections::HashMap<String, usize> = descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| (short_name(d.full_name()).to_owned(), i))
            .collect();
        let mut plans = Vec::with_capacity(descriptors.len());
        for desc in &descriptors {
            let name = short_name(desc.full_name()).to_owned();
            let cls = classes
                .get_item(&name)?
                .ok_or_else(|| PyValueError::new_err(format!("no class for {name}")))?;
            // Attribute names by encoded name (`primaryKey` is `primary_key`).
            let attrs: Vec<String> = cls.getattr("__struct_fields__")?.extract()?;
            let encoded: Vec<String> = cls.getattr("__struct_encode_fields__")?.extract()?;
            let mut fields = Vec::new();
            let mut by_number = Vec::new();
            for f in desc.fields() {
                let pos = encoded.iter().position(|e| e == f.name()).ok_or_else(|| {
                    PyValueError::new_err(format!("{name} has no field {}", f.name()))
                })?;
                let list = f.is_list();
                let presence = f.supports_presence();
                let mut enum_cls = None;
                let mut message = 0;
                let scalar = match f.kind() {
                    Kind::Bool => Scalar::Bool,
                    Kind::Int32 => Scalar::Int32,
                    Kind::Uint32 => Scalar::Uint32,
                    Kind::Uint64 => Scalar::Uint64,
                    Kind::String => Scalar::String,
                    Kind::Bytes => Scalar::Bytes,
                    Kind::Enum(e) => {
                        let en = short_name(e.full_name()).to_owned();
                        enum_cls = Some(
                            enums
                                .get_item(&en)?
                                .ok_or_else(|| PyValueError::new_err(format!("no enum {en}")))?
                                .unbind(),
                        );
                        Scalar::Enum
                    }
                    Kind::Message(m) => {
                        message = by_name[short_name(m.full_name())];
                        Scalar::Message
                    }
                    other => {
                        return Err(PyTypeError::new_err(format!(
                            "{other:?} fields are not in the protocol"
                        )))
                    }
                };
                let default: Bound<'_, PyAny> = if list {
                    PyTuple::empty(py).into_any()
                } else if presence {
                    py.None().into_bound(py)
                } else {
                    match scalar {
                        Scalar::Bool => PyBool::new(py, false).to_owned().into_any(),
                        Scalar::String => PyString::new(py, "").into_any(),
                        Scalar::Bytes => PyBytes::new(py, b"").into_any(),
                        Scalar::Enum => enum_cls.as_ref().expect("enum").bind(py).call1((0,))?,
                        _ => 0u8.into_pyobject(py)?.into_any(),
                    }
                };
                let number = f.number();
                if by_number.len() <= number as usize {
                    by_number.resize(number as usize + 1, None);
                }
                by_number[number as usize] = Some(fields.len());
                fields.push(FieldPlan {
                    number,
                    scalar,
                    list,
                    presence,
                    oneof: f
                        .containing_oneof()
                        .and_then(|o| desc.oneofs().position(|x| x.name() == o.name())),
                    attr: PyString::intern(py, &attrs[pos]).unbind(),
                    default: default.unbind(),
                    enum_cls,
                    message,
                });
            }
            let kwnames = PyTuple::new(py, fields.iter().map(|f| f.attr.bind(py)))?.unbind();
            let mut encode_order: Vec<usize> = (0..fields.len()).collect();
            encode_order.sort_by_key(|&i| fields[i].number);
            plans.push(MessagePlan {
                name,
                encode_order,
                kwnames,
                cls: cls.unbind(),
                fields,
                by_number,
            });
        }
        Ok(SatelliteCodec { plans, by_name })
    }

    /// Decodes a frame into `(type_id, message)`; `SatelliteFrameError` for an empty frame, an
    /// unknown type byte, a frame over `max_len` bytes or a malformed message.
    fn decode_frame<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        max_len: usize,
    ) -> PyResult<(u8, Bound<'py, PyAny>)> {
        errors::guard(|| {
            let (ty, body) =
                electric_core::satellite::split(data, max_len).map_err(errors::satellite)?;
            Ok((ty.id(), self.decode_into(py, self.plan(ty.name())?, body)?))
        })
    }

    /// The frame of a message: its type id, then its protobuf encoding.
    fn encode_frame<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let name: String = message
            .getattr(pyo3::intern!(py, "PROTO_NAME"))?
            .extract()?;
        let ty = MessageType::from_name(&name)
            .ok_or_else(|| PyValueError::new_err(format!("{name} is not a frame message")))?;
        let mut out = vec![ty.id()];
        self.encode_from(py, self.plan(&name)?, message, &mut out)?;
        Ok(PyBytes::new(py, &out))
    }

    /// The protobuf encoding of a message, without a type id.
    fn encode_message<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let name: String = message
            .getattr(pyo3::intern!(py, "PROTO_NAME"))?
            .extract()?;
        let mut out = Vec::new();
        self.encode_from(py, self.plan(&name)?, message, &mut out)?;
        Ok(PyBytes::new(py, &out))
    }

    /// Decodes a message by name (`"SatAuthReq"`, `"SatOpMigrate.Table"`).
    fn decode_message<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        data: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        errors::guard(|| self.decode_into(py, self.plan(name)?, data))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SATELLITE_MAX_FRAME_LEN", DEFAULT_MAX_FRAME_LEN)?;
    m.add_function(wrap_pyfunction!(decode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(encode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(decode_message, m)?)?;
    m.add_function(wrap_pyfunction!(encode_message, m)?)?;
    m.add_function(wrap_pyfunction!(frame_type_ids, m)?)?;
    m.add_class::<SatelliteCodec>()?;
    Ok(())
}
