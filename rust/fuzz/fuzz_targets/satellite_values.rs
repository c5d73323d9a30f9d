//! One column value a client sends in a SatOpRow, for the column type the first byte picks (an
//! enum when it picks no built-in type): decoded and turned into Postgres text input. The same
//! bytes as the other small things a client sends or Postgres stores for it: LSNs and tags.

#![no_main]

use std::sync::Arc;

use electric_core::electric::{parse_tags, satellite_tags, Tag};
use electric_core::satellite::{
    client_value_to_pg_text, decode_value, parse_client_lsn, parse_server_lsn, parse_tag,
    server_lsn, ColumnType,
};
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
    if let Ok(lsn) = parse_server_lsn(raw) {
        assert_eq!(parse_server_lsn(&server_lsn(lsn)), Ok(lsn));
    }
    let _ = parse_client_lsn(raw);
    let text = String::from_utf8_lossy(raw);
    let _ = parse_tag(&text);
    if let Ok(tag) = Tag::parse(&text) {
        let _ = (tag.unix_ms(), tag.pg_us(), tag.origin());
    }
    if let Ok(tags) = parse_tags(&text) {
        for tag in tags {
            let _ = (tag.unix_ms(), tag.pg_us());
        }
    }
    let _ = satellite_tags(&text);
});
