//! The Postgres frontend/backend protocol (version 3.0), both directions.
//!
//! [`backend`] holds the messages a server sends (parsed by our client, encoded by our proxy and
//! publisher), [`frontend`] the messages a client sends (encoded by our client, parsed by the
//! proxy and publisher), [`replication`] the streaming-replication messages carried in CopyData.
//! Parsers borrow from the input buffer; encoders append to a caller's `Vec<u8>` and back-patch
//! the length.

pub mod backend;
pub mod frontend;
pub mod replication;

mod cursor;

pub use cursor::Cursor;

use crate::error::WireError;

/// Default upper bound on one message (1 GiB is Postgres's own limit on a field).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

/// One tagged message: its type byte and its body (without tag and length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub tag: u8,
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame took in the input (tag + length + body).
    pub fn wire_len(&self) -> usize {
        self.body.len() + 5
    }
}

/// Splits one tagged message off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole message.
pub fn split_frame(buf: &[u8], max_len: usize) -> Result<Option<Frame<'_>>, WireError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as i64;
    if len < 4 {
        return Err(WireError::BadLength {
            tag: tag as char,
            len,
        });
    }
    let len = len as usize;
    if len - 4 > max_len {
        return Err(WireError::TooLarge {
            tag: tag as char,
            len,
            limit: max_len,
        });
    }
    if buf.len() < len + 1 {
        return Ok(None);
    }
    Ok(Some(Frame {
        tag,
        body: &buf[5..len + 1],
    }))
}

/// Splits one untagged, length-prefixed message (the startup family) off the front of `buf`.
pub fn split_untagged(buf: &[u8], max_len: usize) -> Result<Option<&[u8]>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as i64;
    if len < 8 {
        return Err(WireError::BadLength { tag: '\0', len });
    }
    let len = len as usize;
    if len > max_len {
        return Err(WireError::TooLarge {
            tag: '\0',
            len,
            limit: max_len,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(&buf[4..len]))
}

/// Starts a tagged message in `out`; finish it with [`end_message`].
#[inline]
pub fn begin_message(out: &mut Vec<u8>, tag: u8) -> usize {
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    at
}

/// Back-patches the length of a message started at `at` (the offset of its length field).
#[inline]
pub fn end_message(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a NUL-terminated string.
#[inline]
pub fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_needs_whole_message() {
        let msg = [b'Z', 0, 0, 0, 5, b'I'];
        assert_eq!(split_frame(&msg[..3], DEFAULT_MAX_MESSAGE), Ok(None));
        assert_eq!(split_frame(&msg[..5], DEFAULT_MAX_MESSAGE), Ok(None));
        let f = split_frame(&msg, DEFAULT_MAX_MESSAGE).unwrap().unwrap();
        assert_eq!((f.tag, f.body, f.wire_len()), (b'Z', &b"I"[..], 6));
    }

    #[test]
    fn split_rejects_bad_and_huge_lengths() {
        assert!(matches!(
            split_frame(&[b'Z', 0, 0, 0, 3], DEFAULT_MAX_MESSAGE),
            Err(WireError::BadLength { len: 3, .. })
        ));
        assert!(matches!(
            split_frame(&[b'D', 0xff, 0xff, 0xff, 0xff], DEFAULT_MAX_MESSAGE),
            Err(WireError::BadLength { .. })
        ));
        assert!(matches!(
            split_frame(&[b'D', 0x10, 0, 0, 0], 1024),
            Err(WireError::TooLarge { .. })
        ));
    }
}
