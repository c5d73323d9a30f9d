//! What a Postgres server (or something pretending to be one) sends the service: messages cut
//! from a byte stream, parsed, data rows decoded with the column types the first byte picks.

#![no_main]

use electric_core::pgwire::backend::BackendMessage;
use electric_core::pgwire::split_frame;
use electric_core::value::{decode_text, Kind};
use electric_fuzz::type_oid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&types, mut buf)) = data.split_first() else {
        return;
    };
    let kinds: Vec<Kind> = (0..types % 5)
        .map(|i| Kind::of(type_oid(types >> i)))
        .collect();
    while let Ok(Some(frame)) = split_frame(buf, 1 << 20) {
        buf = &buf[frame.wire_len()..];
        let Ok(message) = BackendMessage::parse(frame) else {
            continue;
        };
        if let BackendMessage::DataRow(row) = message {
            for (i, value) in row.iter().enumerate() {
                let Ok(Some(raw)) = value else { break };
                let _ = decode_text(kinds.get(i).copied().unwrap_or(Kind::Text), raw);
            }
            for kind in &kinds {
                let _ = decode_text(*kind, row.values);
            }
        }
    }
});
