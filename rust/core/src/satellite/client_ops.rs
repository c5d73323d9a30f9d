//! The write path's row conversion: a `SatOpRow` a client sent, checked against the columns of
//! its relation and turned into Postgres text input (server-behaviour.md §7, satellite-protocol.md
//! §6.5-§6.6).
//!
//! Each value is decoded with [`decode_value`] (the legacy server's validation) and written back
//! in a canonical text Postgres accepts for the column's type: bytea as `\x` hex, uuid in lower
//! case, timestamptz with `+00`, floats in Postgres's shortest form. Text, JSON and enum labels
//! pass through unchanged, except that a NUL character, which Postgres text cannot hold, is
//! refused here rather than failing the whole Postgres transaction later.

use super::row::{bitmask_len, is_null, RowError};
use super::values::{decode_value, write_text, ColumnType};
use crate::error::DecodeError;
use crate::value::Value;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The Postgres text input of a non-NULL value a client sent for a column of type `ty`.
pub fn client_value_to_pg_text(ty: &ColumnType, raw: &[u8]) -> Result<String, DecodeError> {
    let value = decode_value(ty, raw)?;
    let mut out = Vec::with_capacity(raw.len() + 4);
    match &value {
        Value::Text(s) | Value::Json(s) => {
            if s.contains('\0') {
                return Err(DecodeError::new(
                    ty.pg_name(),
                    raw,
                    "Postgres text cannot contain NUL",
                ));
            }
            return Ok(s.to_string());
        }
        Value::Bytes(b) => {
            out.extend_from_slice(b"\\x");
            for byte in b {
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 15) as usize]);
            }
        }
        Value::TimestampTz(..) => {
            write_text(&value, false, &mut out).expect("a decoded timestamptz has a text");
            out.pop(); // the `Z`
            out.extend_from_slice(b"+00");
        }
        other => write_text(other, matches!(ty, ColumnType::Float4), &mut out)
            .expect("every decoded client value has a text"),
    }
    Ok(String::from_utf8(out).expect("value text is ASCII"))
}

/// Decodes, validates and converts a row a client sent for a relation with columns of `types`:
/// one entry per column, `None` for NULL. Whether a NULL is allowed is the caller's check.
pub fn client_row_to_pg_text<V: AsRef<[u8]>>(
    types: &[ColumnType],
    nulls_bitmask: &[u8],
    values: &[V],
) -> Result<Vec<Option<String>>, RowError> {
    if values.len() != types.len() {
        return Err(RowError::Width {
            expected: types.len(),
            got: values.len(),
        });
    }
    let expected = bitmask_len(types.len());
    if nulls_bitmask.len() != expected {
        return Err(RowError::Bitmask {
            columns: types.len(),
            expected,
            got: nulls_bitmask.len(),
        });
    }
    types
        .iter()
        .zip(values)
        .enumerate()
        .map(|(i, (ty, raw))| {
            if is_null(nulls_bitmask, i) {
                Ok(None)
            } else {
                client_value_to_pg_text(ty, raw.as_ref())
                    .map(Some)
                    .map_err(|source| RowError::Value { column: i, source })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn text(ty: ColumnType, raw: &[u8]) -> Result<String, DecodeError> {
        client_value_to_pg_text(&ty, raw)
    }

    #[test]
    fn values_become_postgres_input() {
        assert_eq!(text(ColumnType::Bool, b"t").unwrap(), "t");
        assert_eq!(text(ColumnType::Int8, b"-42").unwrap(), "-42");
        assert_eq!(text(ColumnType::Float8, b"1e+21").unwrap(), "1e+21");
        assert_eq!(text(ColumnType::Float8, b"-Infinity").unwrap(), "-Infinity");
        assert_eq!(text(ColumnType::Float4, b"0.1").unwrap(), "0.1");
        assert_eq!(text(ColumnType::Float8, b"nan").unwrap(), "NaN");
        assert_eq!(
            text(ColumnType::Uuid, b"0E2B5E5C-8B0E-4D4E-9F4A-5B0C6D7E8F90").unwrap(),
            "0e2b5e5c-8b0e-4d4e-9f4a-5b0c6d7e8f90"
        );
        assert_eq!(text(ColumnType::Bytea, b"\x00\xffa").unwrap(), "\\x00ff61");
        assert_eq!(text(ColumnType::Bytea, b"").unwrap(), "\\x");
        assert_eq!(
            text(ColumnType::TimestampTz, b"2023-06-06 00:00:00.120Z").unwrap(),
            "2023-06-06 00:00:00.12+00"
        );
        assert_eq!(
            text(ColumnType::Timestamp, b"2023-09-21T14:39:53.001").unwrap(),
            "2023-09-21 14:39:53.001"
        );
        assert_eq!(text(ColumnType::Text, b"it's").unwrap(), "it's");
        assert_eq!(
            text(ColumnType::Jsonb, b"{\"a\": 1}").unwrap(),
            "{\"a\": 1}"
        );
        let colour = ColumnType::Enum(Arc::from(vec!["red".to_string()]));
        assert_eq!(text(colour.clone(), b"red").unwrap(), "red");
        assert!(text(colour, b"blue").is_err());
    }

    #[test]
    fn invalid_values_are_refused() {
        assert!(text(ColumnType::Int2, b"40000").is_err());
        assert!(text(ColumnType::Bool, b"true").is_err());
        assert!(text(ColumnType::Uuid, b"nope").is_err());
        assert!(text(ColumnType::Text, b"a\0b").is_err());
        assert!(text(ColumnType::TimestampTz, b"2023-06-06 00:00:00+01").is_err());
        assert!(text(ColumnType::Date, b"2023-02-30").is_err());
    }

    #[test]
    fn rows_check_width_bitmask_and_nulls() {
        let types = [ColumnType::Int4, ColumnType::Text, ColumnType::Text];
        let values: [&[u8]; 3] = [b"1", b"", b"x"];
        assert_eq!(
            client_row_to_pg_text(&types, &[0x40], &values).unwrap(),
            vec![Some("1".into()), None, Some("x".into())]
        );
        assert_eq!(
            client_row_to_pg_text(&types, &[0x00], &values).unwrap(),
            vec![Some("1".into()), Some(String::new()), Some("x".into())]
        );
        assert!(matches!(
            client_row_to_pg_text(&types, &[], &values),
            Err(RowError::Bitmask { .. })
        ));
        assert!(matches!(
            client_row_to_pg_text(&types, &[0], &values[..2]),
            Err(RowError::Width { .. })
        ));
        let bad: [&[u8]; 3] = [b"x", b"", b""];
        assert!(matches!(
            client_row_to_pg_text(&types, &[0], &bad),
            Err(RowError::Value { column: 0, .. })
        ));
    }
}
