//! Bounds-checked reading of one pgoutput message, errors carrying its tag and the offset.

use super::error::PgOutputError;

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    tag: char,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole message, positioned after its tag byte.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            tag: buf.first().map_or('\0', |&t| t as char),
            buf,
            pos: 1,
        }
    }

    pub(crate) fn truncated(&self, what: &'static str) -> PgOutputError {
        PgOutputError::Truncated {
            tag: self.tag,
            offset: self.pos,
            what,
        }
    }

    pub(crate) fn invalid_at(&self, offset: usize, what: impl Into<String>) -> PgOutputError {
        PgOutputError::Invalid {
            tag: self.tag,
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn bytes(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> Result<&'a [u8], PgOutputError> {
        match self.buf.get(self.pos..self.pos.saturating_add(n)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.truncated(what)),
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, PgOutputError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated(what)),
        }
    }

    #[inline]
    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, PgOutputError> {
        let b = self.bytes(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, PgOutputError> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, PgOutputError> {
        Ok(self.i32(what)? as u32)
    }

    #[inline]
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, PgOutputError> {
        let b = self.bytes(8, what)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    #[inline]
    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, PgOutputError> {
        Ok(self.u64(what)? as i64)
    }

    /// A NUL-terminated UTF-8 string, without its terminator.
    pub(crate) fn cstr(&mut self, what: &'static str) -> Result<&'a str, PgOutputError> {
        let at = self.pos;
        let rest = self.buf.get(at..).unwrap_or_default();
        let n = memchr::memchr(0, rest).ok_or_else(|| self.truncated(what))?;
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| PgOutputError::Utf8 {
            tag: self.tag,
            offset: at,
            what,
        })
    }

    /// The bytes read since offset `start`.
    pub(crate) fn bytes_back(&self, start: usize) -> &'a [u8] {
        &self.buf[start..self.pos]
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Fails if bytes are left over.
    pub(crate) fn finish(&self) -> Result<(), PgOutputError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(PgOutputError::Trailing {
                tag: self.tag,
                offset: self.pos,
                extra,
            }),
        }
    }
}
