//! One column value a client sends in a SatOpRow, for the column type the first byte picks (an
//! enum when it picks no built-in type): decoded and turned into Postgres text input.

#![no_main]

use std::sync::Arc;

use electric_core::satellite::{client_value_to_pg_text, decode_value, ColumnType};
use electric_fuzz::type_oid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, raw)) = data.split_first() else {
        return;
    };
    let ty = ColumnType::from_oid(type_oid(choice))
        .unwrap_or_else(|| ColumnType::Enum(Arc::from(vec!["a".to_owned(), "é".to_owned()])));
    let _ = decode_value(&ty, raw);
    if let Ok(text) = client_value_to_pg_text(&ty, raw) {
        assert!(!text.contains('\0'));
    }
});
