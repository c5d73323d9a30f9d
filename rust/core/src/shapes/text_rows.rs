//! Rows of a shape's data query as `COPY ... TO STDOUT` (text format) sends them, kept compact:
//! one string holding every value, and per value its span (or NULL). The first column is the
//! row's tags as its shadow row holds them, an `electric.tag[]` (NULL when it has none: a row
//! written before its table was electrified); the others are the table's columns as text, in
//! table order. [`crate::shapes::ShapeGraph::add_text_rows`] reads them without a `String` per
//! value. The tags are put in Satellite form here, once per run of rows with the same ones
//! (Postgres spent most of the read's time making that text per row in SQL).

use std::sync::Arc;

use crate::electric::{satellite_tags, Tags, POSTGRES_ORIGIN};

/// A COPY line that is not a row of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyRowError {
    #[error("COPY row {row}: expected {expected} columns, got {got}")]
    Columns {
        row: usize,
        expected: usize,
        got: usize,
    },
    #[error("COPY row {row}: {what}")]
    Malformed { row: usize, what: &'static str },
}

/// The bit of an end that marks a NULL value (values take at most 2 GiB per read).
const NULL: u32 = 1 << 31;

/// The rows, tags first, then each row's values.
#[derive(Debug, Default)]
pub struct TextRows {
    columns: usize,
    text: String,
    /// `columns` ends per row: where each value ends in `text` (it starts where the one before
    /// ended), [`NULL`] set for NULL. Four bytes a value: a 1,000,000-row shape's rows are
    /// held until they are sent.
    ends: Vec<u32>,
    tags: Vec<Tags>,
    /// The last tags literal seen and its value (every row of a table filled before it was
    /// electrified has the same one).
    last_tags: Option<(Vec<u8>, Tags)>,
    scratch: Vec<u8>,
}

impl TextRows {
    /// No rows yet, of `columns` values each (besides the tags).
    pub fn new(columns: usize) -> TextRows {
        TextRows {
            columns,
            ..TextRows::default()
        }
    }

    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The values each row has (besides its tags).
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Adds one CopyData payload: a row, tab-separated, ending with a newline.
    pub fn push_line(&mut self, line: &[u8]) -> Result<(), CopyRowError> {
        let row = self.tags.len();
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let mut fields = line.split(|&b| b == b'\t');
        let tags_field = fields.next().unwrap_or(b"");
        let tags = self.tags_of(tags_field, row)?;
        let first_end = self.ends.len();
        let text_len = self.text.len();
        let mut got = 0;
        for field in fields {
            got += 1;
            if got > self.columns {
                continue;
            }
            match self.push_value(field, row) {
                Ok(end) => self.ends.push(end),
                Err(e) => {
                    self.ends.truncate(first_end);
                    self.text.truncate(text_len);
                    return Err(e);
                }
            }
        }
        if got != self.columns {
            self.ends.truncate(first_end);
            self.text.truncate(text_len);
            return Err(CopyRowError::Columns {
                row,
                expected: self.columns,
                got,
            });
        }
        self.tags.push(tags);
        Ok(())
    }

    /// Appends a value's text; returns its end (with [`NULL`] for NULL).
    fn push_value(&mut self, field: &[u8], row: usize) -> Result<u32, CopyRowError> {
        if field == b"\\N" {
            return self.end(row).map(|end| end | NULL);
        }
        if field.contains(&b'\\') {
            unescape(field, &mut self.scratch);
            let s = std::str::from_utf8(&self.scratch).map_err(|_| CopyRowError::Malformed {
                row,
                what: "a value that is not UTF-8",
            })?;
            self.text.push_str(s);
        } else {
            let s = std::str::from_utf8(field).map_err(|_| CopyRowError::Malformed {
                row,
                what: "a value that is not UTF-8",
            })?;
            self.text.push_str(s);
        }
        self.end(row)
    }

    fn end(&self, row: usize) -> Result<u32, CopyRowError> {
        match u32::try_from(self.text.len()) {
            Ok(end) if end < NULL => Ok(end),
            _ => Err(CopyRowError::Malformed {
                row,
                what: "more than 2 GiB of values in one read",
            }),
        }
    }

    /// Value `k` of the values (row-major): its text, `None` for NULL.
    fn at(&self, k: usize) -> Option<&str> {
        let end = self.ends[k];
        if end & NULL != 0 {
            return None;
        }
        let start = if k == 0 { 0 } else { self.ends[k - 1] & !NULL };
        Some(&self.text[start as usize..end as usize])
    }

    fn tags_of(&mut self, field: &[u8], row: usize) -> Result<Tags, CopyRowError> {
        if let Some((raw, tags)) = &self.last_tags {
            if raw == field {
                return Ok(tags.clone());
            }
        }
        let malformed = |what| CopyRowError::Malformed { row, what };
        let tags: Tags = if field == b"\\N" {
            // No shadow row: the epoch tag of Postgres.
            Arc::from([format!("{POSTGRES_ORIGIN}@0")])
        } else {
            unescape(field, &mut self.scratch);
            let text =
                std::str::from_utf8(&self.scratch).map_err(|_| malformed("tags not UTF-8"))?;
            Arc::from(satellite_tags(text).map_err(|_| malformed("a bad tags array"))?)
        };
        self.last_tags = Some((field.to_vec(), tags.clone()));
        Ok(tags)
    }

    /// Row `i`: its tags and its values.
    pub fn row(&self, i: usize) -> (&Tags, impl Iterator<Item = Option<&str>> + '_) {
        let first = i * self.columns;
        (
            &self.tags[i],
            (first..first + self.columns).map(|k| self.at(k)),
        )
    }

    /// Value `column` of row `i`.
    pub fn value(&self, i: usize, column: usize) -> Option<&str> {
        self.at(i * self.columns + column)
    }
}

/// COPY's text-format escapes undone (`\\`, `\n`, `\t`, `\r`, `\b`, `\f`, `\v`, octal `\ooo`
/// and `\xhh`; any other escaped character stands for itself).
fn unescape(field: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' || i + 1 == field.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = field[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    v = v * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xFF) as u8);
            }
            b'x' if i < field.len() && field[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < field.len() && field[i].is_ascii_hexdigit() {
                    v = v * 16 + (field[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_escapes_nulls_and_tags() {
        let mut rows = TextRows::new(3);
        rows.push_line(b"\\N\t1\ta\\tb\\\\c\\n\t\\N\n").unwrap();
        // `_tags::text` as COPY writes it: `{"(\"1970-01-01 00:00:00.005+00\",\"x y\")",...}`.
        // An offset, and microseconds floored to milliseconds, as `floor(extract(epoch ...))`.
        let mut line = br#"{"(\\"1970-01-01 00:00:00.005+00\\",\\"x y\\")","(\\"1970-01-01 01:00:00.0069+01\\",z)"}"#.to_vec();
        line.extend_from_slice(b"\t2\t\xc3\xa9\\101\\x41\tq\n");
        rows.push_line(&line).unwrap();
        rows.push_line(b"{}\t3\t\t\n").unwrap();
        assert_eq!(rows.len(), 3);
        let (tags, values) = rows.row(0);
        assert_eq!(&tags[..], ["postgres_1@0".to_owned()]);
        assert_eq!(
            values.collect::<Vec<_>>(),
            [Some("1"), Some("a\tb\\c\n"), None]
        );
        let (tags, values) = rows.row(1);
        assert_eq!(&tags[..], ["x y@5".to_owned(), "z@6".to_owned()]);
        assert_eq!(
            values.collect::<Vec<_>>(),
            [Some("2"), Some("éAA"), Some("q")]
        );
        let (tags, values) = rows.row(2);
        assert!(tags.is_empty());
        assert_eq!(values.collect::<Vec<_>>(), [Some("3"), Some(""), Some("")]);
        assert_eq!(rows.value(1, 2), Some("q"));
    }

    #[test]
    fn a_row_of_the_wrong_width_is_refused_and_not_kept() {
        let mut rows = TextRows::new(2);
        assert!(matches!(
            rows.push_line(b"{}\t1\n"),
            Err(CopyRowError::Columns { got: 1, .. })
        ));
        assert!(rows.push_line(b"{a}\t1\t2\t3\n").is_err());
        assert!(rows.push_line(b"{a\t1\t2\n").is_err());
        assert!(rows.push_line(b"{a}\t1\t2\n").is_err());
        assert!(rows.is_empty());
        rows.push_line(b"{}\t1\t2\n").unwrap();
        assert_eq!(rows.value(0, 1), Some("2"));
    }
}
