//! Streaming-replication messages carried inside CopyData.

use super::Cursor;
use crate::error::WireError;

pub const XLOG_DATA: u8 = b'w';
pub const PRIMARY_KEEPALIVE: u8 = b'k';
pub const STANDBY_STATUS_UPDATE: u8 = b'r';
pub const HOT_STANDBY_FEEDBACK: u8 = b'h';

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage<'a> {
    XLogData {
        wal_start: u64,
        wal_end: u64,
        send_time: i64,
        data: &'a [u8],
    },
    PrimaryKeepalive {
        wal_end: u64,
        send_time: i64,
        reply_requested: bool,
    },
    StandbyStatusUpdate {
        write: u64,
        flush: u64,
        apply: u64,
        send_time: i64,
        reply_requested: bool,
    },
    HotStandbyFeedback {
        send_time: i64,
        xmin: u32,
        epoch: u32,
    },
}

impl<'a> ReplicationMessage<'a> {
    /// Parses the payload of one CopyData message of a replication stream.
    pub fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        let Some((&kind, body)) = payload.split_first() else {
            return Err(WireError::Truncated {
                tag: 'd',
                offset: 0,
                what: "replication message kind",
            });
        };
        let mut c = Cursor::new(kind, body);
        let msg = match kind {
            XLOG_DATA => ReplicationMessage::XLogData {
                wal_start: c.u64("wal start")?,
                wal_end: c.u64("wal end")?,
                send_time: c.i64("send time")?,
                data: c.rest(),
            },
            PRIMARY_KEEPALIVE => ReplicationMessage::PrimaryKeepalive {
                wal_end: c.u64("wal end")?,
                send_time: c.i64("send time")?,
                reply_requested: c.u8("reply flag")? != 0,
            },
            STANDBY_STATUS_UPDATE => ReplicationMessage::StandbyStatusUpdate {
                write: c.u64("write lsn")?,
                flush: c.u64("flush lsn")?,
                apply: c.u64("apply lsn")?,
                send_time: c.i64("send time")?,
                reply_requested: c.u8("reply flag")? != 0,
            },
            HOT_STANDBY_FEEDBACK => {
                let m = ReplicationMessage::HotStandbyFeedback {
                    send_time: c.i64("send time")?,
                    xmin: c.u32("xmin")?,
                    epoch: c.u32("epoch")?,
                };
                // Catalog xmin and its epoch follow on newer servers; not needed by us.
                c.rest();
                m
            }
            other => return Err(WireError::UnknownTag { tag: other as char }),
        };
        c.finish()?;
        Ok(msg)
    }

    /// Appends this message's CopyData payload (without the CopyData framing) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match *self {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                send_time,
                data,
            } => {
                out.push(XLOG_DATA);
                out.extend_from_slice(&wal_start.to_be_bytes());
                out.extend_from_slice(&wal_end.to_be_bytes());
                out.extend_from_slice(&send_time.to_be_bytes());
                out.extend_from_slice(data);
            }
            ReplicationMessage::PrimaryKeepalive {
                wal_end,
                send_time,
                reply_requested,
            } => {
                out.push(PRIMARY_KEEPALIVE);
                out.extend_from_slice(&wal_end.to_be_bytes());
                out.extend_from_slice(&send_time.to_be_bytes());
                out.push(reply_requested as u8);
            }
            ReplicationMessage::StandbyStatusUpdate {
                write,
                flush,
                apply,
                send_time,
                reply_requested,
            } => {
                out.push(STANDBY_STATUS_UPDATE);
                out.extend_from_slice(&write.to_be_bytes());
                out.extend_from_slice(&flush.to_be_bytes());
                out.extend_from_slice(&apply.to_be_bytes());
                out.extend_from_slice(&send_time.to_be_bytes());
                out.push(reply_requested as u8);
            }
            ReplicationMessage::HotStandbyFeedback {
                send_time,
                xmin,
                epoch,
            } => {
                out.push(HOT_STANDBY_FEEDBACK);
                out.extend_from_slice(&send_time.to_be_bytes());
                out.extend_from_slice(&xmin.to_be_bytes());
                out.extend_from_slice(&epoch.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let msgs = [
            ReplicationMessage::XLogData {
                wal_start: 0x16B3748,
                wal_end: 0x16B3748,
                send_time: 1,
                data: b"B...",
            },
            ReplicationMessage::PrimaryKeepalive {
                wal_end: 42,
                send_time: -5,
                reply_requested: true,
            },
            ReplicationMessage::StandbyStatusUpdate {
                write: 1,
                flush: 2,
                apply: 3,
                send_time: 4,
                reply_requested: false,
            },
            ReplicationMessage::HotStandbyFeedback {
                send_time: 9,
                xmin: 7,
                epoch: 0,
            },
        ];
        for m in msgs {
            let mut b = Vec::new();
            m.encode_into(&mut b);
            assert_eq!(ReplicationMessage::parse(&b).unwrap(), m);
        }
    }

    #[test]
    fn truncated_is_error() {
        assert!(ReplicationMessage::parse(b"").is_err());
        assert!(ReplicationMessage::parse(b"k\0\0").is_err());
        assert!(ReplicationMessage::parse(b"z").is_err());
    }
}
