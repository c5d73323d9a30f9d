//! Messages as dynamic values described by the compiled .proto: field names, types and
//! presence come from `proto/satellite.proto` itself. The Python binding turns these into dicts.

use std::sync::OnceLock;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage};

use super::frame::{split, FrameError, MessageType};

/// The reflection library, for callers that walk the messages.
pub use prost_reflect;

/// The package of every message.
pub const PACKAGE: &str = "Electric.Satellite";

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/satellite.fds.bin"));

/// The compiled `proto/satellite.proto`.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).expect("valid descriptor set"))
}

/// A message by its name in the package, e.g. `SatAuthReq` or `SatOpMigrate.Table`.
pub fn message_descriptor(name: &str) -> Result<MessageDescriptor, FrameError> {
    descriptor_pool()
        .get_message_by_name(&format!("{PACKAGE}.{name}"))
        .ok_or_else(|| FrameError::UnknownMessage(name.to_owned()))
}

/// Decodes a protobuf body as the message `descriptor` describes.
pub fn decode_dynamic(
    descriptor: MessageDescriptor,
    body: &[u8],
) -> Result<DynamicMessage, FrameError> {
    let name = descriptor.name().to_owned();
    DynamicMessage::decode(descriptor, body).map_err(|e| FrameError::malformed(&name, e))
}

/// Decodes a whole frame no longer than `max_len` bytes.
pub fn decode_frame_dynamic(
    frame: &[u8],
    max_len: usize,
) -> Result<(MessageType, DynamicMessage), FrameError> {
    let (ty, body) = split(frame, max_len)?;
    Ok((ty, decode_dynamic(message_descriptor(ty.name())?, body)?))
}

/// A frame of `message`, which must be of the message type `ty`.
pub fn encode_frame_dynamic(
    ty: MessageType,
    message: &DynamicMessage,
) -> Result<Vec<u8>, FrameError> {
    if message.descriptor().name() != ty.name() {
        return Err(FrameError::UnknownMessage(format!(
            "{} as a frame of type {} ({})",
            message.descriptor().name(),
            ty.id(),
            ty.name()
        )));
    }
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(ty.id());
    message.encode_raw(&mut out);
    Ok(out)
}

/// The protobuf encoding of `message`.
pub fn encode_dynamic(message: &DynamicMessage) -> Vec<u8> {
    message.encode_to_vec()
}
