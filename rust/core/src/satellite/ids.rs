//! Positions, tags and timestamps as the protocol spells them (satellite-protocol.md §6.2-§6.4).
//!
//! The two sides use unrelated LSN forms: the server's positions are the decimal ASCII text of
//! a 64-bit Postgres WAL position, the client's are the 4-byte big-endian rowid of its last oplog
//! entry. Each side only parses its own form and echoes the other's bytes.

use thiserror::Error;

use crate::electric::PG_EPOCH_UNIX_US;

/// An LSN that is not in the expected form.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LsnError {
    #[error("server LSN {0:?} is not a decimal integer")]
    NotDecimal(String),
    #[error("client LSN of {0} bytes is longer than 8")]
    TooLong(usize),
}

/// Appends a server position (decimal ASCII) to `out`.
pub fn write_server_lsn(lsn: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut n = lsn;
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// A server position in its wire form, e.g. `b"24151848"`.
pub fn server_lsn(lsn: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    write_server_lsn(lsn, &mut out);
    out
}

/// The length of a server position in its wire form.
pub fn server_lsn_len(lsn: u64) -> usize {
    lsn.checked_ilog10().unwrap_or(0) as usize + 1
}

/// Parses a server position a client echoes (`SatInStartReplicationReq.lsn`,
/// `SatOpLogAck.lsn`): ASCII digits only, within 64 bits. Callers treat an empty LSN (a first
/// sync) before calling this; here it is an error like any other non-number, which the server
/// answers with `MALFORMED_LSN`.
pub fn parse_server_lsn(raw: &[u8]) -> Result<u64, LsnError> {
    let malformed =
        || LsnError::NotDecimal(String::from_utf8_lossy(&raw[..raw.len().min(40)]).into());
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    raw.iter()
        .try_fold(0u64, |acc, &b| {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .ok_or_else(malformed)
}

/// A client position in its wire form: the oplog rowid, 4 bytes big-endian.
pub fn client_lsn(rowid: u32) -> [u8; 4] {
    rowid.to_be_bytes()
}

/// The oplog rowid of a client position: its bytes read big-endian, 0 when empty.
pub fn parse_client_lsn(raw: &[u8]) -> Result<u64, LsnError> {
    if raw.len() > 8 {
        return Err(LsnError::TooLong(raw.len()));
    }
    Ok(raw.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
}

/// A tag, `"<origin>@<ms since the Unix epoch>"`, e.g. `postgres_1@1686827885372`.
pub fn format_tag(origin: &str, unix_ms: i64) -> String {
    format!("{origin}@{unix_ms}")
}

/// The origin and time of a tag; the origin is everything before the last `@`.
pub fn parse_tag(tag: &str) -> Option<(&str, i64)> {
    let (origin, ms) = tag.rsplit_once('@')?;
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((origin, ms.parse().ok()?))
}

/// A Postgres commit time (microseconds since 2000-01-01) as the protocol's commit timestamp
/// (milliseconds since the Unix epoch, floored; times before 1970 become 0).
pub fn commit_timestamp_ms(pg_us: i64) -> u64 {
    u64::try_from((pg_us + PG_EPOCH_UNIX_US).div_euclid(1000)).unwrap_or(0)
}
