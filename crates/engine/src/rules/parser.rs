//! The condition language: a recursive-descent parser for Falco's filter grammar
//! (`and`/`or`/`not`, parentheses, field checks, macro references), producing an [`Expr`] tree.

use std::fmt;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=` or `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<` (byte-wise string order).
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// Substring.
    Contains,
    /// ASCII case-insensitive substring.
    IContains,
    /// Byte substring (hex operand); only for byte-buffer fields, so always refused here.
    BContains,
    /// Prefix.
    StartsWith,
    /// Byte prefix; refused like `bcontains`.
    BStartsWith,
    /// Suffix.
    EndsWith,
    /// `fnmatch` glob.
    Glob,
    /// Case-insensitive glob.
    IGlob,
    /// Full-match regular expression.
    Regex,
    /// Member of (list fields: every value is a member).
    In,
    /// Any value is a member.
    Intersects,
    /// Path-prefix match against a set.
    PMatch,
    /// Has a value.
    Exists,
}

impl Op {
    /// The operator as written in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
            Op::Exists => "exists",
        }
    }

    /// Operators whose right-hand side is a list.
    pub fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::PMatch)
    }

    /// Parses an operator name as used in exception `comps`.
    pub fn from_name(s: &str) -> Option<Op> {
        OPERATORS
            .iter()
            .find(|(name, _, _)| name.trim_end() == s)
            .map(|(_, op, _)| *op)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The right-hand side of a check.
#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    /// `exists` has none.
    None,
    /// One quoted or bare value (or a number for `<` and friends).
    Value(String),
    /// A parenthesised list, or a bare identifier after a list operator.
    List(Vec<String>),
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// All children hold.
    And(Vec<Expr>),
    /// Any child holds.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A bare identifier: a macro reference.
    Ident {
        /// Macro name.
        name: String,
        /// Byte offset in the condition text.
        at: usize,
    },
    /// `field[arg] op rhs`.
    Check {
        /// Field name, e.g. `ka.verb`.
        field: String,
        /// The `[arg]`, if any.
        arg: Option<String>,
        /// The operator.
        op: Op,
        /// The operand.
        rhs: Rhs,
        /// Byte offset of the field in the condition text.
        at: usize,
    },
}

/// A condition that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at offset {at}")]
pub struct ParseError {
    /// Byte offset in the condition text.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

/// Maximum nesting of parentheses and `not`s, as Falco allows for rules.
pub const MAX_DEPTH: usize = 1000;

const BLANKS: &[u8] = b" \t\x08\r\n";

/// Operator spellings in matching order (longest first where one is a prefix of another);
/// the bool says whether a blank must follow.
const OPERATORS: &[(&str, Op, bool)] = &[
    ("exists", Op::Exists, false),
    ("<=", Op::Le, false),
    ("<", Op::Lt, false),
    (">=", Op::Ge, false),
    (">", Op::Gt, false),
    ("==", Op::Eq, false),
    ("=", Op::Eq, false),
    ("!=", Op::Ne, false),
    ("bcontains", Op::BContains, true),
    ("bstartswith", Op::BStartsWith, true),
    ("contains", Op::Contains, true),
    ("endswith", Op::EndsWith, true),
    ("glob", Op::Glob, true),
    ("icontains", Op::IContains, true),
    ("iglob", Op::IGlob, true),
    ("startswith", Op::StartsWith, true),
    ("regex", Op::Regex, true),
    ("intersects", Op::Intersects, false),
    ("in", Op::In, false),
    ("pmatch", Op::PMatch, false),
];

const TRANSFORMERS: &[&str] = &[
    "tolower", "toupper", "b64", "basename", "len", "join", "concat", "getopt", "val",
];

/// Parses a condition. Identifiers listed in `bare_fields` are fields, not macro references
/// (the alert filter's `rule`, `priority`, ...).
pub fn parse(text: &str, bare_fields: &[&str]) -> Result<Expr, ParseError> {
    let (depth, at) = max_nesting(text);
    if depth > MAX_DEPTH {
        return Err(ParseError {
            at,
            message: format!("condition nested deeper than {MAX_DEPTH}"),
        });
    }
    if depth <= SMALL_DEPTH {
        return parse_inner(text, bare_fields);
    }
    // Deep nesting recurses deeply: give it a stack of its own rather than risk the caller's.
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .stack_size((depth + 1) * 16 * 1024 + (1 << 20))
            .spawn_scoped(s, || parse_inner(text, bare_fields));
        match worker {
            Ok(h) => h.join().unwrap_or_else(|_| {
                Err(ParseError {
                    at: 0,
                    message: "internal error while parsing".into(),
                })
            }),
            Err(e) => Err(ParseError {
                at: 0,
                message: format!("cannot parse a condition this deep: {e}"),
            }),
        }
    })
}

/// Nesting the caller's stack handles without help.
const SMALL_DEPTH: usize = 48;

/// The deepest parenthesis nesting outside quoted strings, and where it is first exceeded
/// beyond [`MAX_DEPTH`].
fn max_nesting(text: &str) -> (usize, usize) {
    let b = text.as_bytes();
    let (mut depth, mut max, mut at) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' => {
                depth += 1;
                if depth > max {
                    max = depth;
                    if depth == MAX_DEPTH + 1 {
                        at = i;
                    }
                }
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    (max, at)
}

fn parse_inner(text: &str, bare_fields: &[&str]) -> Result<Expr, ParseError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        bare_fields,
    };
    let e = p.parse_or(0)?;
    p.skip_blanks();
    if p.pos < p.s.len() {
        return Err(p.err(format!("unexpected text '{}'", p.excerpt())));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    bare_fields: &'a [&'a str],
}

fn is_blank(c: u8) -> bool {
    BLANKS.contains(&c)
}

impl Parser<'_> {
    fn err(&self, message: String) -> ParseError {
        ParseError {
            at: self.pos,
            message,
        }
    }

    fn excerpt(&self) -> String {
        let rest = self.text.get(self.pos..).unwrap_or("").trim_end();
        let mut t: String = rest
            .chars()
            .take(30)
            .map(|c| if c.is_whitespace() { ' ' } else { c })
            .collect();
        if t.len() < rest.len() {
            t.push_str("...");
        }
        t
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    /// `kw` at the cursor, followed by a blank or `(`; consumed if so.
    fn keyword(&mut self, kw: &str) -> bool {
        let end = self.pos + kw.len();
        if self.s.get(self.pos..end) == Some(kw.as_bytes())
            && self.s.get(end).is_some_and(|&c| is_blank(c) || c == b'(')
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    fn parse_or(&mut self, depth: usize) -> Result<Expr, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("condition nested deeper than {MAX_DEPTH}")));
        }
        let mut kids = vec![self.parse_and(depth)?];
        loop {
            self.skip_blanks();
            if !self.keyword("or") {
                break;
            }
            kids.push(self.parse_and(depth)?);
        }
        Ok(if kids.len() == 1 {
            kids.pop().unwrap_or(Expr::And(Vec::new()))
        } else {
            Expr::Or(kids)
        })
    }

    fn parse_and(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut kids = vec![self.parse_not(depth)?];
        loop {
            self.skip_blanks();
            if !self.keyword("and") {
                break;
            }
            kids.push(self.parse_not(depth)?);
        }
        Ok(if kids.len() == 1 {
            kids.pop().unwrap_or(Expr::And(Vec::new()))
        } else {
            Expr::And(kids)
        })
    }

    fn parse_not(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut negate = false;
        loop {
            self.skip_blanks();
            if self.keyword("not") {
                negate = !negate;
            } else {
                break;
            }
        }
        let e = self.parse_check(depth)?;
        Ok(if negate { Expr::Not(Box::new(e)) } else { e })
    }

    fn ident_segment(&mut self) -> bool {
        if !self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            return false;
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.pos += 1;
        }
        true
    }

    fn parse_check(&mut self, depth: usize) -> Result<Expr, ParseError> {
        self.skip_blanks();
        let start = self.pos;
        match self.peek() {
            None => return Err(self.err("expected a check, found the end of the condition".into())),
            Some(b'(') => {
                self.pos += 1;
                let e = self.parse_or(depth + 1)?;
                self.skip_blanks();
                if self.peek() != Some(b')') {
                    return Err(self.err(format!("expected ')', found '{}'", self.excerpt())));
                }
                self.pos += 1;
                return Ok(e);
            }
            _ => {}
        }
        if !self.ident_segment() {
            return Err(self.err(format!(
                "expected a field, macro or '(', found '{}'",
                self.excerpt()
            )));
        }
        let mut dotted = false;
        while self.peek() == Some(b'.') {
            let save = self.pos;
            self.pos += 1;
            if self.ident_segment() {
                dotted = true;
            } else {
                self.pos = save;
                break;
            }
        }
        let name = &self.text[start..self.pos];
        if !dotted && self.peek() == Some(b'(') && TRANSFORMERS.contains(&name) {
            return Err(ParseError {
                at: start,
                message: format!("field transformer '{name}(' is not supported"),
            });
        }
        if !dotted && !self.bare_fields.contains(&name) {
            return Ok(Expr::Ident {
                name: name.to_string(),
                at: start,
            });
        }
        let field = name.to_string();
        let arg = if self.peek() == Some(b'[') {
            self.pos += 1;
            let a = match self.peek() {
                Some(b'"') | Some(b'\'') => self.quoted()?,
                _ => {
                    let s = self.pos;
                    while self
                        .peek()
                        .is_some_and(|c| !is_blank(c) && !b"[]\"'".contains(&c))
                    {
                        self.pos += 1;
                    }
                    if s == self.pos {
                        return Err(self.err("empty field argument".into()));
                    }
                    self.text[s..self.pos].to_string()
                }
            };
            if self.peek() != Some(b']') {
                return Err(self.err(format!(
                    "expected ']' after the argument of '{field}', found '{}'",
                    self.excerpt()
                )));
            }
            self.pos += 1;
            Some(a)
        } else {
            None
        };
        self.skip_blanks();
        let op = self.operator().ok_or_else(|| {
            self.err(format!(
                "expected an operator after '{field}', found '{}'",
                self.excerpt()
            ))
        })?;
        let rhs = match op {
            Op::Exists => Rhs::None,
            Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                self.skip_blanks();
                Rhs::Value(self.number()?)
            }
            Op::In | Op::Intersects | Op::PMatch => {
                self.skip_blanks();
                Rhs::List(self.list()?)
            }
            _ => {
                self.skip_blanks();
                Rhs::Value(self.value()?)
            }
        };
        Ok(Expr::Check {
            field,
            arg,
            op,
            rhs,
            at: start,
        })
    }

    fn operator(&mut self) -> Option<Op> {
        let rest = self.s.get(self.pos..)?;
        for (name, op, blank) in OPERATORS {
            let n = name.as_bytes();
            if rest.starts_with(n) {
                if *blank && !rest.get(n.len()).is_some_and(|&c| is_blank(c)) {
                    continue;
                }
                self.pos += n.len();
                return Some(*op);
            }
        }
        None
    }

    fn number(&mut self) -> Result<String, ParseError> {
        let s = self.pos;
        let b = self.s;
        let mut i = s;
        if b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x') | Some(b'X')) {
            i += 2;
            let h = i;
            while b.get(i).is_some_and(u8::is_ascii_hexdigit) {
                i += 1;
            }
            if i == h {
                return Err(self.err("expected a hexadecimal number".into()));
            }
        } else {
            if matches!(b.get(i), Some(b'+') | Some(b'-')) {
                i += 1;
            }
            let d = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == d {
                return Err(self.err(format!("expected a number, found '{}'", self.excerpt())));
            }
            if b.get(i) == Some(&b'.') {
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            if matches!(b.get(i), Some(b'e') | Some(b'E'))
                && matches!(b.get(i + 1), Some(b'+') | Some(b'-'))
                && b.get(i + 2).is_some_and(u8::is_ascii_digit)
            {
                i += 2;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
        }
        self.pos = i;
        Ok(self.text[s..i].to_string())
    }

    fn value(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some(b'"') | Some(b'\'') => self.quoted(),
            _ => {
                let s = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| !is_blank(c) && !b"()\"'=,".contains(&c))
                {
                    self.pos += 1;
                }
                if s == self.pos {
                    return Err(self.err(format!("expected a value, found '{}'", self.excerpt())));
                }
                Ok(self.text[s..self.pos].to_string())
            }
        }
    }

    fn list(&mut self) -> Result<Vec<String>, ParseError> {
        if self.peek() != Some(b'(') {
            // A single bare name (an undefined list name stays a literal).
            let s = self.pos;
            if !self.ident_segment() {
                return Err(self.err(format!(
                    "expected a list '(...)', found '{}'",
                    self.excerpt()
                )));
            }
            return Ok(vec![self.text[s..self.pos].to_string()]);
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_blanks();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            self.skip_blanks();
            items.push(self.value()?);
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => {
                    return Err(self.err(format!(
                        "expected ',' or ')' in list, found '{}'",
                        self.excerpt()
                    )));
                }
            }
        }
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        let Some(q) = self.peek() else {
            return Err(self.err("expected a quoted string".into()));
        };
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(ParseError {
                    at: open,
                    message: "unterminated quoted string".into(),
                });
            };
            self.pos += 1;
            if c == q {
                break;
            }
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err(ParseError {
                    at: open,
                    message: "unterminated quoted string".into(),
                });
            };
            self.pos += 1;
            match e {
                b'b' => out.push(0x08),
                b'f' => out.push(0x0c),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'/' => out.push(b'/'),
                b' ' => out.extend_from_slice(b"\\ "),
                b'x' => {
                    let h = self.s.get(self.pos..self.pos + 2);
                    let v = h
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match v {
                        Some(v) => {
                            out.push(v);
                            self.pos += 2;
                        }
                        None => {
                            return Err(
                                self.err("invalid \\x escape: expected two hex digits".into())
                            );
                        }
                    }
                }
                _ if e == q => out.push(q),
                _ => {
                    self.pos -= 1;
                    return Err(self.err(format!(
                        "invalid escape '\\{}' in quoted string",
                        char::from(e)
                    )));
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(field: &str, op: Op, rhs: Rhs) -> Expr {
        Expr::Check {
            field: field.into(),
            arg: None,
            op,
            rhs,
            at: 0,
        }
    }

    fn strip(e: Expr) -> Expr {
        match e {
            Expr::And(k) => Expr::And(k.into_iter().map(strip).collect()),
            Expr::Or(k) => Expr::Or(k.into_iter().map(strip).collect()),
            Expr::Not(k) => Expr::Not(Box::new(strip(*k))),
            Expr::Ident { name, .. } => Expr::Ident { name, at: 0 },
            Expr::Check {
                field,
                arg,
                op,
                rhs,
                ..
            } => Expr::Check {
                field,
                arg,
                op,
                rhs,
                at: 0,
            },
        }
    }

    fn p(s: &str) -> Expr {
        strip(parse(s, &[]).unwrap())
    }

    #[test]
    fn precedence_not_and_or() {
        let e = p("a or b and not c");
        let want = Expr::Or(vec![
            Expr::Ident {
                name: "a".into(),
                at: 0,
            },
            Expr::And(vec![
                Expr::Ident {
                    name: "b".into(),
                    at: 0,
                },
                Expr::Not(Box::new(Expr::Ident {
                    name: "c".into(),
                    at: 0,
                })),
            ]),
        ]);
        assert_eq!(e, want);
        assert_eq!(
            p("not not a"),
            Expr::Ident {
                name: "a".into(),
                at: 0
            }
        );
        assert_eq!(
            p("not(a)"),
            Expr::Not(Box::new(Expr::Ident {
                name: "a".into(),
                at: 0
            }))
        );
        assert_eq!(
            p("notable"),
            Expr::Ident {
                name: "notable".into(),
                at: 0
            }
        );
        assert!(matches!(p("a and(b or c)"), Expr::And(k) if matches!(k[1], Expr::Or(_))));
        assert!(parse("a andb", &[]).is_err());
    }

    #[test]
    fn operators_and_values() {
        assert_eq!(
            p("ka.verb=create"),
            check("ka.verb", Op::Eq, Rhs::Value("create".into()))
        );
        assert_eq!(
            p("ka.verb==create"),
            check("ka.verb", Op::Eq, Rhs::Value("create".into()))
        );
        assert_eq!(
            p("ka.target.name!=\"system:coredns\""),
            check(
                "ka.target.name",
                Op::Ne,
                Rhs::Value("system:coredns".into())
            )
        );
        assert_eq!(
            p("ka.user.name=system:anonymous"),
            check(
                "ka.user.name",
                Op::Eq,
                Rhs::Value("system:anonymous".into())
            )
        );
        assert_eq!(
            p("ka.response.code >= 400"),
            check("ka.response.code", Op::Ge, Rhs::Value("400".into()))
        );
        assert_eq!(
            p("a.b<=0x1F"),
            check("a.b", Op::Le, Rhs::Value("0x1F".into()))
        );
        assert_eq!(
            p("a.b > -1.5e+3"),
            check("a.b", Op::Gt, Rhs::Value("-1.5e+3".into()))
        );
        assert!(parse("a.b < abc", &[]).is_err());
        assert_eq!(p("a.b exists"), check("a.b", Op::Exists, Rhs::None));
        assert_eq!(
            p("a.b in (x, \"y z\", 'w')"),
            check(
                "a.b",
                Op::In,
                Rhs::List(vec!["x".into(), "y z".into(), "w".into()])
            )
        );
        assert_eq!(p("a.b in()"), check("a.b", Op::In, Rhs::List(vec![])));
        assert_eq!(
            p("a.b intersects (x)"),
            check("a.b", Op::Intersects, Rhs::List(vec!["x".into()]))
        );
        assert_eq!(
            p("a.b in foo"),
            check("a.b", Op::In, Rhs::List(vec!["foo".into()]))
        );
        assert_eq!(
            p("a.b pmatch (/x)"),
            check("a.b", Op::PMatch, Rhs::List(vec!["/x".into()]))
        );
        for (w, op) in [
            ("contains", Op::Contains),
            ("icontains", Op::IContains),
            ("bcontains", Op::BContains),
            ("startswith", Op::StartsWith),
            ("bstartswith", Op::BStartsWith),
            ("endswith", Op::EndsWith),
            ("glob", Op::Glob),
            ("iglob", Op::IGlob),
            ("regex", Op::Regex),
        ] {
            assert_eq!(
                p(&format!("a.b {w} x")),
                check("a.b", op, Rhs::Value("x".into())),
                "{w}"
            );
        }
        assert!(parse("a.b containsx", &[]).is_err());
        assert!(parse("a.b", &[]).is_err());
    }

    #[test]
    fn field_arguments() {
        let e = p("jevt.value[/requestObject/spec/volumes] exists");
        assert!(
            matches!(e, Expr::Check { arg: Some(ref a), .. } if a == "/requestObject/spec/volumes")
        );
        let e = p("ka.uri.param[\"a b\"]=x");
        assert!(matches!(e, Expr::Check { arg: Some(ref a), .. } if a == "a b"));
        assert!(parse("ka.uri.param[a b]=x", &[]).is_err());
        assert!(parse("ka.uri.param[]=x", &[]).is_err());
    }

    #[test]
    fn escapes() {
        let v = |s: &str| match p(&format!("a.b={s}")) {
            Expr::Check {
                rhs: Rhs::Value(v), ..
            } => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(v(r#""a\"b""#), "a\"b");
        assert_eq!(v(r#"'a\'b'"#), "a'b");
        assert_eq!(v(r#""\b\f\n\r\t\\\/""#), "\x08\x0c\n\r\t\\/");
        assert_eq!(v(r#""\x41\x42""#), "AB");
        assert_eq!(v(r#""a\ b""#), "a\\ b");
        assert!(parse(r#"a.b="a\'b""#, &[]).is_err());
        assert!(parse(r#"a.b='a\"b'"#, &[]).is_err());
        assert!(parse(r#"a.b="\q""#, &[]).is_err());
        assert!(parse(r#"a.b="\x4""#, &[]).is_err());
        assert!(parse(r#"a.b="abc"#, &[]).is_err());
    }

    #[test]
    fn bare_fields_and_transformers() {
        assert_eq!(
            strip(parse("rule in (x)", &["rule"]).unwrap()),
            check("rule", Op::In, Rhs::List(vec!["x".into()]))
        );
        assert!(matches!(p("rule"), Expr::Ident { .. }));
        let e = parse("tolower(ka.verb)=x", &[]).unwrap_err();
        assert!(e.message.contains("transformer"), "{e}");
    }

    #[test]
    fn errors_have_offsets_and_depth_is_capped() {
        let e = parse("ka.verb=x and (", &[]).unwrap_err();
        assert_eq!(e.at, 15);
        let e = parse("a b", &[]).unwrap_err();
        assert_eq!(e.at, 2);
        let ok = "(".repeat(200) + "a" + &")".repeat(200);
        assert!(parse(&ok, &[]).is_ok());
        let nots = "not (".repeat(MAX_DEPTH) + "a.b exists" + &")".repeat(MAX_DEPTH);
        assert!(parse(&nots, &[]).is_ok());
        let deep = "(".repeat(MAX_DEPTH + 5) + "a" + &")".repeat(MAX_DEPTH + 5);
        let e = parse(&deep, &[]).unwrap_err();
        assert!(e.message.contains("deeper"), "{e}");
    }
}
