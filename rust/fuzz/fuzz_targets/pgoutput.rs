//! pgoutput from a replication slot: each piece is one CopyData payload (XLogData with its
//! header when it starts with `w`, otherwise a bare pgoutput message), decoded by one stateful
//! decoder as a stream; every transaction it completes goes through the Electric fold. A
//! message that parses must encode to bytes that parse to the same message.

#![no_main]

use electric_core::electric::fold;
use electric_core::pgoutput::{Decoded, Decoder, Message};
use electric_core::pgwire::replication::ReplicationMessage;
use electric_fuzz::pieces;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for (lsn, payload) in pieces(data).enumerate() {
        for streaming in [false, true] {
            if let Ok(message) = Message::parse(payload, streaming) {
                let mut encoded = Vec::new();
                message.encode_into(&mut encoded);
                let again = Message::parse(&encoded, streaming).expect("our encoding parses");
                assert_eq!(again, message);
            }
        }
        let _ = ReplicationMessage::parse(payload);
        let _ = if payload.first() == Some(&b'w') {
            decoder.decode_payload(payload, &mut out)
        } else {
            decoder.decode_message(lsn as u64, payload, &mut out)
        };
    }
    for decoded in out {
        if let Decoded::Transaction(txn) = decoded {
            let _ = fold(txn);
        }
    }
});
