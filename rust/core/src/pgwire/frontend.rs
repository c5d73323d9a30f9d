//! Messages sent by a Postgres client.

use super::{begin_message, end_message, put_cstr, Cursor, Frame};
use crate::error::WireError;

pub mod tag {
    pub const BIND: u8 = b'B';
    pub const CLOSE: u8 = b'C';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, SASLInitialResponse and SASLResponse share this tag.
    pub const PASSWORD: u8 = b'p';
    pub const QUERY: u8 = b'Q';
    pub const SYNC: u8 = b'S';
    pub const TERMINATE: u8 = b'X';
}

/// Protocol version 3.0 as sent in a StartupMessage.
pub const PROTOCOL_3_0: i32 = 196608;
pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;

/// The untagged first message of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupMessage<'a> {
    Startup {
        protocol: i32,
        params: Vec<(&'a str, &'a str)>,
    },
    SslRequest,
    GssEncRequest,
    CancelRequest {
        process_id: i32,
        secret_key: &'a [u8],
    },
}

impl<'a> StartupMessage<'a> {
    /// Parses the body returned by [`super::split_untagged`].
    pub fn parse(body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(b'\0', body);
        let code = c.i32("protocol code")?;
        let msg = match code {
            SSL_REQUEST_CODE => StartupMessage::SslRequest,
            GSSENC_REQUEST_CODE => StartupMessage::GssEncRequest,
            CANCEL_REQUEST_CODE => {
                let process_id = c.i32("process id")?;
                return Ok(StartupMessage::CancelRequest {
                    process_id,
                    secret_key: c.rest(),
                });
            }
            protocol if protocol >> 16 == 3 => {
                let mut params = Vec::new();
                loop {
                    let name = c.cstr("parameter name")?;
                    if name.is_empty() {
                        break;
                    }
                    params.push((name, c.cstr("parameter value")?));
                }
                StartupMessage::Startup { protocol, params }
            }
            other => {
                return Err(c.invalid(format!(
                    "unsupported protocol version {}.{}",
                    other >> 16,
                    other & 0xffff
                )))
            }
        };
        c.finish()?;
        Ok(msg)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindBody<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    pub param_formats: Vec<i16>,
    pub params: Vec<Option<&'a [u8]>>,
    pub result_formats: Vec<i16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    Bind(BindBody<'a>),
    /// `kind` is `b'S'` (statement) or `b'P'` (portal).
    Close {
        kind: u8,
        name: &'a str,
    },
    CopyData(&'a [u8]),
    CopyDone,
    CopyFail {
        message: &'a str,
    },
    Describe {
        kind: u8,
        name: &'a str,
    },
    Execute {
        portal: &'a str,
        max_rows: i32,
    },
    Flush,
    /// Kept opaque: nothing of ours handles the fast-path interface.
    FunctionCall(&'a [u8]),
    Parse {
        name: &'a str,
        query: &'a str,
        param_types: Vec<u32>,
    },
    /// A password, SASLInitialResponse or SASLResponse: which one depends on the auth exchange,
    /// see [`parse_sasl_initial_response`].
    Password(&'a [u8]),
    Query {
        sql: &'a str,
    },
    Sync,
    Terminate,
}

impl<'a> FrontendMessage<'a> {
    pub fn parse(frame: Frame<'a>) -> Result<Self, WireError> {
        let mut c = Cursor::new(frame.tag, frame.body);
        let msg = match frame.tag {
            tag::BIND => {
                let portal = c.cstr("portal")?;
                let statement = c.cstr("statement")?;
                let n = c.i16("format count")?;
                let param_formats = (0..n.max(0))
                    .map(|_| c.i16("format"))
                    .collect::<Result<_, _>>()?;
                let n = c.i16("parameter count")?;
                let params = (0..n.max(0))
                    .map(|_| c.nullable_bytes("parameter"))
                    .collect::<Result<_, _>>()?;
                let n = c.i16("result format count")?;
                let result_formats = (0..n.max(0))
                    .map(|_| c.i16("format"))
                    .collect::<Result<_, _>>()?;
                FrontendMessage::Bind(BindBody {
                    portal,
                    statement,
                    param_formats,
                    params,
                    result_formats,
                })
            }
            tag::CLOSE => FrontendMessage::Close {
                kind: describe_kind(&mut c)?,
                name: c.cstr("name")?,
            },
            tag::COPY_DATA => FrontendMessage::CopyData(c.rest()),
            tag::COPY_DONE => FrontendMessage::CopyDone,
            tag::COPY_FAIL => FrontendMessage::CopyFail {
                message: c.cstr("message")?,
            },
            tag::DESCRIBE => FrontendMessage::Describe {
                kind: describe_kind(&mut c)?,
                name: c.cstr("name")?,
            },
            tag::EXECUTE => FrontendMessage::Execute {
                portal: c.cstr("portal")?,
                max_rows: c.i32("max rows")?,
            },
            tag::FLUSH => FrontendMessage::Flush,
            tag::FUNCTION_CALL => FrontendMessage::FunctionCall(c.rest()),
            tag::PARSE => {
                let name = c.cstr("statement name")?;
                let query = c.cstr("query")?;
                let n = c.i16("parameter type count")?;
                let param_types = (0..n.max(0))
                    .map(|_| c.u32("parameter type"))
                    .collect::<Result<_, _>>()?;
                FrontendMessage::Parse {
                    name,
                    query,
                    param_types,
                }
            }
            tag::PASSWORD => FrontendMessage::Password(c.rest()),
            tag::QUERY => FrontendMessage::Query {
                sql: c.cstr("query")?,
            },
            tag::SYNC => FrontendMessage::Sync,
            tag::TERMINATE => FrontendMessage::Terminate,
            other => return Err(WireError::UnknownTag { tag: other as char }),
        };
        c.finish()?;
        Ok(msg)
    }
}

fn describe_kind(c: &mut Cursor<'_>) -> Result<u8, WireError> {
    match c.u8("kind")? {
        k @ (b'S' | b'P') => Ok(k),
        k => Err(c.invalid(format!("describe/close kind {:?}", k as char))),
    }
}

/// Splits a SASLInitialResponse body into the mechanism and the client's first message.
pub fn parse_sasl_initial_response(body: &[u8]) -> Result<(&str, Option<&[u8]>), WireError> {
    let mut c = Cursor::new(tag::PASSWORD, body);
    let mechanism = c.cstr("SASL mechanism")?;
    let data = c.nullable_bytes("SASL data")?;
    c.finish()?;
    Ok((mechanism, data))
}

// ---- encoders (the client side) ----

pub fn startup(out: &mut Vec<u8>, params: &[(&str, &str)]) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in params {
        put_cstr(out, k);
        put_cstr(out, v);
    }
    out.push(0);
    end_message(out, at);
}

pub fn ssl_request(out: &mut Vec<u8>) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
}

pub fn cancel_request(out: &mut Vec<u8>, process_id: i32, secret_key: &[u8]) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
    out.extend_from_slice(&process_id.to_be_bytes());
    out.extend_from_slice(secret_key);
    end_message(out, at);
}

pub fn password(out: &mut Vec<u8>, password: &[u8]) {
    let at = begin_message(out, tag::PASSWORD);
    out.extend_from_slice(password);
    out.push(0);
    end_message(out, at);
}

pub fn sasl_initial_response(out: &mut Vec<u8>, mechanism: &str, data: &[u8]) {
    let at = begin_message(out, tag::PASSWORD);
    put_cstr(out, mechanism);
    out.extend_from_slice(&(data.len() as i32).to_be_bytes());
    out.extend_from_slice(data);
    end_message(out, at);
}

pub fn sasl_response(out: &mut Vec<u8>, data: &[u8]) {
    let at = begin_message(out, tag::PASSWORD);
    out.extend_from_slice(data);
    end_message(out, at);
}

pub fn query(out: &mut Vec<u8>, sql: &str) {
    let at = begin_message(out, tag::QUERY);
    put_cstr(out, sql);
    end_message(out, at);
}

pub fn parse(out: &mut Vec<u8>, name: &str, sql: &str, param_types: &[u32]) {
    let at = begin_message(out, tag::PARSE);
    put_cstr(out, name);
    put_cstr(out, sql);
    out.extend_from_slice(&(param_types.len() as i16).to_be_bytes());
    for t in param_types {
        out.extend_from_slice(&t.to_be_bytes());
    }
    end_message(out, at);
}

pub fn bind<'v>(
    out: &mut Vec<u8>,
    portal: &str,
    statement: &str,
    param_formats: &[i16],
    params: impl ExactSizeIterator<Item = Option<&'v [u8]>>,
    result_formats: &[i16],
) {
    let at = begin_message(out, tag::BIND);
    put_cstr(out, portal);
    put_cstr(out, statement);
    out.extend_from_slice(&(param_formats.len() as i16).to_be_bytes());
    for f in param_formats {
        out.extend_from_slice(&f.to_be_bytes());
    }
    out.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    out.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        out.extend_from_slice(&f.to_be_bytes());
    }
    end_message(out, at);
}

pub fn describe(out: &mut Vec<u8>, kind: u8, name: &str) {
    let at = begin_message(out, tag::DESCRIBE);
    out.push(kind);
    put_cstr(out, name);
    end_message(out, at);
}

pub fn close(out: &mut Vec<u8>, kind: u8, name: &str) {
    let at = begin_message(out, tag::CLOSE);
    out.push(kind);
    put_cstr(out, name);
    end_message(out, at);
}

pub fn execute(out: &mut Vec<u8>, portal: &str, max_rows: i32) {
    let at = begin_message(out, tag::EXECUTE);
    put_cstr(out, portal);
    out.extend_from_slice(&max_rows.to_be_bytes());
    end_message(out, at);
}

pub fn sync(out: &mut Vec<u8>) {
    out.extend_from_slice(&[tag::SYNC, 0, 0, 0, 4]);
}

pub fn flush(out: &mut Vec<u8>) {
    out.extend_from_slice(&[tag::FLUSH, 0, 0, 0, 4]);
}

pub fn terminate(out: &mut Vec<u8>) {
    out.extend_from_slice(&[tag::TERMINATE, 0, 0, 0, 4]);
}

pub fn copy_data(out: &mut Vec<u8>, data: &[u8]) {
    let at = begin_message(out, tag::COPY_DATA);
    out.extend_from_slice(data);
    end_message(out, at);
}

pub fn copy_done(out: &mut Vec<u8>) {
    out.extend_from_slice(&[tag::COPY_DONE, 0, 0, 0, 4]);
}

pub fn copy_fail(out: &mut Vec<u8>, message: &str) {
    let at = begin_message(out, tag::COPY_FAIL);
    put_cstr(out, message);
    end_message(out, at);
}

/// First words of a statement that can only be a query, DML or session/transaction control:
/// never DDL, `CALL` or `DO`, whatever follows.
const PLAIN_FIRST_WORDS: &[&str] = &[
    "begin",
    "commit",
    "delete",
    "end",
    "insert",
    "release",
    "reset",
    "rollback",
    "savepoint",
    "select",
    "set",
    "show",
    "start",
    "table",
    "update",
    "values",
    "with",
];

/// Whether the text of a simple Query is one statement that a migrations proxy can forward
/// without reading it: a single statement (no `;` before the trailing ones) whose first word is
/// a query, DML or transaction keyword, and no `electric` anywhere (so no DDLX, no call of the
/// electric procedures). Conservative: `false` only means "look closer".
pub fn is_plain_query(sql: &str) -> bool {
    plain_first_word(sql).is_some()
}

/// [`is_plain_query`] for the statement of an extended-protocol Parse, which must not be an
/// INSERT either (a proxy reads those for migration frameworks' version rows).
pub fn is_plain_parse(sql: &str) -> bool {
    plain_first_word(sql)
        .is_some_and(|w| !w.eq_ignore_ascii_case(b"insert") && !w.eq_ignore_ascii_case(b"with"))
}

/// The first word of a plain statement (see [`is_plain_query`]), None when it is not one.
fn plain_first_word(sql: &str) -> Option<&[u8]> {
    let bytes = sql
        .trim_end_matches(|c: char| c.is_ascii_whitespace() || c == ';')
        .as_bytes();
    if bytes.contains(&b';')
        || bytes
            .windows(8)
            .any(|w| w.eq_ignore_ascii_case(b"electric"))
    {
        return None;
    }
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let rest = &bytes[start..];
    let len = rest
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    // The word must end there: not a longer identifier (letters, digits, `_`, `$`, non-ASCII).
    if let Some(&next) = rest.get(len) {
        if !next.is_ascii() || next.is_ascii_alphanumeric() || next == b'_' || next == b'$' {
            return None;
        }
    }
    let word = &rest[..len];
    PLAIN_FIRST_WORDS
        .iter()
        .any(|w| w.as_bytes().eq_ignore_ascii_case(word))
        .then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgwire::{split_frame, split_untagged, DEFAULT_MAX_MESSAGE};

    fn parse_one(bytes: &[u8]) -> FrontendMessage<'_> {
        let f = split_frame(bytes, DEFAULT_MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(f.wire_len(), bytes.len());
        FrontendMessage::parse(f).unwrap()
    }

    #[test]
    fn startup_round_trip() {
        let mut b = Vec::new();
        startup(
            &mut b,
            &[
                ("user", "postgres"),
                ("database", "db"),
                ("replication", "database"),
            ],
        );
        let body = split_untagged(&b, DEFAULT_MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(
            StartupMessage::parse(body).unwrap(),
            StartupMessage::Startup {
                protocol: PROTOCOL_3_0,
                params: vec![
                    ("user", "postgres"),
                    ("database", "db"),
                    ("replication", "database")
                ]
            }
        );
        b.clear();
        ssl_request(&mut b);
        assert_eq!(b, [0, 0, 0, 8, 4, 210, 22, 47]);
        assert_eq!(
            StartupMessage::parse(&b[4..]).unwrap(),
            StartupMessage::SslRequest
        );
        b.clear();
        cancel_request(&mut b, 77, &[1, 2, 3, 4]);
        assert_eq!(
            StartupMessage::parse(split_untagged(&b, 64).unwrap().unwrap()).unwrap(),
            StartupMessage::CancelRequest {
                process_id: 77,
                secret_key: &[1, 2, 3, 4]
            }
        );
    }

    #[test]
    fn extended_protocol_round_trip() {
        let mut b = Vec::new();
        parse(&mut b, "s1", "select $1::int", &[23]);
        assert_eq!(
            parse_one(&b),
            FrontendMessage::Parse {
                name: "s1",
                query: "select $1::int",
                param_types: vec![23]
            }
        );
        b.clear();
        bind(
            &mut b,
            "",
            "s1",
            &[0, 1],
            [Some(&b"1"[..]), None].into_iter(),
            &[1],
        );
        assert_eq!(
            parse_one(&b),
            FrontendMessage::Bind(BindBody {
                portal: "",
                statement: "s1",
                param_formats: vec![0, 1],
                params: vec![Some(&b"1"[..]), None],
                result_formats: vec![1],
            })
        );
        for (enc, want) in [
            (
                {
                    let mut b = Vec::new();
                    describe(&mut b, b'P', "");
                    b
                },
                FrontendMessage::Describe {
                    kind: b'P',
                    name: "",
                },
            ),
            (
                {
                    let mut b = Vec::new();
                    execute(&mut b, "", 0);
                    b
                },
                FrontendMessage::Execute {
                    portal: "",
                    max_rows: 0,
                },
            ),
            (
                {
                    let mut b = Vec::new();
                    sync(&mut b);
                    b
                },
                FrontendMessage::Sync,
            ),
            (
                {
                    let mut b = Vec::new();
                    query(&mut b, "select 1");
                    b
                },
                FrontendMessage::Query { sql: "select 1" },
            ),
            (
                {
                    let mut b = Vec::new();
                    copy_fail(&mut b, "no");
                    b
                },
                FrontendMessage::CopyFail { message: "no" },
            ),
        ] {
            assert_eq!(parse_one(&enc), want);
        }
    }

    #[test]
    fn sasl_initial_response_round_trip() {
        let mut b = Vec::new();
        sasl_initial_response(&mut b, "SCRAM-SHA-256", b"n,,n=,r=abc");
        let FrontendMessage::Password(body) = parse_one(&b) else {
            panic!()
        };
        assert_eq!(
            parse_sasl_initial_response(body).unwrap(),
            ("SCRAM-SHA-256", Some(&b"n,,n=,r=abc"[..]))
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        for case in [
            &b"Q\0\0\0\x07abc"[..],
            b"E\0\0\0\x05\0",
            b"D\0\0\0\x06X\0",
            b"B\0\0\0\x06\0\0",
            b"~\0\0\0\x04",
        ] {
            let f = split_frame(case, DEFAULT_MAX_MESSAGE).unwrap().unwrap();
            assert!(FrontendMessage::parse(f).is_err(), "{case:?}");
        }
        assert!(StartupMessage::parse(&[0, 2, 0, 0]).is_err());
    }

    #[test]
    fn plain_queries() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "select 1",
            "  \n\tInsert into t values (1);;  ",
            "BEGIN",
            "end;",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "update t set a = 'x'",
            "SELECT(1)",
        ] {
            assert!(is_plain_query(sql), "{sql:?}");
        }
        for sql in [
            "",
            ";",
            "ALTER TABLE t ENABLE ELECTRIC",
            "SELECT 1; ALTER TABLE t ADD c int",
            "SELECT 'a;b'",
            "select electric.x()",
            "SELECT 1 AS ElEcTrIc",
            "CALL electric.electrify('t')",
            "DO $$ BEGIN END $$",
            "DROP TABLE t",
            "CREATE INDEX i ON t (a)",
            "selected",
            "select_1",
            "select$1",
            "selecté",
            "-- comment\nSELECT 1",
            "/* c */ SELECT 1",
            "(SELECT 1)",
        ] {
            assert!(!is_plain_query(sql), "{sql:?}");
        }
        assert!(is_plain_parse("SELECT $1::int"));
        assert!(is_plain_parse("update t set a = $1"));
        assert!(!is_plain_parse("INSERT INTO schema_migrations VALUES ($1)"));
        assert!(!is_plain_parse(
            "with x as (select 1) insert into t select * from x"
        ));
        assert!(!is_plain_parse("ALTER TABLE t ADD c int"));
    }
}
