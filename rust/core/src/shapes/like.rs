//! LIKE and ILIKE: patterns with `%` (any run of characters), `_` (one character) and an escape
//! character, matched character by character as Postgres does for UTF-8; ILIKE lower-cases
//! ASCII letters of both sides first (Postgres's `lower()` under the C collation).

use super::EvalError;

/// The ESCAPE of a LIKE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// No ESCAPE clause: backslash.
    Default,
    /// `ESCAPE ''`: no escape character.
    None,
    Char(char),
}

impl Escape {
    pub fn char(self) -> Option<char> {
        match self {
            Escape::Default => Some('\\'),
            Escape::None => None,
            Escape::Char(c) => Some(c),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    One,
    Many,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    toks: Vec<Tok>,
    case_insensitive: bool,
}

pub fn compile(
    pattern: &str,
    escape: Option<char>,
    case_insensitive: bool,
) -> Result<Pattern, EvalError> {
    let mut toks = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let t = if Some(c) == escape {
            Tok::Lit(chars.next().ok_or(EvalError::LikeEscape)?)
        } else {
            match c {
                '%' => Tok::Many,
                '_' => Tok::One,
                c => Tok::Lit(c),
            }
        };
        // `%%` is `%`.
        if !(t == Tok::Many && toks.last() == Some(&Tok::Many)) {
            toks.push(t);
        }
    }
    if case_insensitive {
        for t in &mut toks {
            if let Tok::Lit(c) = t {
                *c = c.to_ascii_lowercase();
            }
        }
    }
    Ok(Pattern {
        toks,
        case_insensitive,
    })
}

impl Pattern {
    pub fn matches(&self, text: &str) -> bool {
        let fold = |c: char| {
            if self.case_insensitive {
                c.to_ascii_lowercase()
            } else {
                c
            }
        };
        // Greedy matching with backtracking to the last `%` (sufficient for LIKE's wildcards),
        // over byte offsets of `text` so that nothing is allocated.
        let p = &self.toks;
        let next = |si: usize| {
            let c = text[si..].chars().next().expect("in the text");
            (fold(c), si + c.len_utf8())
        };
        let (mut si, mut pi) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < text.len() {
            let (c, after) = next(si);
            match p.get(pi) {
                Some(Tok::Many) => {
                    star = Some((pi, si));
                    pi += 1;
                }
                Some(Tok::One) => {
                    si = after;
                    pi += 1;
                }
                Some(Tok::Lit(l)) if *l == c => {
                    si = after;
                    pi += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        let (_, ss_after) = next(ss);
                        pi = sp + 1;
                        si = ss_after;
                        star = Some((sp, ss_after));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|t| *t == Tok::Many)
    }
}

/// Lower-cases ASCII letters (Postgres's `lower()` under the C collation).
pub fn ascii_lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Upper-cases ASCII letters (Postgres's `upper()` under the C collation).
pub fn ascii_upper(s: &str) -> String {
    s.to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(s: &str, p: &str) -> bool {
        compile(p, Some('\\'), false).unwrap().matches(s)
    }

    #[test]
    fn wildcards() {
        assert!(like("abc", "abc"));
        assert!(!like("abc", "ab"));
        assert!(!like("ab", "abc"));
        assert!(like("abc", "a%"));
        assert!(like("abc", "%c"));
        assert!(like("abc", "%b%"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("aXbXc", "a%b%c"));
        assert!(like("mississippi", "%iss%ppi"));
        assert!(!like("mississippi", "%iss%ppix"));
        assert!(like("héllo", "h_llo"));
        assert!(like("a%b", "a\\%b"));
        assert!(!like("axb", "a\\%b"));
        assert!(like("a_b", "a\\_b"));
        assert!(like("a\\b", "a\\\\b"));
    }

    #[test]
    fn escapes_and_case() {
        assert_eq!(
            compile("a\\", Some('\\'), false),
            Err(EvalError::LikeEscape)
        );
        let p = compile("a!%", Some('!'), false).unwrap();
        assert!(p.matches("a%"));
        assert!(!p.matches("ab"));
        let p = compile("a\\%", None, false).unwrap();
        assert!(p.matches("a\\xyz"));
        let p = compile("AB%", Some('\\'), true).unwrap();
        assert!(p.matches("abc"));
        assert!(p.matches("ABC"));
        // Only ASCII letters fold, as under Postgres's C collation.
        let p = compile("é%", Some('\\'), true).unwrap();
        assert!(!p.matches("É"));
    }
}
