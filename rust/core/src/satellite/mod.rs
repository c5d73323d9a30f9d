//! The Satellite protocol of the electric-sql client (shared/spec/satellite-protocol.md):
//! frames, the RPC envelope, row values and the read path's `SatOpLog` encoder.
//!
//! The message types are generated from `proto/satellite.proto` ([`proto`]); [`dynamic`] gives
//! the same messages with their .proto field names for the Python binding.

mod client_ops;
pub mod dynamic;
mod frame;
mod ids;
mod oplog;
mod row;
mod rpc;
pub(crate) mod values;

/// Types generated from `proto/satellite.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/electric.satellite.rs"));
}

pub use client_ops::{client_row_to_pg_text, client_value_to_pg_text};
pub use frame::{split, Frame, FrameError, MessageType, DEFAULT_MAX_FRAME_LEN};
pub use ids::{
    client_lsn, commit_timestamp_ms, format_tag, parse_client_lsn, parse_server_lsn, parse_tag,
    server_lsn, server_lsn_len, write_server_lsn, LsnError,
};
pub use oplog::{
    encode_oplog, push_ws_header, Bracket, DataFramer, EncodeError, EncodeErrorKind, Op,
    OplogEncoder, TxInfo, HEADER_ROOM,
};
pub use row::{bitmask_len, decode_row, encode_row, is_null, set_null, RowError};
pub use rpc::{RpcMethod, RpcRequestBody, RpcResponseBody};
pub use values::{decode_value, encode_value, encoded_value_len, ColumnType, UnencodableValue};

#[cfg(test)]
mod tests;
