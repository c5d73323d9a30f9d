//! The pgoutput logical replication protocol (versions 1 and 2): a codec for every message
//! ([`Message::parse`], [`Message::encode_into`]) and a stateful [`Decoder`] that turns the
//! CopyData payloads of a replication stream into committed transactions with typed rows.
//!
//! Message formats: <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.

mod decoder;
mod error;
mod message;
pub mod publish;
mod reader;
mod tuple;

pub use decoder::{
    Change, Column, Datum, Decoded, Decoder, LogicalMessage, OldRow, Relation, Row, Transaction,
    TypeInfo,
};
pub use error::{BadValue, Lsn, PgOutputError, StreamError, StreamErrorKind};
pub use message::{
    column_flags, message_flags, part, tag, truncate, BeginBody, CommitBody, DeleteBody,
    InsertBody, LogicalMessageBody, Message, OldTuple, OriginBody, RelationBody, RelationColumn,
    StreamAbortBody, StreamCommitBody, StreamStartBody, TruncateBody, TypeBody, UpdateBody,
};
pub use tuple::{kind as tuple_kind, TupleData, TupleIter, TupleValue};

#[cfg(test)]
mod tests;
