//! A WebSocket message from a Satellite client: the frame decoded both ways (typed and
//! dynamic, as the Python binding does), RPC bodies decoded by method, and the rows of a
//! SatOpLog checked against columns of the types the last byte picks. A frame that decodes
//! must encode to bytes that decode and encode to the same bytes.

#![no_main]

use electric_core::satellite::dynamic::{decode_frame_dynamic, encode_frame_dynamic};
use electric_core::satellite::proto::sat_trans_op::Op;
use electric_core::satellite::{client_row_to_pg_text, decode_row, ColumnType, Frame};
use electric_fuzz::type_oid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((ty, message)) = decode_frame_dynamic(data, 1 << 20) {
        let encoded = encode_frame_dynamic(ty, &message).expect("a decoded message encodes");
        let (ty2, again) = decode_frame_dynamic(&encoded, 1 << 21).expect("our encoding decodes");
        // Not `again == message`: a proto3 field sent with its default value is set in one and
        // unset in the other, with the same meaning.
        assert_eq!(ty2, ty);
        assert_eq!(
            encode_frame_dynamic(ty2, &again).as_deref(),
            Ok(&encoded[..])
        );
    }
    let Ok(frame) = Frame::decode(data, 1 << 20) else {
        return;
    };
    let encoded = frame.encode();
    assert_eq!(Frame::decode(&encoded, 1 << 21).as_ref(), Ok(&frame));
    let types: Vec<ColumnType> = data
        .iter()
        .rev()
        .take(4)
        .filter_map(|&b| ColumnType::from_oid(type_oid(b)))
        .collect();
    match &frame {
        Frame::RpcRequest(request) => {
            let _ = request.decode_body();
        }
        Frame::RpcResponse(response) => {
            let _ = response.decode_body();
        }
        Frame::OpLog(log) => {
            for op in log.ops.iter().filter_map(|op| op.op.as_ref()) {
                let rows = match op {
                    Op::Insert(o) => [o.row_data.as_ref(), None],
                    Op::Update(o) => [o.row_data.as_ref(), o.old_row_data.as_ref()],
                    Op::Delete(o) => [o.old_row_data.as_ref(), None],
                    Op::Compensation(o) => [o.pk_data.as_ref(), None],
                    Op::Gone(o) => [o.pk_data.as_ref(), None],
                    _ => [None, None],
                };
                for row in rows.into_iter().flatten() {
                    let _ = decode_row(&types, row);
                    let _ = client_row_to_pg_text(&types, &row.nulls_bitmask, &row.values);
                }
            }
        }
        _ => {}
    }
});
