//! Bounds-checked reading of a message body.

use crate::error::WireError;

/// Reads big-endian integers and C strings from a message body, reporting truncation with the
/// message tag and offset instead of panicking.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    tag: u8,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(tag: u8, buf: &'a [u8]) -> Self {
        Cursor { tag, buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn truncated(&self, what: &'static str) -> WireError {
        WireError::Truncated {
            tag: self.tag as char,
            offset: self.pos,
            what,
        }
    }

    pub fn invalid(&self, what: impl Into<String>) -> WireError {
        WireError::Invalid {
            tag: self.tag as char,
            what: what.into(),
        }
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(self.truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn i16(&mut self, what: &'static str) -> Result<i16, WireError> {
        let b = self.bytes(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(self.i32(what)? as u32)
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, WireError> {
        let b = self.bytes(8, what)?;
        Ok(i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(self.i64(what)? as u64)
    }

    /// A NUL-terminated byte string, without its terminator.
    pub fn cstr_bytes(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        match memchr::memchr(0, &self.buf[self.pos..]) {
            Some(n) => {
                let s = &self.buf[self.pos..self.pos + n];
                self.pos += n + 1;
                Ok(s)
            }
            None => Err(self.truncated(what)),
        }
    }

    /// A NUL-terminated UTF-8 string.
    pub fn cstr(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        let at = self.pos;
        let b = self.cstr_bytes(what)?;
        std::str::from_utf8(b).map_err(|_| WireError::Utf8 {
            tag: self.tag as char,
            offset: at,
            what,
        })
    }

    /// A length-prefixed (i32) value, `None` for length -1.
    pub fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, WireError> {
        let len = self.i32(what)?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(self.invalid(format!("negative length {len} for {what}")));
        }
        self.bytes(len as usize, what).map(Some)
    }

    /// Fails if bytes are left over.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.remaining() != 0 {
            return Err(WireError::Trailing {
                tag: self.tag as char,
                extra: self.remaining(),
            });
        }
        Ok(())
    }
}
