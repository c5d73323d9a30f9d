//! `SatOpRow`: one value per relation column and a NULL bitmask (satellite-protocol.md §6.5).

use thiserror::Error;

use super::proto::SatOpRow;
use super::values::{decode_value, encode_value, ColumnType, UnencodableValue};
use crate::error::DecodeError;
use crate::value::Value;

/// A row that does not fit its relation.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RowError {
    #[error("row has {got} values for {expected} columns")]
    Width { expected: usize, got: usize },
    #[error("NULL bitmask of {got} bytes for {columns} columns (expected {expected})")]
    Bitmask {
        columns: usize,
        expected: usize,
        got: usize,
    },
    #[error("column {column}: {source}")]
    Value {
        column: usize,
        #[source]
        source: DecodeError,
    },
    #[error("column {column}: {source}")]
    Unencodable {
        column: usize,
        #[source]
        source: UnencodableValue,
    },
}

/// The bitmask length for `columns` columns: one bit each, rounded up to whole bytes.
pub fn bitmask_len(columns: usize) -> usize {
    columns.div_ceil(8)
}

/// Whether column `i` is NULL: bit `7 - i % 8` (most significant first) of byte `i / 8`.
pub fn is_null(bitmask: &[u8], i: usize) -> bool {
    bitmask
        .get(i / 8)
        .is_some_and(|byte| byte & (0x80 >> (i % 8)) != 0)
}

/// Marks column `i` NULL.
pub fn set_null(bitmask: &mut [u8], i: usize) {
    bitmask[i / 8] |= 0x80 >> (i % 8);
}

/// Encodes typed values (`Value::Null` for NULL), one per column of `types`.
pub fn encode_row(types: &[ColumnType], values: &[Value<'_>]) -> Result<SatOpRow, RowError> {
    if types.len() != values.len() {
        return Err(RowError::Width {
            expected: types.len(),
            got: values.len(),
        });
    }
    let mut row = SatOpRow {
        nulls_bitmask: vec![0; bitmask_len(values.len())],
        values: Vec::with_capacity(values.len()),
    };
    for (i, (ty, value)) in types.iter().zip(values).enumerate() {
        let mut text = Vec::new();
        if matches!(value, Value::Null) {
            set_null(&mut row.nulls_bitmask, i);
        } else {
            encode_value(ty, value, &mut text)
                .map_err(|source| RowError::Unencodable { column: i, source })?;
        }
        row.values.push(text);
    }
    Ok(row)
}

/// Decodes and validates a row a client sent for a relation with columns of `types`. NULL
/// columns become `Value::Null` whatever their value bytes; whether a column may be NULL is
/// the caller's check (it knows `is_nullable` and whether the op is a compensation or a GONE).
/// Padding bits of the bitmask are ignored.
pub fn decode_row<'a>(types: &[ColumnType], row: &'a SatOpRow) -> Result<Vec<Value<'a>>, RowError> {
    if row.values.len() != types.len() {
        return Err(RowError::Width {
            expected: types.len(),
            got: row.values.len(),
        });
    }
    let expected = bitmask_len(types.len());
    if row.nulls_bitmask.len() != expected {
        return Err(RowError::Bitmask {
            columns: types.len(),
            expected,
            got: row.nulls_bitmask.len(),
        });
    }
    types
        .iter()
        .zip(&row.values)
        .enumerate()
        .map(|(i, (ty, raw))| {
            if is_null(&row.nulls_bitmask, i) {
                Ok(Value::Null)
            } else {
                decode_value(ty, raw).map_err(|source| RowError::Value { column: i, source })
            }
        })
        .collect()
}
