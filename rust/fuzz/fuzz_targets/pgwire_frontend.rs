//! What a Postgres client sends the migrations proxy or the logical publisher: the untagged
//! startup message, then tagged messages, each parsed; replication status messages too.

#![no_main]

use electric_core::pgwire::frontend::{
    parse_sasl_initial_response, FrontendMessage, StartupMessage,
};
use electric_core::pgwire::replication::ReplicationMessage;
use electric_core::pgwire::{split_frame, split_untagged};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    if let Ok(Some(body)) = split_untagged(buf, 1 << 20) {
        let _ = StartupMessage::parse(body);
        buf = &buf[body.len() + 4..];
    }
    while let Ok(Some(frame)) = split_frame(buf, 1 << 20) {
        buf = &buf[frame.wire_len()..];
        let _ = FrontendMessage::parse(frame);
        match frame.tag {
            b'p' => {
                let _ = parse_sasl_initial_response(frame.body);
            }
            b'd' => {
                let _ = ReplicationMessage::parse(frame.body);
            }
            _ => {}
        }
    }
});
