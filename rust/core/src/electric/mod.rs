//! Electric's bookkeeping folded into decoded transactions: tags from shadow rows, the writer
//! and time of client writes, captured DDL, insertion-point markers and referenced records.

mod fold;
mod tags;

pub use fold::{
    fold, Ddl, ElectricChange, ElectricTransaction, FoldError, FoldErrorKind, ReferencedRecord,
    Tags, ELECTRIC_SCHEMA, FK_CHAIN_TOUCH,
};
pub use tags::{parse_tags, satellite_tags, Tag, TagError, PG_EPOCH_UNIX_US, POSTGRES_ORIGIN};

#[cfg(test)]
mod tests;
