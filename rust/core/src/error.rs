//! Errors of the codecs, as values callers can match on.

use thiserror::Error;

/// A framing or message-level error in the Postgres wire protocol.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("message {tag:?} declares length {len}, below the minimum of 4")]
    BadLength { tag: char, len: i64 },
    #[error("message {tag:?} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { tag: char, len: usize, limit: usize },
    #[error("unknown message tag {tag:?}")]
    UnknownTag { tag: char },
    #[error("message {tag:?} truncated at offset {offset}: {what}")]
    Truncated {
        tag: char,
        offset: usize,
        what: &'static str,
    },
    #[error("message {tag:?} has {extra} unexpected trailing bytes")]
    Trailing { tag: char, extra: usize },
    #[error("message {tag:?} at offset {offset}: invalid UTF-8 in {what}")]
    Utf8 {
        tag: char,
        offset: usize,
        what: &'static str,
    },
    #[error("message {tag:?}: {what}")]
    Invalid { tag: char, what: String },
}

/// A value that does not parse as its declared Postgres type.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid {type_name} value {text:?}: {reason}")]
pub struct DecodeError {
    pub type_name: &'static str,
    pub text: String,
    pub reason: &'static str,
}

impl DecodeError {
    pub fn new(type_name: &'static str, raw: &[u8], reason: &'static str) -> Self {
        let shown = &raw[..raw.len().min(64)];
        DecodeError {
            type_name,
            text: String::from_utf8_lossy(shown).into_owned(),
            reason,
        }
    }
}
