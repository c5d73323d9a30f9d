//! The write path's row conversion: a client's `SatOpRow` values to Postgres text input.

use std::sync::Arc;

use electric_core::satellite::{client_row_to_pg_text, ColumnType, RowError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;

use crate::errors::ValueDecodeError;

/// The column types of one client relation; converts its rows.
#[pyclass(module = "electric_trio._native", frozen)]
pub struct ClientRowCodec {
    types: Vec<ColumnType>,
}

#[pymethods]
impl ClientRowCodec {
    /// `types`: per column its `pg_type.typname` and, for an enum, its labels.
    #[new]
    fn new(types: Vec<(String, Option<Vec<String>>)>) -> PyResult<Self> {
        let types = types
            .into_iter()
            .map(|(name, labels)| match labels {
                Some(labels) => Ok(ColumnType::Enum(Arc::from(labels))),
                None => ColumnType::from_pg_name(&name)
                    .ok_or_else(|| PyValueError::new_err(format!("unsupported type {name:?}"))),
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(ClientRowCodec { types })
    }

    /// The row's values as Postgres text input (None for NULL); `ValueDecodeError` names the
    /// column index and what is wrong.
    fn to_pg_text(
        &self,
        py: Python<'_>,
        nulls_bitmask: &[u8],
        values: Vec<PyBackedBytes>,
    ) -> PyResult<Vec<Option<String>>> {
        crate::errors::guard(|| {
            client_row_to_pg_text(&self.types, nulls_bitmask, &values).map_err(|e| {
                let column = match &e {
                    RowError::Value { column, .. } | RowError::Unencodable { column, .. } => {
                        Some(*column)
                    }
                    _ => None,
                };
                let err = ValueDecodeError::new_err(e.to_string());
                let _ = err.value(py).setattr("column", column);
                err
            })
        })
    }

    fn __len__(&self) -> usize {
        self.types.len()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ClientRowCodec>()
}
