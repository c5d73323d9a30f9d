//! Lexer and Pratt parser of the where-clause language, with Postgres's operator precedence
//! (lowest first): `OR`, `AND`, `NOT`, `IS`, comparisons (non-associative), `BETWEEN IN LIKE
//! ILIKE`, other operators (`||`, `&`, `|`, `#`), `+ -`, `* / %`, unary `+ -`, `::`.

use super::types::Type;
use super::FilterError;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier; `quoted` ones are never keywords and keep their case.
    Ident {
        name: String,
        quoted: bool,
    },
    Str(String),
    /// An unsigned number as written (integer, decimal or with an exponent).
    Number(String),
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Byte offset in the clause.
    pos: usize,
}

const OPS: [&str; 21] = [
    "<>", "!=", "<=", ">=", "||", "::", "=", "<", ">", "+", "-", "*", "/", "%", "&", "|", "#", "(",
    ")", ",", ".",
];

fn lex(src: &str) -> Result<Vec<Token>, FilterError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |pos: usize, msg: String| FilterError::at(src, pos, msg);
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let start = i;
            let mut depth = 0;
            loop {
                if i >= b.len() {
                    return Err(err(start, "unterminated /* comment".into()));
                }
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'\'' {
            let start = i;
            let mut s = String::new();
            i += 1;
            loop {
                match src[i..].find('\'') {
                    None => return Err(err(start, "unterminated quoted string".into())),
                    Some(j) => {
                        s.push_str(&src[i..i + j]);
                        i += j + 1;
                        if b.get(i) == Some(&b'\'') {
                            s.push('\'');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                pos: start,
            });
        } else if c == b'"' {
            let start = i;
            let mut s = String::new();
            i += 1;
            loop {
                match src[i..].find('"') {
                    None => return Err(err(start, "unterminated quoted identifier".into())),
                    Some(j) => {
                        s.push_str(&src[i..i + j]);
                        i += j + 1;
                        if b.get(i) == Some(&b'"') {
                            s.push('"');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            if s.is_empty() {
                return Err(err(start, "zero-length delimited identifier".into()));
            }
            out.push(Token {
                tok: Tok::Ident {
                    name: s,
                    quoted: true,
                },
                pos: start,
            });
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if b.get(i) == Some(&b'.') && !b[i..].starts_with(b"..") {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                let mut j = i + 1;
                if matches!(b.get(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    i = j;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            if b.get(i)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
            {
                return Err(err(start, "trailing junk after numeric literal".into()));
            }
            out.push(Token {
                tok: Tok::Number(src[start..i].to_owned()),
                pos: start,
            });
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            if b.get(i) == Some(&b'\'') && src[start..i].eq_ignore_ascii_case("e") {
                return Err(err(
                    start,
                    "escape strings (E'...') are not supported".into(),
                ));
            }
            out.push(Token {
                tok: Tok::Ident {
                    name: src[start..i].to_ascii_lowercase(),
                    quoted: false,
                },
                pos: start,
            });
        } else if c == b'$' {
            return Err(err(
                i,
                if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    "parameters ($n) are not allowed in a where clause".into()
                } else {
                    "dollar-quoted strings are not supported".into()
                },
            ));
        } else if c == b';' {
            return Err(err(
                i,
                "unexpected \";\": a where clause is one expression".into(),
            ));
        } else if let Some(op) = OPS.iter().find(|op| b[i..].starts_with(op.as_bytes())) {
            out.push(Token {
                tok: Tok::Op(op),
                pos: i,
            });
            i += op.len();
        } else {
            let ch = src[i..].chars().next().expect("a character");
            return Err(err(i, format!("syntax error at or near \"{ch}\"")));
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

/// A parsed (not yet type-checked) expression; `pos` is the byte offset Postgres would report.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: usize,
    pub ast: Ast,
    /// How deep, and how many nodes large, the type-checked expression can grow: an `IN` item
    /// that is not a literal becomes one more `OR` level holding a copy of the operand, and
    /// `BETWEEN` copies its operand. Both are bounded ([`MAX_DEPTH`], [`MAX_SIZE`]).
    pub depth: usize,
    pub size: usize,
}

/// Nesting deeper than this is refused: checking, evaluating, generating SQL from and even
/// dropping an expression recurse once per level, and a client's where clause must not be able
/// to overflow the service's stack.
pub const MAX_DEPTH: usize = 256;

/// Expressions that would check into more nodes than this are refused: `BETWEEN` and `IN`
/// copy their operand, so a short clause could otherwise expand exponentially.
pub const MAX_SIZE: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
    BitAnd,
    BitOr,
    BitXor,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Eq => "=",
            BinOp::Ne => "<>",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Concat => "||",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "#",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    /// `this.col`, `col`, `"Col"`.
    Column(String),
    Null,
    Bool(bool),
    /// A numeric literal as written (a leading `-` folded in, as Postgres does).
    Number(String),
    Str(String),
    Cast(Box<Node>, Type),
    Neg(Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    IsNull(Box<Node>, bool),
    /// `IS [NOT] TRUE|FALSE|UNKNOWN` (None = UNKNOWN), negated when the bool is true.
    IsBool(Box<Node>, Option<bool>, bool),
    /// `IS [NOT] DISTINCT FROM`.
    Distinct(Box<Node>, Box<Node>, bool),
    Like {
        expr: Box<Node>,
        pattern: Box<Node>,
        escape: Option<Box<Node>>,
        case_insensitive: bool,
        negated: bool,
    },
    In(Box<Node>, Vec<Node>, bool),
    Between(Box<Node>, Box<Node>, Box<Node>, bool),
    Func(String, Vec<Node>),
}

// Binding powers, lowest first.
const BP_OR: u8 = 1;
const BP_AND: u8 = 2;
const BP_NOT: u8 = 3;
const BP_IS: u8 = 4;
const BP_CMP: u8 = 5;
const BP_LIKE: u8 = 6;
const BP_OTHER: u8 = 7;
const BP_ADD: u8 = 8;
const BP_MUL: u8 = 9;
const BP_UNARY: u8 = 10;

/// Words that cannot be bare column names because they start or continue an expression.
const RESERVED: [&str; 22] = [
    "and", "or", "not", "is", "null", "true", "false", "like", "ilike", "in", "between", "cast",
    "as", "escape", "distinct", "from", "isnull", "notnull", "similar", "case", "select", "where",
];

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    i: usize,
    /// Calls of [`Parser::expr`] in progress (parentheses nest them without adding nodes).
    nesting: usize,
}

pub fn parse(src: &str) -> Result<Node, FilterError> {
    let mut p = Parser {
        src,
        toks: lex(src)?,
        i: 0,
        nesting: 0,
    };
    let node = p.expr(0)?;
    match &p.peek().tok {
        Tok::Eof => Ok(node),
        _ => Err(p.unexpected()),
    }
}

fn node(pos: usize, ast: Ast) -> Node {
    let (depth, size) = measure(&ast);
    Node {
        pos,
        ast,
        depth,
        size,
    }
}

fn is_literal(n: &Node) -> bool {
    match &n.ast {
        Ast::Null | Ast::Bool(_) | Ast::Number(_) | Ast::Str(_) => true,
        Ast::Cast(e, _) => is_literal(e),
        _ => false,
    }
}

/// The depth and size (see [`Node`]) of a node with this `ast`, from its children's.
fn measure(ast: &Ast) -> (usize, usize) {
    let of = |nodes: &[&Node]| {
        nodes.iter().fold((0, 0), |(d, s): (usize, usize), n| {
            (d.max(n.depth), s.saturating_add(n.size))
        })
    };
    let (depth, size) = match ast {
        Ast::Column(_) | Ast::Null | Ast::Bool(_) | Ast::Number(_) | Ast::Str(_) => (0, 0),
        Ast::Cast(e, _) | Ast::Neg(e) | Ast::Not(e) | Ast::IsNull(e, _) | Ast::IsBool(e, ..) => {
            of(&[e])
        }
        Ast::Binary(_, a, b) | Ast::And(a, b) | Ast::Or(a, b) | Ast::Distinct(a, b, _) => {
            of(&[a, b])
        }
        Ast::Like {
            expr,
            pattern,
            escape,
            ..
        } => match escape {
            Some(c) => of(&[expr, pattern, c]),
            None => of(&[expr, pattern]),
        },
        Ast::In(e, items, _) => {
            let (d, s) = of(&items.iter().collect::<Vec<_>>());
            let chained = items.iter().filter(|n| !is_literal(n)).count();
            (
                d.max(e.depth).saturating_add(chained + 1),
                s.saturating_add(e.size.saturating_mul(chained + 1)),
            )
        }
        Ast::Between(e, lo, hi, _) => {
            let (d, s) = of(&[e, lo, hi]);
            (d + 1, s.saturating_add(e.size))
        }
        Ast::Func(_, args) => of(&args.iter().collect::<Vec<_>>()),
    };
    (depth + 1, size.saturating_add(1))
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].tok
    }

    /// The current token; past the end, Eof again (and `i` still counts, so `i -= 1` undoes).
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> FilterError {
        FilterError::at(self.src, pos, msg.into())
    }

    fn unexpected(&self) -> FilterError {
        let t = self.peek();
        match &t.tok {
            Tok::Eof => self.err(t.pos, "syntax error at end of input"),
            _ => {
                let text: String = self.src[t.pos..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .take(20)
                    .collect();
                self.err(t.pos, format!("syntax error at or near \"{text}\""))
            }
        }
    }

    fn is_kw(&self, n: usize, kw: &str) -> bool {
        matches!(self.peek_at(n), Tok::Ident { name, quoted: false } if name == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(0, kw) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), FilterError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn is_op(&self, n: usize, op: &str) -> bool {
        matches!(self.peek_at(n), Tok::Op(o) if *o == op)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), FilterError> {
        if self.is_op(0, op) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// A node within the limits of depth and size.
    fn bounded(&self, n: Node) -> Result<Node, FilterError> {
        if n.depth > MAX_DEPTH {
            Err(self.err(
                n.pos,
                format!("expression nested more than {MAX_DEPTH} levels deep"),
            ))
        } else if n.size > MAX_SIZE {
            Err(self.err(
                n.pos,
                format!("expression too large (more than {MAX_SIZE} nodes once expanded)"),
            ))
        } else {
            Ok(n)
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Node, FilterError> {
        if self.nesting >= MAX_DEPTH {
            return Err(self.err(
                self.peek().pos,
                format!("expression nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.nesting += 1;
        let result = self.expr_within(min_bp);
        self.nesting -= 1;
        result
    }

    fn expr_within(&mut self, min_bp: u8) -> Result<Node, FilterError> {
        let mut lhs = self.prefix()?;
        loop {
            let pos = self.peek().pos;
            // Infix and postfix operators, each with its binding power.
            let (bp, kind) = match &self.peek().tok {
                Tok::Op(op) => match *op {
                    "=" | "<>" | "!=" | "<" | ">" | "<=" | ">=" => (BP_CMP, 'c'),
                    "||" | "&" | "|" | "#" => (BP_OTHER, 'b'),
                    "+" | "-" => (BP_ADD, 'b'),
                    "*" | "/" | "%" => (BP_MUL, 'b'),
                    "::" => (BP_UNARY + 1, ':'),
                    _ => break,
                },
                Tok::Ident {
                    name,
                    quoted: false,
                } => match name.as_str() {
                    "or" => (BP_OR, 'o'),
                    "and" => (BP_AND, 'a'),
                    "is" | "isnull" | "notnull" => (BP_IS, 'i'),
                    "like" | "ilike" | "in" | "between" => (BP_LIKE, 'l'),
                    "not"
                        if matches!(self.peek_at(1), Tok::Ident { name, quoted: false }
                        if matches!(name.as_str(), "like" | "ilike" | "in" | "between")) =>
                    {
                        (BP_LIKE, 'l')
                    }
                    "similar" => {
                        return Err(self.err(pos, "SIMILAR TO is not supported"));
                    }
                    _ => break,
                },
                _ => break,
            };
            if bp <= min_bp {
                // Comparisons (and BETWEEN/IN/LIKE) do not chain: `a = b = c` is an error.
                if bp == min_bp && (kind == 'c' || kind == 'l') {
                    return Err(self.unexpected());
                }
                break;
            }
            lhs = match kind {
                'o' => {
                    self.next();
                    let rhs = self.expr(BP_OR)?;
                    node(pos, Ast::Or(Box::new(lhs), Box::new(rhs)))
                }
                'a' => {
                    self.next();
                    let rhs = self.expr(BP_AND)?;
                    node(pos, Ast::And(Box::new(lhs), Box::new(rhs)))
                }
                'c' | 'b' => {
                    let Tok::Op(op) = self.next().tok else {
                        unreachable!()
                    };
                    let op = match op {
                        "=" => BinOp::Eq,
                        "<>" | "!=" => BinOp::Ne,
                        "<" => BinOp::Lt,
                        "<=" => BinOp::Le,
                        ">" => BinOp::Gt,
                        ">=" => BinOp::Ge,
                        "+" => BinOp::Add,
                        "-" => BinOp::Sub,
                        "*" => BinOp::Mul,
                        "/" => BinOp::Div,
                        "%" => BinOp::Mod,
                        "||" => BinOp::Concat,
                        "&" => BinOp::BitAnd,
                        "|" => BinOp::BitOr,
                        _ => BinOp::BitXor,
                    };
                    let rhs = self.expr(bp)?;
                    node(pos, Ast::Binary(op, Box::new(lhs), Box::new(rhs)))
                }
                ':' => {
                    self.next();
                    let ty = self.type_name()?;
                    node(pos, Ast::Cast(Box::new(lhs), ty))
                }
                'i' => self.is_suffix(lhs)?,
                _ => self.like_in_between(lhs)?,
            };
            lhs = self.bounded(lhs)?;
        }
        self.bounded(lhs)
    }

    fn is_suffix(&mut self, lhs: Node) -> Result<Node, FilterError> {
        let t = self.next();
        let pos = t.pos;
        let Tok::Ident { name, .. } = t.tok else {
            unreachable!()
        };
        let e = Box::new(lhs);
        match name.as_str() {
            "isnull" => return Ok(node(pos, Ast::IsNull(e, false))),
            "notnull" => return Ok(node(pos, Ast::IsNull(e, true))),
            _ => {}
        }
        let negated = self.eat_kw("not");
        let ast = if self.eat_kw("null") {
            Ast::IsNull(e, negated)
        } else if self.eat_kw("true") {
            Ast::IsBool(e, Some(true), negated)
        } else if self.eat_kw("false") {
            Ast::IsBool(e, Some(false), negated)
        } else if self.eat_kw("unknown") {
            Ast::IsBool(e, None, negated)
        } else if self.eat_kw("distinct") {
            self.expect_kw("from")?;
            let rhs = self.expr(BP_IS)?;
            Ast::Distinct(e, Box::new(rhs), negated)
        } else {
            return Err(self.unexpected());
        };
        Ok(node(pos, ast))
    }

    fn like_in_between(&mut self, lhs: Node) -> Result<Node, FilterError> {
        let negated = self.eat_kw("not");
        let t = self.next();
        let pos = t.pos;
        let Tok::Ident { name, .. } = t.tok else {
            unreachable!()
        };
        let e = Box::new(lhs);
        let ast = match name.as_str() {
            "like" | "ilike" => {
                let pattern = Box::new(self.expr(BP_LIKE)?);
                let escape = if self.eat_kw("escape") {
                    Some(Box::new(self.expr(BP_LIKE)?))
                } else {
                    None
                };
                Ast::Like {
                    expr: e,
                    pattern,
                    escape,
                    case_insensitive: name == "ilike",
                    negated,
                }
            }
            "in" => {
                if !self.is_op(0, "(") {
                    return Err(self.unexpected());
                }
                self.next();
                if self.is_kw(0, "select") {
                    return Err(self.err(self.peek().pos, "subqueries are not supported"));
                }
                let mut list = vec![self.expr(0)?];
                while self.is_op(0, ",") {
                    self.next();
                    list.push(self.expr(0)?);
                }
                self.expect_op(")")?;
                Ast::In(e, list, negated)
            }
            _ => {
                if self.is_kw(0, "symmetric") || self.is_kw(0, "asymmetric") {
                    return Err(self.err(self.peek().pos, "BETWEEN SYMMETRIC is not supported"));
                }
                let lo = self.expr(BP_LIKE)?;
                self.expect_kw("and")?;
                let hi = self.expr(BP_LIKE)?;
                Ast::Between(e, Box::new(lo), Box::new(hi), negated)
            }
        };
        Ok(node(pos, ast))
    }

    fn prefix(&mut self) -> Result<Node, FilterError> {
        let t = self.next();
        let pos = t.pos;
        match t.tok {
            Tok::Op("(") => {
                if self.is_kw(0, "select") {
                    return Err(self.err(self.peek().pos, "subqueries are not supported"));
                }
                let e = self.expr(0)?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("-") => {
                let e = self.expr(BP_UNARY)?;
                Ok(match e.ast {
                    // Postgres folds the sign into a numeric constant (so -2147483648 is int4).
                    Ast::Number(n) => node(
                        pos,
                        Ast::Number(match n.strip_prefix('-') {
                            Some(positive) => positive.to_owned(),
                            None => format!("-{n}"),
                        }),
                    ),
                    _ => node(pos, Ast::Neg(Box::new(e))),
                })
            }
            Tok::Op("+") => self.expr(BP_UNARY),
            Tok::Number(n) => Ok(node(pos, Ast::Number(n))),
            Tok::Str(s) => Ok(node(pos, Ast::Str(s))),
            Tok::Ident { name, quoted: true } => self.column_or_call(pos, name),
            Tok::Ident {
                name,
                quoted: false,
            } => match name.as_str() {
                "not" => {
                    let e = self.expr(BP_NOT)?;
                    Ok(node(pos, Ast::Not(Box::new(e))))
                }
                "null" => Ok(node(pos, Ast::Null)),
                "true" => Ok(node(pos, Ast::Bool(true))),
                "false" => Ok(node(pos, Ast::Bool(false))),
                "cast" => {
                    self.expect_op("(")?;
                    let e = self.expr(0)?;
                    self.expect_kw("as")?;
                    let ty = self.type_name()?;
                    self.expect_op(")")?;
                    Ok(node(pos, Ast::Cast(Box::new(e), ty)))
                }
                "case" | "exists" | "array" | "row" | "select" => {
                    Err(self.err(pos, format!("{} is not supported", name.to_uppercase())))
                }
                _ if RESERVED.contains(&name.as_str()) => {
                    self.i -= 1;
                    Err(self.unexpected())
                }
                _ => {
                    // `type 'literal'`, e.g. date '2024-01-01'.
                    if let Some((ty, len)) = self.type_name_at(&name) {
                        if matches!(self.peek_at(len), Tok::Str(_)) {
                            self.i += len;
                            let Tok::Str(s) = self.next().tok else {
                                unreachable!()
                            };
                            let lit = node(self.toks[self.i - 1].pos, Ast::Str(s));
                            return Ok(node(pos, Ast::Cast(Box::new(lit), ty)));
                        }
                    }
                    self.column_or_call(pos, name)
                }
            },
            _ => {
                self.i -= 1;
                Err(self.unexpected())
            }
        }
    }

    /// After an identifier: `this.col`, a function call, or a bare column.
    fn column_or_call(&mut self, pos: usize, name: String) -> Result<Node, FilterError> {
        if self.is_op(0, ".") {
            self.next();
            let t = self.next();
            let Tok::Ident { name: col, .. } = t.tok else {
                self.i -= 1;
                return Err(self.unexpected());
            };
            if name != "this" {
                return Err(self.err(
                    pos,
                    format!("unknown table \"{name}\": refer to columns as this.<column>"),
                ));
            }
            if self.is_op(0, ".") || self.is_op(0, "(") {
                return Err(self.unexpected());
            }
            return Ok(node(pos, Ast::Column(col)));
        }
        if self.is_op(0, "(") {
            self.next();
            let mut args = Vec::new();
            if !self.is_op(0, ")") {
                if self.is_op(0, "*") || self.is_kw(0, "distinct") {
                    return Err(self.err(
                        self.peek().pos,
                        "aggregate functions are not allowed in a where clause",
                    ));
                }
                args.push(self.expr(0)?);
                while self.is_op(0, ",") {
                    self.next();
                    args.push(self.expr(0)?);
                }
            }
            self.expect_op(")")?;
            return Ok(node(pos, Ast::Func(name, args)));
        }
        if matches!(self.peek().tok, Tok::Str(_)) {
            return Err(self.err(pos, format!("type \"{name}\" is not supported here")));
        }
        Ok(node(pos, Ast::Column(name)))
    }

    /// A type name starting at the current token (already taken as `first`), and how many
    /// more tokens it spans.
    fn type_name_at(&self, first: &str) -> Option<(Type, usize)> {
        let word = |n: usize| match self.peek_at(n) {
            Tok::Ident {
                name,
                quoted: false,
            } => Some(name.as_str()),
            _ => None,
        };
        let mut name = first.to_owned();
        let mut len = 0;
        match first {
            "double" if word(0) == Some("precision") => {
                name.push_str(" precision");
                len = 1;
            }
            "character" if word(0) == Some("varying") => {
                name.push_str(" varying");
                len = 1;
            }
            "timestamp" | "time"
                if matches!(word(0), Some("with" | "without"))
                    && word(1) == Some("time")
                    && word(2) == Some("zone") =>
            {
                name = format!("{first} {} time zone", word(0).expect("word"));
                len = 3;
            }
            _ => {}
        }
        Type::from_name(&name).map(|t| (t, len))
    }

    fn type_name(&mut self) -> Result<Type, FilterError> {
        let t = self.next();
        let pos = t.pos;
        let Tok::Ident { name, quoted } = t.tok else {
            self.i -= 1;
            return Err(self.unexpected());
        };
        let found = if quoted {
            Type::from_name(&name).map(|t| (t, 0))
        } else {
            self.type_name_at(&name)
        };
        let Some((ty, len)) = found else {
            return Err(self.err(pos, format!("type \"{name}\" is not supported here")));
        };
        self.i += len;
        if self.is_op(0, "(") {
            return Err(self.err(self.peek().pos, "type modifiers are not supported"));
        }
        if self.is_op(0, "[") {
            return Err(self.err(self.peek().pos, "arrays are not supported"));
        }
        Ok(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ast {
        parse(s).unwrap().ast
    }

    fn strip(n: &Node) -> String {
        // A compact, position-free rendering to compare shapes of trees.
        match &n.ast {
            Ast::Column(c) => c.clone(),
            Ast::Null => "NULL".into(),
            Ast::Bool(b) => b.to_string(),
            Ast::Number(x) => x.clone(),
            Ast::Str(s) => format!("'{s}'"),
            Ast::Cast(e, t) => format!("({}::{:?})", strip(e), t),
            Ast::Neg(e) => format!("(-{})", strip(e)),
            Ast::Binary(op, l, r) => format!("({} {} {})", strip(l), op.symbol(), strip(r)),
            Ast::Not(e) => format!("(NOT {})", strip(e)),
            Ast::And(l, r) => format!("({} AND {})", strip(l), strip(r)),
            Ast::Or(l, r) => format!("({} OR {})", strip(l), strip(r)),
            Ast::IsNull(e, neg) => {
                format!("({} IS{} NULL)", strip(e), if *neg { " NOT" } else { "" })
            }
            Ast::IsBool(e, v, neg) => format!(
                "({} IS{} {:?})",
                strip(e),
                if *neg { " NOT" } else { "" },
                v
            ),
            Ast::Distinct(l, r, neg) => format!(
                "({} IS{} DISTINCT FROM {})",
                strip(l),
                if *neg { " NOT" } else { "" },
                strip(r)
            ),
            Ast::Like {
                expr,
                pattern,
                escape,
                case_insensitive,
                negated,
            } => format!(
                "({}{} {} {}{})",
                strip(expr),
                if *negated { " NOT" } else { "" },
                if *case_insensitive { "ILIKE" } else { "LIKE" },
                strip(pattern),
                escape
                    .as_ref()
                    .map(|e| format!(" ESCAPE {}", strip(e)))
                    .unwrap_or_default()
            ),
            Ast::In(e, l, neg) => format!(
                "({}{} IN [{}])",
                strip(e),
                if *neg { " NOT" } else { "" },
                l.iter().map(strip).collect::<Vec<_>>().join(", ")
            ),
            Ast::Between(e, lo, hi, neg) => format!(
                "({}{} BETWEEN {} AND {})",
                strip(e),
                if *neg { " NOT" } else { "" },
                strip(lo),
                strip(hi)
            ),
            Ast::Func(f, args) => format!(
                "{f}({})",
                args.iter().map(strip).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    fn shape(s: &str) -> String {
        strip(&parse(s).unwrap())
    }

    fn error(s: &str) -> (usize, String) {
        let e = parse(s).unwrap_err();
        (e.position, e.message)
    }

    #[test]
    fn columns_and_literals() {
        assert_eq!(p("this.a"), Ast::Column("a".into()));
        assert_eq!(p("THIS.Abc"), Ast::Column("abc".into()));
        assert_eq!(p("this.\"Abc\"\"d\""), Ast::Column("Abc\"d".into()));
        assert_eq!(p("abc"), Ast::Column("abc".into()));
        assert_eq!(p("'it''s'"), Ast::Str("it's".into()));
        assert_eq!(p("-2147483648"), Ast::Number("-2147483648".into()));
        assert_eq!(p("1.5e-3"), Ast::Number("1.5e-3".into()));
        assert_eq!(p(".5"), Ast::Number(".5".into()));
        assert_eq!(p("NULL"), Ast::Null);
        assert_eq!(p("tRuE"), Ast::Bool(true));
        assert_eq!(
            p("date '2024-01-01'"),
            Ast::Cast(Box::new(node(5, Ast::Str("2024-01-01".into()))), Type::Date)
        );
        assert_eq!(
            shape("timestamp with time zone '2024-01-01'"),
            "('2024-01-01'::TimestampTz)"
        );
        assert_eq!(shape("CAST(this.a AS double precision)"), "(a::Float8)");
        assert_eq!(shape("this.a::varchar"), "(a::Text)");
        assert_eq!(shape("this.a IS NULL"), "(a IS NULL)");
        assert_eq!(shape("- -5"), "5");
    }

    #[test]
    fn precedence_follows_postgres() {
        assert_eq!(shape("a OR b AND c"), "(a OR (b AND c))");
        assert_eq!(shape("NOT a = b"), "(NOT (a = b))");
        assert_eq!(shape("a = b IS NULL"), "((a = b) IS NULL)");
        assert_eq!(shape("a + b * c - d"), "((a + (b * c)) - d)");
        assert_eq!(shape("a || b = c"), "((a || b) = c)");
        assert_eq!(shape("a LIKE b || c"), "(a LIKE (b || c))");
        assert_eq!(shape("-a::int4"), "(-(a::Int4))");
        assert_eq!(shape("- 5::int4"), "(-(5::Int4))");
        assert_eq!(
            shape("a BETWEEN 1 AND 2 AND b"),
            "((a BETWEEN 1 AND 2) AND b)"
        );
        assert_eq!(shape("a NOT IN (1, 2 + 3)"), "(a NOT IN [1, (2 + 3)])");
        assert_eq!(
            shape("a NOT ILIKE 'x%' ESCAPE '!'"),
            "(a NOT ILIKE 'x%' ESCAPE '!')"
        );
        assert_eq!(
            shape("a IS NOT DISTINCT FROM b + 1"),
            "(a IS NOT DISTINCT FROM (b + 1))"
        );
        assert_eq!(
            shape("a IS NOT TRUE AND b IS UNKNOWN"),
            "((a IS NOT Some(true)) AND (b IS None))"
        );
        assert_eq!(shape("lower(this.a) = 'x'"), "(lower(a) = 'x')");
        assert_eq!(shape("a=-1"), "(a = -1)");
        assert_eq!(shape("a != b"), "(a <> b)");
        assert_eq!(shape("a -- comment\n = /* c /* nested */ */ 1"), "(a = 1)");
    }

    #[test]
    fn errors_have_positions() {
        assert_eq!(
            error("this.a = "),
            (9, "syntax error at end of input".into())
        );
        assert_eq!(error("1=1; DROP TABLE t").0, 3);
        assert_eq!(error("') OR 1=1 --").1, "unterminated quoted string");
        assert_eq!(
            error("a = b = c"),
            (6, "syntax error at or near \"=\"".into())
        );
        assert_eq!(error("a = $1").0, 4);
        assert_eq!(error("other.a = 1").0, 0);
        assert_eq!(error("a::int4(3)").1, "type modifiers are not supported");
        assert_eq!(error("a::mood").1, "type \"mood\" is not supported here");
        assert_eq!(error("a IN (SELECT 1)").1, "subqueries are not supported");
        assert_eq!(
            error("count(*) > 1").1,
            "aggregate functions are not allowed in a where clause"
        );
        assert_eq!(
            error("a = 1 and"),
            (9, "syntax error at end of input".into())
        );
        assert_eq!(error("(a = 1"), (6, "syntax error at end of input".into()));
        assert_eq!(error("12abc").1, "trailing junk after numeric literal");
        // Positions count characters, not bytes.
        assert_eq!(
            error("'é' = 'é' ;"),
            (
                10,
                "unexpected \";\": a where clause is one expression".into()
            )
        );
        assert_eq!(error("a SIMILAR TO 'x'").1, "SIMILAR TO is not supported");
        assert_eq!(
            error("E'x' = a").1,
            "escape strings (E'...') are not supported"
        );
    }
}
