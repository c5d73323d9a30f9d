//! Satellite frame bindings. The service's codec is [`SatelliteCodec`], straight to and from the
//! msgspec Structs. Beside it, the dict-form decoder (prost-reflect's, to dicts keyed by the
//! .proto field names, bytes as bytes, enums as ints, unset optional fields as None, the form
//! `msgspec.convert` takes): a decoder written independently of the codec, kept as the oracle
//! the codec's tests compare it with.

use electric_core::satellite::dynamic::{
    decode_dynamic, decode_frame_dynamic, message_descriptor, prost_reflect,
};
use electric_core::satellite::{FrameError, MessageType, DEFAULT_MAX_FRAME_LEN};
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple, PyType};
use pyo3::Borrowed;
use std::cell::RefCell;
use std::collections::HashMap;

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

fn descriptor(name: &str) -> PyResult<MessageDescriptor> {
    message_descriptor(name).map_err(|e| PyValueError::new_err(e.to_string()))
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

/// Decodes a message by name (`"SatAuthReq"`, `"SatOpMigrate.Table"`), e.g. the request inside
/// a `SatRpcRequest`.
#[pyfunction]
fn decode_message<'py>(py: Python<'py>, name: &str, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    errors::guard(|| {
        let msg = decode_dynamic(descriptor(name)?, data).map_err(errors::satellite)?;
        message_to_py(py, &msg)
    })
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
// `satellite/messages.py`, driven by plans built once from the compiled .proto. A Struct is
// built as msgspec's own decoder builds one: allocated, then its field slots filled (no
// keyword matching); encoding reads the slots of an instance of the planned class directly
// (any other object through getattr).

/// The most fields a message of the protocol has (SatTransOp: 10).
const MAX_FIELDS: usize = 16;
/// How deep messages may nest (prost's limit too): deeper is malformed, not a stack overflow.
const MAX_DEPTH: u32 = 100;
/// The largest output buffer kept for the next encoding.
const MAX_KEPT_BUFFER: usize = 1 << 20;

thread_local! {
    /// The output buffer of the last encoding, reused (no allocation and no growth per call).
    static BUFFER: RefCell<Backward> = const { RefCell::new(Backward::new()) };
}

/// An output buffer written from its end towards its start, as upb encodes: a message's fields
/// are written last to first, each after its value, so a nested message's length is known when
/// it is written in front of it (written forwards, its bytes would be moved along for a length
/// of more than one byte, or encoded twice to learn it).
struct Backward {
    /// The bytes written are `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
}

impl Backward {
    const fn new() -> Self {
        Backward {
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// How many bytes are written.
    #[inline]
    fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn clear(&mut self) {
        self.pos = self.buf.len();
    }

    fn written(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Room for `n` more bytes in front.
    #[inline(always)]
    fn reserve(&mut self, n: usize) {
        if self.pos < n {
            self.grow(n);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        let used = self.len();
        let size = (self.buf.len() * 2).max(used + n).max(1024);
        let mut buf = vec![0; size];
        buf[size - used..].copy_from_slice(&self.buf[self.pos..]);
        self.buf = buf;
        self.pos = size - used;
    }

    /// The next `n` bytes in front, to fill.
    #[inline(always)]
    fn front(&mut self, n: usize) -> &mut [u8] {
        self.reserve(n);
        self.pos -= n;
        // SAFETY: `pos + n` is at most the buffer's length (`reserve`).
        unsafe { self.buf.get_unchecked_mut(self.pos..self.pos + n) }
    }

    #[inline(always)]
    fn put_byte(&mut self, b: u8) {
        self.front(1)[0] = b;
    }

    #[inline(always)]
    fn put_slice(&mut self, data: &[u8]) {
        copy_short(self.front(data.len()), data);
    }

    #[inline(always)]
    fn put_varint(&mut self, v: u64) {
        if v < 0x80 {
            self.put_byte(v as u8);
        } else if v < 0x4000 {
            let bytes = self.front(2);
            bytes[0] = (v as u8) | 0x80;
            bytes[1] = (v >> 7) as u8;
        } else {
            self.put_long_varint(v);
        }
    }

    #[inline(never)]
    fn put_long_varint(&mut self, mut v: u64) {
        let bytes = self.front(varint_len(v));
        for b in bytes.iter_mut() {
            *b = (v as u8) | 0x80;
            v >>= 7;
        }
        if let Some(last) = bytes.last_mut() {
            *last &= 0x7f;
        }
    }

    /// A length-delimited field: its key, length and `data` (one reservation for a short one).
    #[inline(always)]
    fn put_field(&mut self, number: u32, data: &[u8]) {
        let n = data.len();
        if n < 0x80 && number < 16 {
            let field = self.front(n + 2);
            field[0] = (number << 3 | 2) as u8;
            field[1] = n as u8;
            copy_short(&mut field[2..], data);
        } else {
            self.put_slice(data);
            self.put_head(number, n);
        }
    }

    /// A length-delimited field's key and length, in front of its `len` bytes.
    #[inline(always)]
    fn put_head(&mut self, number: u32, len: usize) {
        if len < 0x80 && number < 16 {
            let head = self.front(2);
            head[0] = (number << 3 | 2) as u8;
            head[1] = len as u8;
        } else {
            self.put_varint(len as u64);
            self.put_varint(u64::from(number << 3 | 2));
        }
    }
}

/// `dst.copy_from_slice(src)`, without a call to `memcpy` for up to 32 bytes (most values of
/// a row): two copies of a word (or of two, or of half a word) that overlap in the middle.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    assert_eq!(dst.len(), n);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: each copy is of `k` bytes at 0 and at `n - k`, with `k <= n`, within both.
    unsafe {
        match n {
            0 => {}
            1..=3 => {
                *d = *s;
                *d.add(n / 2) = *s.add(n / 2);
                *d.add(n - 1) = *s.add(n - 1);
            }
            4..=7 => {
                let (a, b) = (s.cast::<u32>().read_unaligned(), s.add(n - 4).cast::<u32>());
                let b = b.read_unaligned();
                d.cast::<u32>().write_unaligned(a);
                d.add(n - 4).cast::<u32>().write_unaligned(b);
            }
            8..=16 => {
                let (a, b) = (s.cast::<u64>().read_unaligned(), s.add(n - 8).cast::<u64>());
                let b = b.read_unaligned();
                d.cast::<u64>().write_unaligned(a);
                d.add(n - 8).cast::<u64>().write_unaligned(b);
            }
            17..=32 => {
                let (a, b) = (
                    s.cast::<u128>().read_unaligned(),
                    s.add(n - 16).cast::<u128>(),
                );
                let b = b.read_unaligned();
                d.cast::<u128>().write_unaligned(a);
                d.add(n - 16).cast::<u128>().write_unaligned(b);
            }
            _ => std::ptr::copy_nonoverlapping(s, d, n),
        }
    }
}

/// The bytes of the varint of `v`.
#[inline]
fn varint_len(v: u64) -> usize {
    // 1 + floor(bits / 7), with 0 taking one byte.
    ((64 - (v | 1).leading_zeros() as usize) * 9 + 64) / 64
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
    /// The other members of its oneof, unset when it is set.
    oneof_others: Vec<usize>,
    /// The same, by bit.
    oneof_mask: u32,
    /// The Python attribute name, interned.
    attr: Py<PyString>,
    /// Where an instance keeps the field: a byte offset from the start of the object.
    offset: usize,
    default: Py<PyAny>,
    /// The members of an enum field's IntEnum, by number.
    enum_members: Vec<Option<Py<PyAny>>>,
    /// The plan of a message field.
    message: usize,
}

impl FieldPlan {
    fn is_varint(&self) -> bool {
        !matches!(
            self.scalar,
            Scalar::String | Scalar::Bytes | Scalar::Message
        )
    }
}

struct MessagePlan {
    name: String,
    cls: Py<PyType>,
    /// The class's `tp_alloc`: a zeroed instance whose slots the decoder fills.
    alloc: pyo3::ffi::allocfunc,
    /// The frame type id of a top-level message.
    type_id: Option<u8>,
    /// In field number order, the order protobuf encoders write them in.
    fields: Vec<FieldPlan>,
    /// Field index by field number.
    by_number: Vec<Option<usize>>,
    /// The repeated fields' indexes.
    lists: Vec<usize>,
    /// The fields as the encoder visits them: last to first, each in a few bytes.
    encoders: Vec<EncodeField>,
}

/// Where a singular message field was decoded from: a field that comes again is merged into
/// it (decoded again from the two encodings, one after the other).
#[derive(Clone, Copy)]
enum Source<'b> {
    Input(&'b [u8]),
    /// The concatenation kept at this index.
    Merged(usize),
}

/// What the encoder needs of a field (its [`FieldPlan`] is `field` of the plan).
#[derive(Clone, Copy)]
struct EncodeField {
    offset: u32,
    number: u32,
    message: u32,
    field: u16,
    scalar: Scalar,
    list: bool,
    presence: bool,
}

/// The Satellite codec straight to and from the msgspec Structs of `satellite/messages.py`:
/// `classes` maps every message name of the .proto (`SatOpMigrate.Table`) to its Struct class,
/// `enums` every enum name (`SatErrorResp.ErrorCode`) to its IntEnum class.
#[pyclass(module = "electric_trio._native", frozen)]
pub struct SatelliteCodec {
    plans: Vec<MessagePlan>,
    by_name: HashMap<String, usize>,
    /// Plan index by class (its address).
    by_class: Vec<(usize, usize)>,
    /// Plan index by frame type id.
    by_type_id: Vec<Option<usize>>,
    /// Tuples' items and bytes' data are where CPython has always kept them (checked once):
    /// read there, not through a call each (abi3 hides the macros that do).
    raw_layout: bool,
}

const WORD: usize = std::mem::size_of::<*mut pyo3::ffi::PyObject>();
/// `PyTupleObject.ob_item` and `PyBytesObject.ob_sval`: after the `PyVarObject` header (and
/// the bytes' hash).
const TUPLE_ITEMS: usize = 3 * WORD;
const BYTES_DATA: usize = 4 * WORD;

/// Whether tuples and bytes are laid out as [`TUPLE_ITEMS`] and [`BYTES_DATA`] say.
fn raw_layout_holds(py: Python<'_>) -> PyResult<bool> {
    let (a, b) = (PyList::empty(py), PyList::empty(py));
    let tuple = PyTuple::new(py, [&a, &b])?;
    let bytes = PyBytes::new(py, b"probe");
    // SAFETY: reads within the two objects (a 2-item tuple, a 5-byte bytes).
    Ok(unsafe {
        let items = tuple
            .as_ptr()
            .cast::<u8>()
            .add(TUPLE_ITEMS)
            .cast::<*mut pyo3::ffi::PyObject>();
        let data = bytes
            .as_ptr()
            .cast::<u8>()
            .add(BYTES_DATA)
            .cast::<std::ffi::c_char>();
        *items == a.as_ptr()
            && *items.add(1) == b.as_ptr()
            && pyo3::ffi::PyBytes_AsString(bytes.as_ptr()) == data
    })
}

fn short_name(full: &str) -> &str {
    full.trim_start_matches("Electric.Satellite.")
}

/// The field slot at `offset` of `obj`.
///
/// # Safety
/// `obj` is an instance of a planned class and `offset` one of its fields' offsets.
unsafe fn slot(obj: *mut pyo3::ffi::PyObject, offset: usize) -> *mut *mut pyo3::ffi::PyObject {
    obj.cast::<u8>().add(offset).cast()
}

/// Where instances of `cls` keep each of `attrs`: found by building one with a distinct object
/// per field and looking for them in its memory (msgspec keeps fields as slots, but does not
/// say where); an error if a field is not found exactly once.
fn field_offsets(cls: &Bound<'_, PyType>, attrs: &[Bound<'_, PyString>]) -> PyResult<Vec<usize>> {
    let py = cls.py();
    let size: usize = cls.getattr(pyo3::intern!(py, "__basicsize__"))?.extract()?;
    let kwargs = PyDict::new(py);
    let markers: Vec<Bound<'_, PyList>> = attrs.iter().map(|_| PyList::empty(py)).collect();
    for (attr, marker) in attrs.iter().zip(&markers) {
        kwargs.set_item(attr, marker)?;
    }
    let probe = cls.call((), Some(&kwargs))?;
    let word = std::mem::size_of::<*mut pyo3::ffi::PyObject>();
    let base = probe.as_ptr().cast::<*mut pyo3::ffi::PyObject>();
    attrs
        .iter()
        .zip(&markers)
        .map(|(attr, marker)| {
            // SAFETY: the object is `size` bytes long (`__basicsize__`, no variable part).
            let found: Vec<usize> = (0..size / word)
                .filter(|&w| unsafe { *base.add(w) } == marker.as_ptr())
                .collect();
            match found[..] {
                [w] => Ok(w * word),
                _ => Err(PyTypeError::new_err(format!(
                    "{}: cannot tell where instances keep the field {attr}",
                    cls.name()?
                ))),
            }
        })
        .collect()
}

impl SatelliteCodec {
    fn plan(&self, name: &str) -> PyResult<usize> {
        self.by_name.get(name).copied().ok_or_else(|| {
            PyValueError::new_err(FrameError::UnknownMessage(name.into()).to_string())
        })
    }

    /// The plan of a message: by its class, or by the `PROTO_NAME` of a subclass.
    fn plan_of(&self, message: &Bound<'_, PyAny>) -> PyResult<usize> {
        // SAFETY: the type of a live object.
        let cls = unsafe { pyo3::ffi::Py_TYPE(message.as_ptr()) } as usize;
        if let Ok(at) = self.by_class.binary_search_by_key(&cls, |&(c, _)| c) {
            return Ok(self.by_class[at].1);
        }
        let name = message.getattr(pyo3::intern!(message.py(), "PROTO_NAME"))?;
        self.plan(&name.extract::<pyo3::pybacked::PyBackedStr>()?)
    }

    /// The message of plan `index` from its protobuf bytes; the items of repeated fields are
    /// gathered on `items` (shared by the nested messages, each taking its own back off).
    fn decode_into<'py>(
        &self,
        py: Python<'py>,
        index: usize,
        mut buf: &[u8],
        depth: u32,
        items: &mut Vec<(usize, Bound<'py, PyAny>)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let plan = &self.plans[index];
        let malformed = |reason: &str| {
            errors::satellite(FrameError::Malformed {
                message: short_name(&plan.name).to_owned(),
                reason: reason.to_owned(),
            })
        };
        if depth > MAX_DEPTH {
            return Err(malformed("recursion limit reached"));
        }
        let mut singles: [Option<Bound<'py, PyAny>>; MAX_FIELDS] = Default::default();
        // The bytes a singular message field was decoded from: a field that comes again is
        // merged into it, as protobuf parsers do (decoding the two encodings one after the
        // other is the merge).
        let mut sources: [Option<Source<'_>>; MAX_FIELDS] = [None; MAX_FIELDS];
        let mut merged: Vec<Vec<u8>> = Vec::new();
        // The singular fields set, by bit.
        let mut set = 0u32;
        let base = items.len();
        while !buf.is_empty() {
            let key = read_varint(&mut buf).ok_or_else(|| malformed("truncated key"))?;
            let wire = (key & 7) as u8;
            let number = key >> 3;
            if number == 0 || number > u64::from(u32::MAX >> 3) {
                return Err(malformed("invalid field number"));
            }
            let found = plan.by_number.get(number as usize).copied().flatten();
            let Some(fi) = found else {
                skip_field(wire, number, &mut buf, 0)
                    .ok_or_else(|| malformed("malformed unknown field"))?;
                continue;
            };
            let field = &plan.fields[fi];
            if field.is_varint() && field.list && wire == 2 {
                let mut packed = read_len(&mut buf).ok_or_else(|| malformed("buffer underflow"))?;
                while !packed.is_empty() {
                    let v = read_varint(&mut packed)
                        .ok_or_else(|| malformed("truncated packed varint"))?;
                    items.push((fi, self.varint_value(py, plan, field, v)?));
                }
                continue;
            }
            let value = match (field.is_varint(), wire) {
                (true, 0) => {
                    let v = read_varint(&mut buf).ok_or_else(|| malformed("truncated varint"))?;
                    self.varint_value(py, plan, field, v)?
                }
                (false, 2) => {
                    let data = read_len(&mut buf).ok_or_else(|| malformed("buffer underflow"))?;
                    match field.scalar {
                        Scalar::String => {
                            // SAFETY: a pointer and length of `data`; strict UTF-8.
                            let s = unsafe {
                                pyo3::ffi::PyUnicode_DecodeUTF8(
                                    data.as_ptr().cast(),
                                    data.len() as pyo3::ffi::Py_ssize_t,
                                    std::ptr::null(),
                                )
                            };
                            if s.is_null() {
                                drop(PyErr::take(py));
                                return Err(malformed(
                                    "invalid string value: data is not UTF-8 encoded",
                                ));
                            }
                            // SAFETY: a new reference.
                            unsafe { Bound::from_owned_ptr(py, s) }
                        }
                        Scalar::Bytes => PyBytes::new(py, data).into_any(),
                        _ if field.list => {
                            self.decode_into(py, field.message, data, depth + 1, items)?
                        }
                        _ => match sources[fi] {
                            None => {
                                let value =
                                    self.decode_into(py, field.message, data, depth + 1, items)?;
                                sources[fi] = Some(Source::Input(data));
                                value
                            }
                            Some(before) => {
                                let before = match before {
                                    Source::Input(before) => before,
                                    Source::Merged(at) => &merged[at],
                                };
                                let whole = [before, data].concat();
                                let value =
                                    self.decode_into(py, field.message, &whole, depth + 1, items)?;
                                merged.push(whole);
                                sources[fi] = Some(Source::Merged(merged.len() - 1));
                                value
                            }
                        },
                    }
                }
                _ => return Err(malformed("invalid wire type")),
            };
            if field.list {
                items.push((fi, value));
            } else {
                if set & field.oneof_mask != 0 {
                    for &other in &field.oneof_others {
                        singles[other] = None;
                        sources[other] = None;
                    }
                    set &= !field.oneof_mask;
                }
                singles[fi] = Some(value);
                set |= 1 << fi;
            }
        }
        if items.len() > base {
            if let [fi] = plan.lists[..] {
                let values = items.drain(base..).map(|(_, v)| v);
                singles[fi] = Some(self.tuple_of(py, values)?);
            } else {
                for &fi in &plan.lists {
                    let mine = items[base..].iter().filter(|(f, _)| *f == fi);
                    let values: Vec<Bound<'py, PyAny>> = mine.map(|(_, v)| v.clone()).collect();
                    if !values.is_empty() {
                        singles[fi] = Some(self.tuple_of(py, values.into_iter())?);
                    }
                }
                items.truncate(base);
            }
        }
        // SAFETY: the class's own tp_alloc; a zeroed instance whose field slots are set below,
        // each to a new reference, as msgspec's decoder does.
        unsafe {
            let obj = Bound::from_owned_ptr_or_err(py, (plan.alloc)(plan.cls.as_ptr().cast(), 0))?;
            for (field, value) in plan.fields.iter().zip(&mut singles) {
                let value = match value.take() {
                    Some(v) => v,
                    None => field.default.bind(py).clone(),
                };
                *slot(obj.as_ptr(), field.offset) = value.into_ptr();
            }
            // Every value was taken: nothing to drop.
            std::mem::forget(singles);
            Ok(obj)
        }
    }

    /// A tuple of `values` (their references moved into it); its items written in place
    /// when `raw_layout` holds (one call each otherwise).
    fn tuple_of<'py>(
        &self,
        py: Python<'py>,
        values: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n = values.len();
        // SAFETY: a new tuple of `n` items, each set once below to a new reference (an item
        // left NULL, were the iterator to yield fewer, is one a tuple's dealloc skips).
        unsafe {
            let tuple = Bound::from_owned_ptr_or_err(
                py,
                pyo3::ffi::PyTuple_New(n as pyo3::ffi::Py_ssize_t),
            )?;
            let items = tuple
                .as_ptr()
                .cast::<u8>()
                .add(TUPLE_ITEMS)
                .cast::<*mut pyo3::ffi::PyObject>();
            for (i, value) in values.take(n).enumerate() {
                if self.raw_layout {
                    *items.add(i) = value.into_ptr();
                } else {
                    pyo3::ffi::PyTuple_SetItem(
                        tuple.as_ptr(),
                        i as pyo3::ffi::Py_ssize_t,
                        value.into_ptr(),
                    );
                }
            }
            Ok(tuple)
        }
    }

    fn varint_value<'py>(
        &self,
        py: Python<'py>,
        plan: &MessagePlan,
        field: &FieldPlan,
        v: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match field.scalar {
            Scalar::Bool => PyBool::new(py, v != 0).to_owned().into_any(),
            Scalar::Int32 => (v as i32).into_pyobject(py)?.into_any(),
            Scalar::Uint32 => (v as u32).into_pyobject(py)?.into_any(),
            Scalar::Enum => {
                let n = v as i32;
                let member = usize::try_from(n)
                    .ok()
                    .and_then(|i| field.enum_members.get(i))
                    .and_then(Option::as_ref);
                match member {
                    Some(member) => member.bind(py).clone(),
                    None => {
                        return Err(errors::satellite(FrameError::Malformed {
                            message: short_name(&plan.name).to_owned(),
                            reason: format!(
                                "unknown value {n} of enum field {}",
                                field.attr.bind(py)
                            ),
                        }))
                    }
                }
            }
            _ => v.into_pyobject(py)?.into_any(),
        })
    }

    /// Writes the protobuf encoding of `obj`, a message of plan `index`, in front of what
    /// `out` holds (its fields last to first, see [`Backward`]).
    fn encode_into<'py>(
        &self,
        py: Python<'py>,
        index: usize,
        obj: &Bound<'py, PyAny>,
        out: &mut Backward,
        depth: u32,
    ) -> PyResult<()> {
        let plan = &self.plans[index];
        if depth > MAX_DEPTH {
            return Err(PyValueError::new_err(format!(
                "{}: messages nested over {MAX_DEPTH} deep",
                short_name(&plan.name)
            )));
        }
        // SAFETY: the type of a live object (compared, not kept: no reference taken).
        let direct = unsafe { pyo3::ffi::Py_TYPE(obj.as_ptr()) } == plan.cls.as_ptr().cast();
        // SAFETY: the address of None.
        let none = unsafe { pyo3::ffi::Py_None() };
        for ef in &plan.encoders {
            // SAFETY: `obj` is an instance of the plan's class, whose field this offset is
            // (msgspec never leaves a field of a built instance unset, but NULL is checked).
            let kept = if direct {
                unsafe { *slot(obj.as_ptr(), ef.offset as usize) }
            } else {
                std::ptr::null_mut()
            };
            if kept == none && ef.presence && !ef.list {
                // Unset (most members of a oneof): nothing to write.
                continue;
            }
            let got;
            let value: Borrowed<'_, 'py, PyAny> = if kept.is_null() {
                let attr = plan.fields[usize::from(ef.field)].attr.bind(py);
                got = obj
                    .getattr(attr)
                    .map_err(|e| field_error(py, plan, ef, e))?;
                got.as_borrowed()
            } else {
                // SAFETY: a field of `obj`, which the caller holds and which is frozen: no
                // reference of our own is needed (abi3 reference counting is a call each).
                unsafe { Borrowed::from_ptr(py, kept) }
            };
            self.encode_field(py, ef, &value, out, depth)
                .map_err(|e| field_error(py, plan, ef, e))?;
        }
        Ok(())
    }

    #[inline(always)]
    fn encode_field<'py>(
        &self,
        py: Python<'py>,
        ef: &EncodeField,
        value: &Bound<'py, PyAny>,
        out: &mut Backward,
        depth: u32,
    ) -> PyResult<()> {
        if ef.list {
            return self.encode_list(py, ef, value, out, depth);
        }
        if value.is_none() {
            return if ef.presence {
                Ok(())
            } else {
                Err(PyTypeError::new_err("None for a field without presence"))
            };
        }
        match ef.scalar {
            Scalar::Bytes | Scalar::String => {
                self.encode_value(py, ef, value, out, depth, !ef.presence)
            }
            Scalar::Message => self.encode_nested(py, ef, value, out, depth),
            scalar => {
                let v = varint_of(scalar, value)?;
                if v != 0 || ef.presence {
                    out.put_varint(v);
                    out.put_varint(u64::from(ef.number << 3));
                }
                Ok(())
            }
        }
    }

    /// A repeated field's items, last to first (an exact tuple read in place).
    fn encode_list<'py>(
        &self,
        py: Python<'py>,
        ef: &EncodeField,
        value: &Bound<'py, PyAny>,
        out: &mut Backward,
        depth: u32,
    ) -> PyResult<()> {
        if let (true, Ok(tuple)) = (self.raw_layout, value.cast_exact::<PyTuple>()) {
            // SAFETY: a tuple's items, as `raw_layout_holds` checked, borrowed from the
            // tuple the message holds.
            let items = unsafe {
                let n = pyo3::ffi::Py_SIZE(tuple.as_ptr()) as usize;
                let at = tuple.as_ptr().cast::<u8>().add(TUPLE_ITEMS);
                std::slice::from_raw_parts(at.cast::<*mut pyo3::ffi::PyObject>(), n)
            };
            let items = items
                .iter()
                .rev()
                .map(|&p| unsafe { Borrowed::from_ptr(py, p) });
            self.encode_items(py, ef, items, out, depth)
        } else if let Ok(tuple) = value.cast_exact::<PyTuple>() {
            self.encode_items(py, ef, tuple.iter_borrowed().rev(), out, depth)
        } else if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
            Err(PyTypeError::new_err("expected a list"))
        } else {
            let items = value.try_iter()?.collect::<PyResult<Vec<_>>>()?;
            let items = items.iter().rev().map(|item| item.as_borrowed());
            self.encode_items(py, ef, items, out, depth)
        }
    }

    /// The items of a repeated field, given last to first: varints packed, the others one key
    /// each.
    #[inline(always)]
    fn encode_items<'a, 'py: 'a>(
        &self,
        py: Python<'py>,
        ef: &EncodeField,
        items: impl Iterator<Item = Borrowed<'a, 'py, PyAny>>,
        out: &mut Backward,
        depth: u32,
    ) -> PyResult<()> {
        match ef.scalar {
            Scalar::Bytes => {
                for item in items {
                    match exact_bytes(&item, self.raw_layout) {
                        Some(data) => out.put_field(ef.number, data),
                        None => other_bytes(ef, &item, out, false)?,
                    }
                }
            }
            Scalar::String => {
                for item in items {
                    out.put_field(ef.number, str_utf8(&item)?);
                }
            }
            Scalar::Message => {
                for item in items {
                    self.encode_nested(py, ef, &item, out, depth)?;
                }
            }
            scalar => {
                let end = out.len();
                for item in items {
                    out.put_varint(varint_of(scalar, &item)?);
                }
                if out.len() != end {
                    out.put_head(ef.number, out.len() - end);
                }
            }
        }
        Ok(())
    }

    /// A length-delimited field: its key, length and data (nothing for an empty string or
    /// bytes when `skip_empty`).
    #[inline(always)]
    fn encode_value<'py>(
        &self,
        py: Python<'py>,
        ef: &EncodeField,
        value: &Bound<'py, PyAny>,
        out: &mut Backward,
        depth: u32,
        skip_empty: bool,
    ) -> PyResult<()> {
        let data = match ef.scalar {
            Scalar::Bytes => match exact_bytes(value, self.raw_layout) {
                Some(data) => data,
                None => return other_bytes(ef, value, out, skip_empty),
            },
            Scalar::String => str_utf8(value)?,
            _ => return self.encode_nested(py, ef, value, out, depth),
        };
        encode_bytes(ef, data, out, skip_empty);
        Ok(())
    }

    /// A message field: the message, then its key and length in front.
    #[inline(always)]
    fn encode_nested<'py>(
        &self,
        py: Python<'py>,
        ef: &EncodeField,
        value: &Bound<'py, PyAny>,
        out: &mut Backward,
        depth: u32,
    ) -> PyResult<()> {
        let end = out.len();
        self.encode_into(py, ef.message as usize, value, out, depth + 1)?;
        out.put_head(ef.number, out.len() - end);
        Ok(())
    }

    /// The encoding of a message, after its frame type id when `frame`.
    fn encode_top<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
        frame: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let index = self.plan_of(message)?;
        let plan = &self.plans[index];
        let type_id = match (frame, plan.type_id) {
            (false, _) => None,
            (true, Some(ty)) => Some(ty),
            (true, None) => {
                return Err(PyValueError::new_err(format!(
                    "{} is not a frame message",
                    plan.name
                )))
            }
        };
        let run = |out: &mut Backward| {
            out.clear();
            self.encode_into(py, index, message, out, 0)?;
            if let Some(ty) = type_id {
                out.put_byte(ty);
            }
            Ok(PyBytes::new(py, out.written()))
        };
        BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut out) => {
                let result = run(&mut out);
                if out.buf.len() > MAX_KEPT_BUFFER {
                    *out = Backward::new();
                }
                result
            }
            // Encoding from inside an encoding (an int subclass's __index__ could): a buffer
            // of its own.
            Err(_) => run(&mut Backward::new()),
        })
    }
}

/// A string or bytes field: its key, length and data (nothing for an empty value when
/// `skip_empty`).
#[inline(always)]
fn encode_bytes(ef: &EncodeField, data: &[u8], out: &mut Backward, skip_empty: bool) {
    if !(skip_empty && data.is_empty()) {
        out.put_field(ef.number, data);
    }
}

/// A bytes field's value that is not an exact `bytes`: a subclass or a bytearray.
#[cold]
fn other_bytes(
    ef: &EncodeField,
    value: &Bound<'_, PyAny>,
    out: &mut Backward,
    skip_empty: bool,
) -> PyResult<()> {
    if let Ok(b) = value.cast::<PyBytes>() {
        encode_bytes(ef, b.as_bytes(), out, skip_empty);
    } else if let Ok(b) = value.cast::<PyByteArray>() {
        encode_bytes(ef, &b.to_vec(), out, skip_empty);
    } else {
        return Err(PyTypeError::new_err(format!(
            "expected bytes, got {}",
            value.get_type().name()?
        )));
    }
    Ok(())
}

/// A field's error, named: `SatOpLog.ops: SatTransOp.begin: ...` from the innermost out.
#[cold]
fn field_error(py: Python<'_>, plan: &MessagePlan, ef: &EncodeField, e: PyErr) -> PyErr {
    let message = format!(
        "{}.{}: {}",
        short_name(&plan.name),
        plan.fields[usize::from(ef.field)].attr.bind(py),
        e.value(py)
    );
    if e.is_instance_of::<PyValueError>(py) || e.is_instance_of::<PyOverflowError>(py) {
        PyValueError::new_err(message)
    } else {
        PyTypeError::new_err(message)
    }
}

/// The data of an exact `bytes` (one call where PyO3 makes two under abi3, and no subtype
/// check, a call too).
#[inline]
fn exact_bytes<'a>(value: &'a Bound<'_, PyAny>, raw_layout: bool) -> Option<&'a [u8]> {
    if !value.is_exact_instance_of::<PyBytes>() {
        return None;
    }
    // SAFETY: a bytes object, alive as long as `value`; its size is its ob_size, its data at
    // BYTES_DATA when `raw_layout`.
    unsafe {
        let data = if raw_layout {
            value
                .as_ptr()
                .cast::<u8>()
                .add(BYTES_DATA)
                .cast::<std::ffi::c_char>()
        } else {
            pyo3::ffi::PyBytes_AsString(value.as_ptr())
        };
        let len = pyo3::ffi::Py_SIZE(value.as_ptr()) as usize;
        Some(std::slice::from_raw_parts(data.cast::<u8>(), len))
    }
}

/// The UTF-8 of a str (exact str checked without a call).
#[inline]
fn str_utf8<'a>(value: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    if value.is_exact_instance_of::<PyString>() {
        let mut len: pyo3::ffi::Py_ssize_t = 0;
        // SAFETY: a str, alive as long as `value`, which caches its UTF-8.
        let data = unsafe { pyo3::ffi::PyUnicode_AsUTF8AndSize(value.as_ptr(), &mut len) };
        if data.is_null() {
            return Err(PyErr::fetch(value.py()));
        }
        // SAFETY: `len` bytes at `data`, owned by the str.
        return Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len as usize) });
    }
    Ok(value.cast::<PyString>()?.to_str()?.as_bytes())
}

/// The varint of an int, bool or enum value (negative int32 as 10 bytes, as protobuf does).
#[inline(always)]
fn varint_of(scalar: Scalar, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if scalar == Scalar::Bool {
        // SAFETY: the addresses of True and False, compared.
        let (yes, no) = unsafe { (pyo3::ffi::Py_True(), pyo3::ffi::Py_False()) };
        if value.as_ptr() == yes {
            return Ok(1);
        } else if value.as_ptr() == no {
            return Ok(0);
        }
    } else if value.is_exact_instance_of::<PyInt>() {
        // An exact int in range in one call (PyO3's extract makes more under abi3); out of
        // range, the extraction below raises its error.
        let p = value.as_ptr();
        // SAFETY: an int object; an error these raise is taken back at once.
        let fast = unsafe {
            match scalar {
                Scalar::Uint32 | Scalar::Uint64 => {
                    // `unsigned long` where it has 64 bits: CPython 3.11's `long long`
                    // conversion goes through a byte array for an int of two digits or more.
                    let v = if std::mem::size_of::<std::ffi::c_ulong>() == 8 {
                        pyo3::ffi::PyLong_AsUnsignedLong(p) as u64
                    } else {
                        pyo3::ffi::PyLong_AsUnsignedLongLong(p)
                    };
                    let failed = v == u64::MAX && PyErr::take(value.py()).is_some();
                    let over = scalar == Scalar::Uint32 && v > u64::from(u32::MAX);
                    (!failed && !over).then_some(v)
                }
                Scalar::Int32 | Scalar::Enum => {
                    #[allow(clippy::useless_conversion)] // `long` has 32 bits on Windows
                    let v = i64::from(pyo3::ffi::PyLong_AsLong(p));
                    if v == -1 && PyErr::take(value.py()).is_some() {
                        None
                    } else {
                        i32::try_from(v).ok().map(|v| i64::from(v) as u64)
                    }
                }
                _ => None,
            }
        };
        if let Some(v) = fast {
            return Ok(v);
        }
    }
    extract_varint(scalar, value)
}

/// [`varint_of`] of another object (an enum member, an int subclass, an int out of range):
/// PyO3's extraction, with its error.
#[cold]
#[inline(never)]
fn extract_varint(scalar: Scalar, value: &Bound<'_, PyAny>) -> PyResult<u64> {
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

/// A length-delimited value: its varint length, then that many bytes.
fn read_len<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(read_varint(buf)?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (data, rest) = buf.split_at(len);
    *buf = rest;
    Some(data)
}

/// Skips an unknown field of field number `number` (a group up to its end, as prost does).
fn skip_field(wire: u8, number: u64, buf: &mut &[u8], depth: u32) -> Option<()> {
    let n = match wire {
        0 => {
            read_varint(buf)?;
            0
        }
        1 => 8,
        2 => usize::try_from(read_varint(buf)?).ok()?,
        3 if depth < MAX_DEPTH => loop {
            let key = read_varint(buf)?;
            let (inner_wire, inner) = ((key & 7) as u8, key >> 3);
            if inner == 0 || inner > u64::from(u32::MAX >> 3) {
                return None;
            }
            if inner_wire == 4 {
                return (inner == number).then_some(());
            }
            skip_field(inner_wire, inner, buf, depth + 1)?;
        },
        5 => 4,
        _ => return None,
    };
    if n > buf.len() {
        return None;
    }
    *buf = &buf[n..];
    Some(())
}

#[pymethods]
impl SatelliteCodec {
    #[new]
    fn new(classes: &Bound<'_, PyDict>, enums: &Bound<'_, PyDict>) -> PyResult<Self> {
        let py = classes.py();
        let pool = electric_core::satellite::dynamic::descriptor_pool();
        let descriptors: Vec<MessageDescriptor> = pool.all_messages().collect();
        let by_name: HashMap<String, usize> = descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| (short_name(d.full_name()).to_owned(), i))
            .collect();
        let mut plans = Vec::with_capacity(descriptors.len());
        let mut by_class = Vec::new();
        let mut by_type_id = vec![None; 256];
        for desc in &descriptors {
            let name = short_name(desc.full_name()).to_owned();
            let cls = classes
                .get_item(&name)?
                .ok_or_else(|| PyValueError::new_err(format!("no class for {name}")))?
                .cast_into::<PyType>()?;
            // Attribute names by encoded name (`primaryKey` is `primary_key`).
            let attrs: Vec<String> = cls.getattr("__struct_fields__")?.extract()?;
            let encoded: Vec<String> = cls.getattr("__struct_encode_fields__")?.extract()?;
            if desc.fields().len() > MAX_FIELDS || attrs.len() != desc.fields().len() {
                return Err(PyValueError::new_err(format!(
                    "{name}: {} fields in the class, {} in the .proto (at most {MAX_FIELDS})",
                    attrs.len(),
                    desc.fields().len()
                )));
            }
            if cls.hasattr("__post_init__")? {
                return Err(PyValueError::new_err(format!("{name}: has __post_init__")));
            }
            let interned: Vec<Bound<'_, PyString>> =
                attrs.iter().map(|a| PyString::intern(py, a)).collect();
            let offsets = field_offsets(&cls, &interned)?;
            let oneof_of = |f: &FieldDescriptor| {
                f.containing_oneof()
                    .and_then(|o| desc.oneofs().position(|x| x.name() == o.name()))
            };
            let mut sorted: Vec<FieldDescriptor> = desc.fields().collect();
            sorted.sort_by_key(FieldDescriptor::number);
            let oneofs: Vec<Option<usize>> = sorted.iter().map(oneof_of).collect();
            let mut fields = Vec::new();
            let mut by_number = Vec::new();
            for (i, f) in sorted.iter().enumerate() {
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
                                .ok_or_else(|| PyValueError::new_err(format!("no enum {en}")))?,
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
                let mut enum_members = Vec::new();
                if let (Kind::Enum(e), Some(cls)) = (f.kind(), &enum_cls) {
                    for n in e.values().map(|v| v.number()) {
                        let n = usize::try_from(n)
                            .map_err(|_| PyValueError::new_err("negative enum number"))?;
                        if enum_members.len() <= n {
                            enum_members.resize_with(n + 1, || None);
                        }
                        enum_members[n] = Some(cls.call1((n,))?.unbind());
                    }
                }
                let default: Bound<'_, PyAny> = if list {
                    PyTuple::empty(py).into_any()
                } else if presence {
                    py.None().into_bound(py)
                } else {
                    match scalar {
                        Scalar::Bool => PyBool::new(py, false).to_owned().into_any(),
                        Scalar::String => PyString::new(py, "").into_any(),
                        Scalar::Bytes => PyBytes::new(py, b"").into_any(),
                        Scalar::Enum => enum_cls.as_ref().expect("enum").call1((0,))?,
                        _ => 0u8.into_pyobject(py)?.into_any(),
                    }
                };
                let number = f.number();
                if by_number.len() <= number as usize {
                    by_number.resize(number as usize + 1, None);
                }
                by_number[number as usize] = Some(fields.len());
                let oneof_others = match oneofs[i] {
                    Some(group) => (0..oneofs.len())
                        .filter(|&j| j != i && oneofs[j] == Some(group))
                        .collect(),
                    None => Vec::new(),
                };
                let oneof_mask = oneof_others.iter().fold(0, |mask, &j| mask | 1 << j);
                fields.push(FieldPlan {
                    number,
                    scalar,
                    list,
                    presence,
                    oneof_others,
                    oneof_mask,
                    attr: interned[pos].clone().unbind(),
                    offset: offsets[pos],
                    default: default.unbind(),
                    enum_members,
                    message,
                });
            }
            let lists = (0..fields.len()).filter(|&i| fields[i].list).collect();
            let encoders = fields
                .iter()
                .enumerate()
                .rev()
                .map(|(i, f)| EncodeField {
                    offset: f.offset as u32,
                    number: f.number,
                    message: f.message as u32,
                    field: i as u16,
                    scalar: f.scalar,
                    list: f.list,
                    presence: f.presence,
                })
                .collect();
            // SAFETY: a type object's slot; every type has a tp_alloc.
            let alloc =
                unsafe { pyo3::ffi::PyType_GetSlot(cls.as_type_ptr(), pyo3::ffi::Py_tp_alloc) };
            if alloc.is_null() {
                return Err(PyTypeError::new_err(format!("{name}: no tp_alloc")));
            }
            let type_id = MessageType::from_name(&name).map(|ty| ty.id());
            if let Some(id) = type_id {
                by_type_id[usize::from(id)] = Some(plans.len());
            }
            by_class.push((cls.as_ptr() as usize, plans.len()));
            plans.push(MessagePlan {
                name,
                // SAFETY: the tp_alloc slot holds an allocfunc.
                alloc: unsafe {
                    std::mem::transmute::<*mut std::ffi::c_void, pyo3::ffi::allocfunc>(alloc)
                },
                cls: cls.unbind(),
                type_id,
                fields,
                by_number,
                lists,
                encoders,
            });
        }
        by_class.sort_unstable();
        Ok(SatelliteCodec {
            plans,
            by_name,
            by_class,
            by_type_id,
            raw_layout: raw_layout_holds(py)?,
        })
    }

    /// The message of a frame; `SatelliteFrameError` for an empty frame, an unknown type byte,
    /// a frame over `max_len` bytes or a malformed message.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        max_len: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        errors::guard(|| {
            let (ty, body) =
                electric_core::satellite::split(data, max_len).map_err(errors::satellite)?;
            let index = self.by_type_id[usize::from(ty.id())]
                .ok_or_else(|| PyValueError::new_err(format!("no plan for {}", ty.name())))?;
            self.decode_into(py, index, body, 0, &mut Vec::new())
        })
    }

    /// Decodes a message by name (`"SatAuthReq"`, `"SatOpMigrate.Table"`).
    fn decode_message<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        data: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        errors::guard(|| self.decode_into(py, self.plan(name)?, data, 0, &mut Vec::new()))
    }

    /// The frame of a message: its type id, then its protobuf encoding.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.encode_top(py, message, true)
    }

    /// The protobuf encoding of a message, without a type id.
    fn encode_message<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.encode_top(py, message, false)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SATELLITE_MAX_FRAME_LEN", DEFAULT_MAX_FRAME_LEN)?;
    m.add_function(wrap_pyfunction!(decode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(decode_message, m)?)?;
    m.add_function(wrap_pyfunction!(frame_type_ids, m)?)?;
    m.add_class::<SatelliteCodec>()?;
    Ok(())
}
