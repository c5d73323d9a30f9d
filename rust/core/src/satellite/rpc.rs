//! The RPC layer: requests and responses carry their method's message as bytes
//! (satellite-protocol.md §3).

use super::frame::{decode_message, FrameError};
use super::proto::sat_rpc_response::Result as RpcResult;
use super::proto::*;

/// The RPC methods of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcMethod {
    Authenticate,
    StartReplication,
    StopReplication,
    Subscribe,
    Unsubscribe,
}

impl RpcMethod {
    pub const ALL: [RpcMethod; 5] = [
        RpcMethod::Authenticate,
        RpcMethod::StartReplication,
        RpcMethod::StopReplication,
        RpcMethod::Subscribe,
        RpcMethod::Unsubscribe,
    ];

    /// The method string on the wire, e.g. `startReplication`.
    pub fn as_str(self) -> &'static str {
        match self {
            RpcMethod::Authenticate => "authenticate",
            RpcMethod::StartReplication => "startReplication",
            RpcMethod::StopReplication => "stopReplication",
            RpcMethod::Subscribe => "subscribe",
            RpcMethod::Unsubscribe => "unsubscribe",
        }
    }

    pub fn parse(method: &str) -> Option<RpcMethod> {
        RpcMethod::ALL.into_iter().find(|m| m.as_str() == method)
    }

    /// The name of the request message, e.g. `SatAuthReq`.
    pub fn request_name(self) -> &'static str {
        match self {
            RpcMethod::Authenticate => "SatAuthReq",
            RpcMethod::StartReplication => "SatInStartReplicationReq",
            RpcMethod::StopReplication => "SatInStopReplicationReq",
            RpcMethod::Subscribe => "SatSubsReq",
            RpcMethod::Unsubscribe => "SatUnsubsReq",
        }
    }

    /// The name of the response message, e.g. `SatAuthResp`.
    pub fn response_name(self) -> &'static str {
        match self {
            RpcMethod::Authenticate => "SatAuthResp",
            RpcMethod::StartReplication => "SatInStartReplicationResp",
            RpcMethod::StopReplication => "SatInStopReplicationResp",
            RpcMethod::Subscribe => "SatSubsResp",
            RpcMethod::Unsubscribe => "SatUnsubsResp",
        }
    }
}

/// The decoded message of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcRequestBody {
    Authenticate(SatAuthReq),
    StartReplication(SatInStartReplicationReq),
    StopReplication(SatInStopReplicationReq),
    Subscribe(SatSubsReq),
    Unsubscribe(SatUnsubsReq),
}

/// The decoded message of a successful response.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcResponseBody {
    Authenticate(SatAuthResp),
    StartReplication(SatInStartReplicationResp),
    StopReplication(SatInStopReplicationResp),
    Subscribe(SatSubsResp),
    Unsubscribe(SatUnsubsResp),
}

impl SatRpcRequest {
    /// A call of `method` with its encoded request.
    pub fn call(method: RpcMethod, request_id: u32, request: &impl prost::Message) -> Self {
        SatRpcRequest {
            method: method.as_str().to_owned(),
            request_id,
            message: request.encode_to_vec(),
        }
    }

    /// Decodes the request by its method: [`FrameError::UnknownMethod`] for a method the
    /// protocol does not have, [`FrameError::Malformed`] for bytes that are not its request.
    pub fn decode_body(&self) -> Result<RpcRequestBody, FrameError> {
        let method = RpcMethod::parse(&self.method)
            .ok_or_else(|| FrameError::UnknownMethod(self.method.clone()))?;
        let body = &self.message[..];
        Ok(match method {
            RpcMethod::Authenticate => RpcRequestBody::Authenticate(decode_message(body)?),
            RpcMethod::StartReplication => RpcRequestBody::StartReplication(decode_message(body)?),
            RpcMethod::StopReplication => RpcRequestBody::StopReplication(decode_message(body)?),
            RpcMethod::Subscribe => RpcRequestBody::Subscribe(decode_message(body)?),
            RpcMethod::Unsubscribe => RpcRequestBody::Unsubscribe(decode_message(body)?),
        })
    }
}

impl SatRpcResponse {
    /// The success answer to a request: `message` is present even when `response` encodes to
    /// zero bytes, as the client requires.
    pub fn ok(request: &SatRpcRequest, response: &impl prost::Message) -> Self {
        SatRpcResponse {
            method: request.method.clone(),
            request_id: request.request_id,
            result: Some(RpcResult::Message(response.encode_to_vec())),
        }
    }

    /// The failure answer to a request.
    pub fn error(request: &SatRpcRequest, error: SatErrorResp) -> Self {
        SatRpcResponse {
            method: request.method.clone(),
            request_id: request.request_id,
            result: Some(RpcResult::Error(error)),
        }
    }

    /// Decodes the response of a call we made: `Ok(Err(e))` when the peer answered with an
    /// error.
    pub fn decode_body(&self) -> Result<Result<RpcResponseBody, &SatErrorResp>, FrameError> {
        let method = RpcMethod::parse(&self.method)
            .ok_or_else(|| FrameError::UnknownMethod(self.method.clone()))?;
        let body = match &self.result {
            Some(RpcResult::Message(body)) => &body[..],
            Some(RpcResult::Error(e)) => return Ok(Err(e)),
            None => {
                return Err(FrameError::NoResult {
                    method: self.method.clone(),
                })
            }
        };
        Ok(Ok(match method {
            RpcMethod::Authenticate => RpcResponseBody::Authenticate(decode_message(body)?),
            RpcMethod::StartReplication => RpcResponseBody::StartReplication(decode_message(body)?),
            RpcMethod::StopReplication => RpcResponseBody::StopReplication(decode_message(body)?),
            RpcMethod::Subscribe => RpcResponseBody::Subscribe(decode_message(body)?),
            RpcMethod::Unsubscribe => RpcResponseBody::Unsubscribe(decode_message(body)?),
        }))
    }
}

impl SatErrorResp {
    /// An error of `code` with neither LSN nor message.
    pub fn of(code: sat_error_resp::ErrorCode) -> Self {
        SatErrorResp {
            error_type: code as i32,
            lsn: None,
            message: None,
        }
    }
}
