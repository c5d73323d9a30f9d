//! Decoded values to Python objects.

use electric_core::value::{decode_text, Date, Kind, Scalar, Time, Value};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{IntoPyDict, PyBytes, PyDate, PyDateTime, PyList, PyString, PyTime, PyTzInfo};

use crate::errors;

struct Cached {
    decimal: Py<PyAny>,
    uuid: Py<PyAny>,
    json_loads: Py<PyAny>,
    timezone: Py<PyAny>,
    timedelta: Py<PyAny>,
    utc: Py<PyAny>,
    date_min: Py<PyAny>,
    date_max: Py<PyAny>,
    datetime_min: Py<PyAny>,
    datetime_max: Py<PyAny>,
    datetime_min_utc: Py<PyAny>,
    datetime_max_utc: Py<PyAny>,
}

static CACHED: PyOnceLock<Cached> = PyOnceLock::new();

fn cached(py: Python<'_>) -> PyResult<&Cached> {
    CACHED.get_or_try_init(py, || {
        let datetime = py.import("datetime")?;
        let date_cls = datetime.getattr("date")?;
        let dt_cls = datetime.getattr("datetime")?;
        let timezone = datetime.getattr("timezone")?;
        let utc = timezone.getattr("utc")?;
        let dt_min = dt_cls.getattr("min")?;
        let dt_max = dt_cls.getattr("max")?;
        Ok(Cached {
            decimal: py.import("decimal")?.getattr("Decimal")?.unbind(),
            uuid: py.import("uuid")?.getattr("UUID")?.unbind(),
            json_loads: py.import("json")?.getattr("loads")?.unbind(),
            timedelta: datetime.getattr("timedelta")?.unbind(),
            date_min: date_cls.getattr("min")?.unbind(),
            date_max: date_cls.getattr("max")?.unbind(),
            datetime_min_utc: dt_min
                .call_method("replace", (), Some(&[("tzinfo", &utc)].into_py_dict(py)?))?
                .unbind(),
            datetime_max_utc: dt_max
                .call_method("replace", (), Some(&[("tzinfo", &utc)].into_py_dict(py)?))?
                .unbind(),
            datetime_min: dt_min.unbind(),
            datetime_max: dt_max.unbind(),
            timezone: timezone.unbind(),
            utc: utc.unbind(),
        })
    })
}

/// Python's dates stop at year 9999, Postgres's do not (and a day 31 of a 30-day month parses
/// but is no date): a value error of ours, not Python's `ValueError`.
fn no_python_date(e: PyErr) -> PyErr {
    Python::attach(|py| errors::ValueDecodeError::new_err(format!("{}", e.value(py))))
}

fn date<'py>(py: Python<'py>, d: Date) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyDate::new(py, d.year, d.month, d.day)
        .map_err(no_python_date)?
        .into_any())
}

fn datetime<'py>(
    py: Python<'py>,
    d: Date,
    t: Time,
    tz: Option<&Bound<'py, PyTzInfo>>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyDateTime::new(
        py, d.year, d.month, d.day, t.hour, t.minute, t.second, t.micro, tz,
    )
    .map_err(no_python_date)?
    .into_any())
}

fn time<'py>(
    py: Python<'py>,
    t: Time,
    tz: Option<&Bound<'py, PyTzInfo>>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyTime::new(py, t.hour, t.minute, t.second, t.micro, tz)?.into_any())
}

/// Converts one decoded value.
pub fn to_py<'py>(py: Python<'py>, v: Value<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => pyo3::types::PyBool::new(py, b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(f) => f.into_pyobject(py)?.into_any(),
        Value::Text(s) => PyString::new(py, &s).into_any(),
        Value::Numeric(s) => cached(py)?
            .decimal
            .bind(py)
            .call1((PyString::new(py, &s),))?,
        Value::Json(s) => cached(py)?
            .json_loads
            .bind(py)
            .call1((PyString::new(py, &s),))?,
        Value::Bytes(b) => PyBytes::new(py, &b).into_any(),
        Value::Uuid(u) => {
            let c = cached(py)?;
            let int = u128::from_be_bytes(u);
            c.uuid
                .bind(py)
                .call((), Some(&[("int", int)].into_py_dict(py)?))?
        }
        Value::Date(d) => date(py, d)?,
        Value::Time(t) => time(py, t, None)?,
        Value::TimeTz(t, offset) => {
            let c = cached(py)?;
            let delta = c.timedelta.bind(py).call((0, offset), None)?;
            let tz = c.timezone.bind(py).call1((delta,))?;
            time(py, t, Some(tz.cast::<PyTzInfo>()?))?
        }
        Value::Timestamp(d, t) => datetime(py, d, t, None)?,
        Value::TimestampTz(d, t) => {
            let c = cached(py)?;
            datetime(py, d, t, Some(c.utc.bind(py).cast::<PyTzInfo>()?))?
        }
        Value::Infinity { positive, of } => {
            let c = cached(py)?;
            let o = match (of, positive) {
                (Scalar::Date, true) => &c.date_max,
                (Scalar::Date, false) => &c.date_min,
                (Scalar::TimestampTz, true) => &c.datetime_max_utc,
                (Scalar::TimestampTz, false) => &c.datetime_min_utc,
                (_, true) => &c.datetime_max,
                (_, false) => &c.datetime_min,
            };
            o.bind(py).clone()
        }
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
    })
}

/// Decodes a text-format value of `kind` straight to Python, with fast paths for the common
/// kinds that skip the intermediate `Value`.
#[inline]
pub fn decode_to_py<'py>(py: Python<'py>, kind: Kind, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    match kind {
        Kind::Int => {
            if let Some(i) = electric_core::value::parse_int(raw) {
                return Ok(i.into_pyobject(py)?.into_any());
            }
        }
        Kind::Text => {
            if let Ok(s) = std::str::from_utf8(raw) {
                return Ok(PyString::new(py, s).into_any());
            }
        }
        _ => {}
    }
    to_py(py, decode_text(kind, raw).map_err(errors::decode)?)
}
