//! The recursive-descent grammar: `or` of `and` of `not` of checks, parenthesised groups and
//! macro references; values, lists, numbers and quoted strings.

use super::{BLANKS, Expr, MAX_DEPTH, OPERATORS, Op, ParseError, Rhs, TRANSFORMERS};

pub(super) fn parse_inner(text: &str, bare_fields: &[&str]) -> Result<Expr, ParseError> {
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
