//! Errors of the pgoutput codec and of the stream decoder.

use std::fmt;

use thiserror::Error;

use crate::error::{DecodeError, WireError};

/// A pgoutput message that does not parse. `offset` counts from the message's tag byte.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PgOutputError {
    #[error("empty pgoutput message")]
    Empty,
    #[error("unknown pgoutput message tag {tag:?}")]
    UnknownTag { tag: char },
    #[error("pgoutput message {tag:?} truncated at offset {offset}: {what}")]
    Truncated {
        tag: char,
        offset: usize,
        what: &'static str,
    },
    #[error("pgoutput message {tag:?} has {extra} unexpected trailing bytes at offset {offset}")]
    Trailing {
        tag: char,
        offset: usize,
        extra: usize,
    },
    #[error("pgoutput message {tag:?} at offset {offset}: invalid UTF-8 in {what}")]
    Utf8 {
        tag: char,
        offset: usize,
        what: &'static str,
    },
    #[error("pgoutput message {tag:?} at offset {offset}: {what}")]
    Invalid {
        tag: char,
        offset: usize,
        what: String,
    },
}

/// An LSN in Postgres's `X/X` notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why the stream decoder rejected a message.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum StreamErrorKind {
    #[error("{0}")]
    Message(#[from] PgOutputError),
    #[error("bad replication message: {0}")]
    Replication(WireError),
    #[error("unexpected replication message {0:?} (expected XLogData or a keepalive)")]
    UnexpectedReplicationMessage(char),
    /// A message that is well formed but not allowed where it came (e.g. an Insert outside a
    /// transaction, a Begin inside one).
    #[error("{0}")]
    Sequence(String),
    #[error("change for relation {0} before any Relation message describing it")]
    UnknownRelation(u32),
    #[error("tuple of {got} columns for relation {schema}.{table} of {expected} columns")]
    ColumnCount {
        schema: String,
        table: String,
        expected: usize,
        got: usize,
    },
    #[error("{0}")]
    Value(Box<BadValue>),
}

/// A column value that does not parse as the column's type.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("column {column:?} of {schema}.{table}: {error}")]
pub struct BadValue {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub error: DecodeError,
}

/// A stream decoding error, with the LSN of the XLogData that carried the offending message
/// (`None` when the payload was not XLogData at all).
#[derive(Debug, Error, Clone, PartialEq)]
pub struct StreamError {
    pub lsn: Option<u64>,
    pub kind: StreamErrorKind,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lsn {
            Some(lsn) => write!(f, "pgoutput at LSN {}: {}", Lsn(lsn), self.kind),
            None => write!(f, "replication stream: {}", self.kind),
        }
    }
}
