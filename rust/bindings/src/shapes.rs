//! The shape filter: a where clause compiled against a table's columns, evaluated on rows given
//! as dicts (for tests and tools; the server evaluates pgoutput rows in Rust through
//! [`ShapeFilter::core`]) and turned into the initial query's WHERE fragment.

use std::collections::HashMap;
use std::sync::Arc;

use electric_core::shapes::{ColumnDef, ShapeFilter as CoreFilter};
use electric_core::value::{decode_text, Kind, Value};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

use crate::errors;

/// A WHERE fragment and its parameters as `(text or None, type OID)`.
type SqlWithParams = (String, Vec<(Option<String>, u32)>);

/// A compiled where clause.
#[pyclass(module = "electric_trio._native", frozen)]
pub struct ShapeFilter {
    inner: Arc<CoreFilter>,
    columns: Vec<ColumnDef>,
}

impl ShapeFilter {
    /// The compiled filter, for Rust code that evaluates pgoutput rows (`matches(&[Datum])`).
    #[allow(dead_code)] // The Satellite server's binding is the caller.
    pub(crate) fn core(&self) -> &Arc<CoreFilter> {
        &self.inner
    }

    /// A Python value of column `col` as the value a decoded row would hold.
    fn value<'py>(col: &ColumnDef, v: &Bound<'py, PyAny>) -> PyResult<Value<'static>> {
        let kind = if col.enum_labels.is_some() {
            Kind::Text
        } else {
            Kind::of(col.type_oid)
        };
        let wrong = || {
            PyTypeError::new_err(format!(
                "column {:?}: {} is not a value of its type",
                col.name,
                v.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        };
        if v.is_none() {
            return Ok(Value::Null);
        }
        if v.is_instance_of::<PyBool>() {
            return match kind {
                Kind::Bool => Ok(Value::Bool(v.extract()?)),
                _ => Err(wrong()),
            };
        }
        if v.is_instance_of::<PyInt>() {
            return match kind {
                Kind::Int => Ok(Value::Int(v.extract().map_err(|_| wrong())?)),
                Kind::Float => Ok(Value::Float(v.extract()?)),
                Kind::Numeric => Ok(Value::Numeric(v.str()?.to_string().into())),
                _ => Err(wrong()),
            };
        }
        if v.is_instance_of::<PyFloat>() {
            return match kind {
                Kind::Float => Ok(Value::Float(v.extract()?)),
                Kind::Numeric => Ok(Value::Numeric(v.repr()?.to_string().into())),
                _ => Err(wrong()),
            };
        }
        if kind == Kind::Text {
            return if v.is_instance_of::<PyString>() {
                Ok(Value::Text(v.extract::<String>()?.into()))
            } else {
                Err(wrong())
            };
        }
        // Strings in Postgres's text form, and date, datetime, time, UUID, Decimal objects,
        // whose str() is that form.
        let text = v.str()?.to_string();
        match decode_text(kind, text.as_bytes()) {
            Ok(v) => Ok(v.into_owned()),
            Err(e) => Err(errors::decode(e)),
        }
    }

    fn row(&self, row: &Bound<'_, PyDict>) -> PyResult<Vec<Value<'static>>> {
        let mut values = vec![Value::Null; self.columns.len()];
        for &i in self.inner.referenced_columns() {
            let col = &self.columns[i];
            if let Some(v) = row.get_item(&col.name)? {
                values[i] = Self::value(col, &v)?;
            }
        }
        Ok(values)
    }
}

#[pymethods]
impl ShapeFilter {
    /// Compiles `where` against the table's `columns` (name, type OID), in row order. `enums`
    /// gives the labels (in sort order) of enum-typed columns by column name. Raises
    /// `ShapeFilterError` (with `position`) for a clause that does not parse or type-check.
    #[staticmethod]
    #[pyo3(signature = (r#where, columns, enums = None))]
    fn compile(
        r#where: &str,
        columns: Vec<(String, u32)>,
        enums: Option<HashMap<String, Vec<String>>>,
    ) -> PyResult<ShapeFilter> {
        let mut enums = enums.unwrap_or_default();
        let columns: Vec<ColumnDef> = columns
            .into_iter()
            .map(|(name, oid)| match enums.remove(&name) {
                Some(labels) => ColumnDef::enumeration(name, oid, labels),
                None => ColumnDef::new(name, oid),
            })
            .collect();
        if let Some(name) = enums.keys().next() {
            return Err(PyTypeError::new_err(format!(
                "enum labels given for {name:?}, which is not a column"
            )));
        }
        let inner =
            errors::guard(|| CoreFilter::compile(r#where, &columns).map_err(errors::shape_filter))?;
        Ok(ShapeFilter {
            inner: Arc::new(inner),
            columns,
        })
    }

    /// The clause as given.
    #[getter]
    fn r#where(&self) -> &str {
        self.inner.source()
    }

    /// The names of the columns the clause reads, in table order.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.inner
            .referenced_columns()
            .iter()
            .map(|&i| self.columns[i].name.clone())
            .collect()
    }

    /// Whether the row (column name to value; missing columns are NULL) passes: the clause
    /// is TRUE on it. Raises `ShapeEvaluationError` where Postgres would raise an error.
    fn matches(&self, row: &Bound<'_, PyDict>) -> PyResult<bool> {
        let values = self.row(row)?;
        errors::guard(|| {
            self.inner
                .matches(values.as_slice())
                .map_err(errors::shape_evaluation)
        })
    }

    /// The clause's value on the row: True, False or None (SQL NULL).
    fn evaluate(&self, row: &Bound<'_, PyDict>) -> PyResult<Option<bool>> {
        let values = self.row(row)?;
        errors::guard(|| {
            self.inner
                .evaluate(values.as_slice())
                .map_err(errors::shape_evaluation)
        })
    }

    /// `(sql, params)`: a WHERE fragment selecting the rows `matches` accepts, columns
    /// qualified by `alias`, parameters `$first_param`... as `(text or None, type OID)`.
    #[pyo3(signature = (alias, first_param = 1))]
    fn to_sql(&self, alias: &str, first_param: usize) -> PyResult<SqlWithParams> {
        errors::guard(|| {
            let f = self.inner.to_sql(alias, first_param);
            let params = f
                .params
                .into_iter()
                .map(|p| (p.value, p.type_oid))
                .collect();
            Ok((f.sql, params))
        })
    }

    fn __repr__(&self) -> String {
        format!("ShapeFilter({:?})", self.inner.source())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ShapeFilter>()
}
