//! Conflict-resolution tags: the text form of `electric.tag` and `electric.tag[]` values as
//! Postgres prints them, and the Satellite form `"<source>@<ms since the Unix epoch>"`.

use std::fmt;

use thiserror::Error;

use crate::value::{decode_text, Date, Kind, Time, Value};

/// The origin of writes made in Postgres itself (a tag with a NULL source), on the wire.
pub const POSTGRES_ORIGIN: &str = "postgres_1";

/// Microseconds from the Unix epoch to 2000-01-01 (Postgres's epoch).
pub const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

/// A tag value that does not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{reason}")]
pub struct TagError {
    pub reason: String,
}

fn bad(reason: impl Into<String>) -> TagError {
    TagError {
        reason: reason.into(),
    }
}

/// One tag: when, and who wrote (`None`: Postgres itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Microseconds since the Unix epoch.
    pub unix_us: i64,
    pub source: Option<String>,
}

impl Tag {
    /// Parses the text of an `electric.tag` (a composite `(timestamp,source_id)`), e.g.
    /// `("2024-03-04 10:36:07.891+05:30",client_1)`.
    pub fn parse(text: &str) -> Result<Tag, TagError> {
        let mut fields = parse_record(text)?.into_iter();
        let (Some(ts), Some(source), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad("expected two fields (timestamp, source_id)"));
        };
        let ts = ts.ok_or_else(|| bad("NULL timestamp"))?;
        Ok(Tag {
            unix_us: timestamptz_unix_us(&ts)?,
            source,
        })
    }

    /// Milliseconds since the Unix epoch (microseconds floored).
    pub fn unix_ms(&self) -> i64 {
        self.unix_us.div_euclid(1000)
    }

    /// Microseconds since 2000-01-01, the unit of commit timestamps.
    pub fn pg_us(&self) -> i64 {
        self.unix_us - PG_EPOCH_UNIX_US
    }

    /// The writer's name on the wire: the source, or [`POSTGRES_ORIGIN`].
    pub fn origin(&self) -> &str {
        self.source.as_deref().unwrap_or(POSTGRES_ORIGIN)
    }
}

/// The Satellite form, `"<origin>@<ms>"`.
impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.origin(), self.unix_ms())
    }
}

/// Parses the text of an `electric.tag[]`, e.g. `{"(\"2024-01-01 00:00:00+00\",)"}`. NULL
/// elements are skipped.
pub fn parse_tags(text: &str) -> Result<Vec<Tag>, TagError> {
    parse_array(text)?
        .into_iter()
        .flatten()
        .map(|t| Tag::parse(&t))
        .collect()
}

/// The tags of an `electric.tag[]` text in Satellite form.
pub fn satellite_tags(text: &str) -> Result<Vec<String>, TagError> {
    parse_array(text)?
        .into_iter()
        .flatten()
        .map(|t| Tag::parse(&t).map(|t| t.to_string()))
        .collect()
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(d: Date) -> i64 {
    let (m, day) = (d.month as i64, d.day as i64);
    let y = d.year as i64 - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn unix_us(d: Date, t: Time) -> i64 {
    let secs =
        days_from_civil(d) * 86_400 + t.hour as i64 * 3600 + t.minute as i64 * 60 + t.second as i64;
    secs * 1_000_000 + t.micro as i64
}

/// A `timestamptz` in ISO text (any UTC offset) as microseconds since the Unix epoch.
fn timestamptz_unix_us(text: &str) -> Result<i64, TagError> {
    if text == "epoch" {
        return Ok(0);
    }
    match decode_text(Kind::TimestampTz, text.as_bytes()) {
        Ok(Value::TimestampTz(d, t)) => Ok(unix_us(d, t)),
        Ok(_) => Err(bad(format!("timestamp {text:?} is not finite"))),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Splits the text of a one-dimensional array into its elements (`None` for NULL), undoing
/// array_out's quoting.
fn parse_array(text: &str) -> Result<Vec<Option<String>>, TagError> {
    let mut s = text.trim();
    if s.starts_with('[') {
        // explicit bounds: "[1:2]={...}"
        let eq = s.find('=').ok_or_else(|| bad("bad array bounds"))?;
        s = &s[eq + 1..];
    }
    let body = s
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| bad("expected {...}"))?;
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    if body.trim().is_empty() {
        return Ok(out);
    }
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut item = String::new();
        let mut quoted = false;
        if chars.next_if_eq(&'"').is_some() {
            quoted = true;
            loop {
                match chars.next() {
                    None => return Err(bad("unterminated quoted element")),
                    Some('"') => break,
                    Some('\\') => item.push(chars.next().ok_or_else(|| bad("dangling \\"))?),
                    Some(c) => item.push(c),
                }
            }
            while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        } else {
            while let Some(c) = chars.next_if(|&c| c != ',') {
                match c {
                    '{' | '}' | '"' => return Err(bad("unexpected character in element")),
                    '\\' => item.push(chars.next().ok_or_else(|| bad("dangling \\"))?),
                    c => item.push(c),
                }
            }
            item.truncate(item.trim_end().len());
            if item.is_empty() {
                return Err(bad("empty element"));
            }
        }
        out.push(if !quoted && item.eq_ignore_ascii_case("NULL") {
            None
        } else {
            Some(item)
        });
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(_) => return Err(bad("expected , between elements")),
        }
    }
}

/// Splits the text of a composite value into its fields (`None` for NULL), undoing
/// record_out's quoting.
fn parse_record(text: &str) -> Result<Vec<Option<String>>, TagError> {
    let body = text
        .trim()
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .ok_or_else(|| bad("expected (...)"))?;
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let mut field = String::new();
        let mut present = false;
        let mut in_quotes = false;
        loop {
            match chars.peek() {
                None => break,
                Some(',') if !in_quotes => break,
                _ => {}
            }
            present = true;
            match chars.next().expect("peeked") {
                '\\' => field.push(chars.next().ok_or_else(|| bad("dangling \\"))?),
                '"' if !in_quotes => in_quotes = true,
                '"' if chars.next_if_eq(&'"').is_some() => field.push('"'),
                '"' => in_quotes = false,
                c => field.push(c),
            }
        }
        if in_quotes {
            return Err(bad("unterminated quoted field"));
        }
        out.push(present.then_some(field));
        if chars.next().is_none() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-04 05:06:07.891 UTC
    const T1: i64 = 1_709_528_767_891_000;

    #[test]
    fn tags_as_pgoutput_prints_them() {
        // Captured from PostgreSQL 18 (walsender TimeZone = 'Asia/Kolkata'), see
        // testdata/electric.bin.
        assert_eq!(
            satellite_tags(r#"{"(\"2024-03-04 10:36:07.891+05:30\",client_1)"}"#).unwrap(),
            ["client_1@1709528767891"]
        );
        assert_eq!(
            parse_tags(r#"{"(\"2024-03-04 08:36:08.5+05:30\",\"odd \"\"src\"\",\\\\x\")"}"#)
                .unwrap(),
            [Tag {
                unix_us: 1_709_521_568_500_000,
                source: Some(r#"odd "src",\x"#.to_owned())
            }]
        );
        assert_eq!(
            satellite_tags(r#"{"(\"2026-11-26 17:07:57.443+05:30\",)"}"#).unwrap(),
            ["postgres_1@1795693077443"]
        );
        assert_eq!(satellite_tags("{}").unwrap(), Vec::<String>::new());
        // the fk_chain_touch message's rendering (TimeZone UTC), and a parent without a
        // shadow row
        assert_eq!(
            satellite_tags(r#"{"(\"2026-11-26 11:37:57.443+00\",)"}"#).unwrap(),
            ["postgres_1@1795693077443"]
        );
        assert_eq!(
            satellite_tags(r#"{"(\"1970-01-01 00:00:00+00\",)"}"#).unwrap(),
            ["postgres_1@0"]
        );
        assert_eq!(
            Tag::parse(r#"("2024-03-04 10:36:07.891+05:30",client_1)"#).unwrap(),
            Tag {
                unix_us: T1,
                source: Some("client_1".into())
            }
        );
    }

    #[test]
    fn several_tags_nulls_and_offsets() {
        let text = concat!(
            r#"{"(\"2024-03-04 05:06:07.891+00\",)","(\"2024-03-04 05:06:07.891999-01:30\",b)","#,
            r#"NULL,"(\"2024-03-03 23:59:59.999999-12\",\"\")"}"#
        );
        assert_eq!(
            satellite_tags(text).unwrap(),
            [
                "postgres_1@1709528767891",
                "b@1709534167891",
                // a quoted empty source is a source, not NULL
                "@1709553599999"
            ]
        );
        assert_eq!(
            parse_tags("[1:1]={\"(epoch,x)\"}").unwrap(),
            [Tag {
                unix_us: 0,
                source: Some("x".into())
            }]
        );
    }

    #[test]
    fn before_the_epoch_floors_to_the_millisecond() {
        let t = Tag::parse(r#"("1969-12-31 23:59:59.9995+00",)"#).unwrap();
        assert_eq!(t.unix_us, -500);
        assert_eq!(t.to_string(), "postgres_1@-1");
        assert_eq!(
            Tag::parse(r#"("2000-01-01 00:00:00+00",)"#)
                .unwrap()
                .pg_us(),
            0
        );
        assert_eq!(
            days_from_civil(Date {
                year: 2024,
                month: 2,
                day: 29
            }),
            19_782
        );
    }

    #[test]
    fn malformed() {
        for text in [
            "",
            "{",
            r#"{"(\"2024-03-04 05:06:07+00\",)""#,
            r#"{"(\"2024-03-04 05:06:07+00\",)",}"#,
            r#"{"(\"2024-03-04 05:06:07\",)"}"#,
            r#"{"(\"infinity\",)"}"#,
            r#"{"(,a)"}"#,
            r#"{"(\"2024-03-04 05:06:07+00\")"}"#,
            r#"{"(\"2024-03-04 05:06:07+00\",a,b)"}"#,
            r#"{"(\"2024-03-04 05:06:07+00,a)"}"#,
            "{abc}",
        ] {
            assert!(parse_tags(text).is_err(), "{text:?}");
        }
    }
}
