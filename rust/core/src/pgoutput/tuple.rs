//! TupleData: the column values of a row in Insert, Update and Delete messages.

use super::error::PgOutputError;
use super::reader::Reader;

/// The column kinds of TupleData.
pub mod kind {
    pub const NULL: u8 = b'n';
    pub const UNCHANGED_TOAST: u8 = b'u';
    pub const TEXT: u8 = b't';
    pub const BINARY: u8 = b'b';
}

/// One column of a tuple as sent: the bytes of a value are borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TupleValue<'a> {
    Null,
    /// A TOASTed value that the update did not change; Postgres does not send it again.
    UnchangedToast,
    /// The value in text format (the default).
    Text(&'a [u8]),
    /// The value in the type's binary format (`binary 'true'` publications option).
    Binary(&'a [u8]),
}

/// The columns of one tuple, checked when parsed and read lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TupleData<'a> {
    n_columns: u16,
    /// The column parts, without the column count.
    body: &'a [u8],
}

impl<'a> TupleData<'a> {
    pub(crate) fn parse(r: &mut Reader<'a>) -> Result<Self, PgOutputError> {
        let at = r.position();
        let n = r.i16("tuple column count")?;
        if n < 0 {
            return Err(r.invalid_at(at, format!("negative tuple column count {n}")));
        }
        let start = r.position();
        let mut body_len = 0usize;
        for _ in 0..n {
            let at = r.position();
            match r.u8("tuple column kind")? {
                kind::NULL | kind::UNCHANGED_TOAST => body_len += 1,
                kind::TEXT | kind::BINARY => {
                    let len = r.i32("tuple value length")?;
                    if len < 0 {
                        return Err(r.invalid_at(at + 1, format!("negative value length {len}")));
                    }
                    r.bytes(len as usize, "tuple value")?;
                    body_len += 5 + len as usize;
                }
                other => {
                    return Err(
                        r.invalid_at(at, format!("unknown tuple column kind {:?}", other as char))
                    )
                }
            }
        }
        debug_assert_eq!(r.position() - start, body_len);
        Ok(TupleData {
            n_columns: n as u16,
            body: r.bytes_back(start),
        })
    }

    /// Encodes `values` into `buf` (cleared first) and returns the tuple that reads them.
    pub fn build(buf: &'a mut Vec<u8>, values: &[TupleValue<'_>]) -> TupleData<'a> {
        buf.clear();
        for v in values {
            match *v {
                TupleValue::Null => buf.push(kind::NULL),
                TupleValue::UnchangedToast => buf.push(kind::UNCHANGED_TOAST),
                TupleValue::Text(b) | TupleValue::Binary(b) => {
                    buf.push(if matches!(v, TupleValue::Text(_)) {
                        kind::TEXT
                    } else {
                        kind::BINARY
                    });
                    buf.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    buf.extend_from_slice(b);
                }
            }
        }
        TupleData {
            n_columns: values.len() as u16,
            body: buf,
        }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.n_columns as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n_columns == 0
    }

    /// The columns in order.
    pub fn iter(&self) -> TupleIter<'a> {
        TupleIter {
            body: self.body,
            pos: 0,
            left: self.n_columns,
        }
    }

    /// Appends the column count and the columns.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.n_columns as i16).to_be_bytes());
        out.extend_from_slice(self.body);
    }
}

impl<'a> IntoIterator for &TupleData<'a> {
    type Item = TupleValue<'a>;
    type IntoIter = TupleIter<'a>;

    fn into_iter(self) -> TupleIter<'a> {
        self.iter()
    }
}

/// Iterates the columns of a [`TupleData`] (checked when parsed, so reading cannot fail).
#[derive(Debug, Clone)]
pub struct TupleIter<'a> {
    body: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> Iterator for TupleIter<'a> {
    type Item = TupleValue<'a>;

    #[inline]
    fn next(&mut self) -> Option<TupleValue<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let k = *self.body.get(self.pos)?;
        self.pos += 1;
        match k {
            kind::NULL => Some(TupleValue::Null),
            kind::UNCHANGED_TOAST => Some(TupleValue::UnchangedToast),
            _ => {
                let len = self.body.get(self.pos..self.pos + 4)?;
                let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
                let start = self.pos + 4;
                let v = self.body.get(start..start + len)?;
                self.pos = start + len;
                Some(if k == kind::TEXT {
                    TupleValue::Text(v)
                } else {
                    TupleValue::Binary(v)
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}
