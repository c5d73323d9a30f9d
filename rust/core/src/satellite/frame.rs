//! Frames: one WebSocket binary message holds one byte of message type id followed by the
//! protobuf encoding of the message (satellite-protocol.md §1, §2).

use prost::Message as _;
use thiserror::Error;

use super::proto::*;

/// Frames longer than this are refused unless the caller sets its own limit.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// A frame that cannot be decoded, or a message name that does not exist.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("empty frame: no message type byte")]
    Empty,
    #[error("unknown message type byte {0}")]
    UnknownType(u8),
    #[error("frame of {len} bytes is over the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    /// A truncated or otherwise malformed protobuf body; `reason` says where.
    #[error("malformed {message}: {reason}")]
    Malformed { message: String, reason: String },
    #[error("unknown message {0:?}")]
    UnknownMessage(String),
    /// An RPC request for a method the protocol does not have.
    #[error("unknown RPC method {0:?}")]
    UnknownMethod(String),
    /// An RPC response carrying neither a message nor an error.
    #[error("RPC response to {method:?} has no result")]
    NoResult { method: String },
}

impl FrameError {
    pub(crate) fn malformed(message: &str, e: prost::DecodeError) -> FrameError {
        FrameError::Malformed {
            message: message.to_owned(),
            reason: e.to_string(),
        }
    }
}

/// Decodes a protobuf message of the protocol, naming it in the error.
pub(crate) fn decode_message<M: prost::Message + prost::Name + Default>(
    body: &[u8],
) -> Result<M, FrameError> {
    M::decode(body).map_err(|e| FrameError::malformed(M::NAME, e))
}

macro_rules! frames {
    ($($variant:ident($message:ident) = $id:literal,)*) => {
        /// The messages that travel as frames of their own, by type id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum MessageType {
            $($variant = $id,)*
        }

        impl MessageType {
            pub const ALL: &'static [MessageType] = &[$(MessageType::$variant,)*];

            pub fn from_id(id: u8) -> Option<MessageType> {
                match id {
                    $($id => Some(MessageType::$variant),)*
                    _ => None,
                }
            }

            pub fn id(self) -> u8 {
                self as u8
            }

            /// The message name in the .proto, e.g. `SatOpLog`.
            pub fn name(self) -> &'static str {
                match self {
                    $(MessageType::$variant => stringify!($message),)*
                }
            }

            pub fn from_name(name: &str) -> Option<MessageType> {
                match name {
                    $(stringify!($message) => Some(MessageType::$variant),)*
                    _ => None,
                }
            }
        }

        /// A decoded frame.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Frame {
            $($variant($message),)*
        }

        impl Frame {
            pub fn message_type(&self) -> MessageType {
                match self {
                    $(Frame::$variant(_) => MessageType::$variant,)*
                }
            }

            /// Decodes a whole frame no longer than `max_len` bytes.
            pub fn decode(frame: &[u8], max_len: usize) -> Result<Frame, FrameError> {
                let (ty, body) = split(frame, max_len)?;
                Ok(match ty {
                    $(MessageType::$variant => Frame::$variant(decode_message(body)?),)*
                })
            }

            /// The frame's length in bytes, type byte included.
            pub fn encoded_len(&self) -> usize {
                1 + match self {
                    $(Frame::$variant(m) => m.encoded_len(),)*
                }
            }

            /// Appends the frame to `out`.
            pub fn encode_into(&self, out: &mut Vec<u8>) {
                out.reserve(self.encoded_len());
                out.push(self.message_type().id());
                match self {
                    $(Frame::$variant(m) => m.encode_raw(out),)*
                }
            }
        }

        $(
            impl From<$message> for Frame {
                fn from(m: $message) -> Frame {
                    Frame::$variant(m)
                }
            }
        )*
    };
}

frames! {
    ErrorResp(SatErrorResp) = 0,
    OpLog(SatOpLog) = 9,
    Relation(SatRelation) = 10,
    SubsDataError(SatSubsDataError) = 14,
    SubsDataBegin(SatSubsDataBegin) = 15,
    SubsDataEnd(SatSubsDataEnd) = 16,
    ShapeDataBegin(SatShapeDataBegin) = 17,
    ShapeDataEnd(SatShapeDataEnd) = 18,
    RpcRequest(SatRpcRequest) = 21,
    RpcResponse(SatRpcResponse) = 22,
    OpLogAck(SatOpLogAck) = 23,
    UnsubsDataBegin(SatUnsubsDataBegin) = 24,
    UnsubsDataEnd(SatUnsubsDataEnd) = 25,
}

impl Frame {
    /// The frame as a new buffer of exactly its length.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }
}

/// Checks a frame's length and type byte, returning the type and the protobuf body.
pub fn split(frame: &[u8], max_len: usize) -> Result<(MessageType, &[u8]), FrameError> {
    if frame.len() > max_len {
        return Err(FrameError::TooLarge {
            len: frame.len(),
            limit: max_len,
        });
    }
    let (&id, body) = frame.split_first().ok_or(FrameError::Empty)?;
    let ty = MessageType::from_id(id).ok_or(FrameError::UnknownType(id))?;
    Ok((ty, body))
}
